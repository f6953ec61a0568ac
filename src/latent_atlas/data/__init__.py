"""Datasets with known generating factors: Gaussian and Student t density heatmaps."""

from .dataset import HeatmapDataset, load_dataset, make_dataset
from .heatmaps import grid_axis, render_from_factors, render_heatmaps

__all__ = ["HeatmapDataset", "grid_axis", "load_dataset", "make_dataset", "render_from_factors", "render_heatmaps"]
