"""Figures in one style (``figures``), the inversion study's figures (``inversion``) and the
ipywidgets explorer (``widgets``, imported on its own: it needs ipywidgets)."""

from .figures import (
    DIVERGING,
    grouped_bars,
    head_spectra,
    image_grid,
    save_figure,
    spectrum,
    spread_figure,
    style,
    styled,
)
from .inversion import error_histories, frontier, null_space_figure, score_histograms, signed_grid

__all__ = [
    "DIVERGING",
    "error_histories",
    "frontier",
    "grouped_bars",
    "head_spectra",
    "image_grid",
    "null_space_figure",
    "save_figure",
    "score_histograms",
    "signed_grid",
    "spectrum",
    "spread_figure",
    "style",
    "styled",
]
