"""medfm.training"""
