"""medfm.data"""
