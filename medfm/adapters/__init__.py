"""medfm.adapters"""
