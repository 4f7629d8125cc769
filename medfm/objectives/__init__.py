"""medfm.objectives"""
