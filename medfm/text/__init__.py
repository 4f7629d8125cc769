"""medfm.text"""
