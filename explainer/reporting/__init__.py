"""Heatmaps, figures and self-contained HTML reports."""
