"""Figures, interactive plots and the one-file HTML report built from analysis results."""
