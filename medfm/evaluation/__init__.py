"""medfm.evaluation"""
