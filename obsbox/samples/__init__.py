"""obsbox.samples"""
