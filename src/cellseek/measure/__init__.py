"""Measurement (accuracy, speed): never imported by product code."""
