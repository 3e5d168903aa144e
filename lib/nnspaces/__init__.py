"""nnspaces: signal spaces, residual spaces and inverse maps of neural networks.

A reproduction of R. Pattichis and M. S. Pattichis, "Understanding Neural Network Systems for
Image Analysis using Vector Spaces and Inverse Maps", IEEE SSIAI 2024 (arXiv 2402.00261).

The front door, ``import nnspaces as ns``::

    ctx = ns.setup_run("default")                     # a run: its data, networks, folders
    model = ctx.trained("fcnn1").model                # a registered network, trained (cached)
    ns.layer_spaces(model[1].weight)                  # SVD, rank, condition number, subspaces
    ns.invert(model, "min-max", method="exact", data=ctx.data)   # images that hit targets
    ns.run_methods(model, "min-max", data=ctx.data)   # every method that applies, compared
    ns.run_notebooks(ns.RunConfig.from_profile("smoke"))         # every notebook, papermill

Everything else lives in its submodule, in the direction data flows: ``data`` ->
``models`` / ``training`` -> ``spaces`` / ``residuals`` -> ``exact`` -> ``inversion`` ->
``comparison`` -> ``natural`` -> ``metrics`` / ``plots`` / ``widgets`` -> ``report`` / ``run``.
"""

from __future__ import annotations

from typing import Any

from .comparison import comparison_table, run_methods
from .config import PROFILES, RunConfig, setup_run
from .inversion import METHODS, InversionResult, invert
from .models import REGISTRY, build_model, register_network
from .spaces import LayerSpaces, layer_spaces

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "PROFILES",
    "REGISTRY",
    "InversionResult",
    "LayerSpaces",
    "RunConfig",
    "build_model",
    "comparison_table",
    "invert",
    "layer_spaces",
    "register_network",
    "run_methods",
    "run_notebooks",
    "setup_run",
]


def run_notebooks(config: RunConfig, **kwargs: Any) -> list[dict]:
    """Execute the notebooks for ``config`` with papermill (:func:`nnspaces.run.run_notebooks`)."""
    from .run import run_notebooks as run

    return run(config, **kwargs)
