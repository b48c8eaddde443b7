"""Experiment recipes and benchmark protocols."""
