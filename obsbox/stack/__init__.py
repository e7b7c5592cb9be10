"""obsbox.stack"""
