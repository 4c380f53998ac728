"""Predicting with members and models: log-probabilities of a split, timed, and temperature
scaling. Imports the layers below it.
"""
