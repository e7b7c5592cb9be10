"""obsbox.resilience"""
