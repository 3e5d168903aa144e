"""nnspaces: signal spaces, residual spaces and inverse maps of neural networks.

A reproduction of R. Pattichis and M. S. Pattichis, "Understanding Neural Network Systems for
Image Analysis using Vector Spaces and Inverse Maps", IEEE SSIAI 2024 (arXiv 2402.00261).

The front door, ``import nnspaces as ns``::

    ctx = ns.setup_run("default")                     # a run: its data, networks, folders
    model = ctx.trained("fcnn1").model                # a registered network, trained (cached)
    ns.layer_spaces(model[1].weight)                  # SVD, rank, condition number, subspaces
    ns.analyze(model, ctx.data)                       # every layer of any torch model
    ns.invert(model, "min-max", method="exact", data=ctx.data)   # images that hit targets
    ns.run_methods(model, "min-max", data=ctx.data)   # every method that applies, compared
    ns.run_notebooks(ns.RunConfig.from_profile("smoke"))         # every notebook, papermill

The library is grouped by role, and imports point down only (a test keeps it so):
``paths``, ``paper``, ``files``, ``progress`` -> ``data`` -> ``models`` -> ``training`` ->
``spaces`` (SVD, residuals, operators, analyze) -> ``inversion`` (invert and its methods) ->
``plots`` (figures, the explorer) -> ``runner`` (config, execution, metrics, report, sweeps)
-> ``teaching`` (exercises, student edition) -> ``cli`` (``python -m nnspaces``).

Names are imported when first used, so ``python -m nnspaces student`` needs no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Each front-door name and the module that defines it.
_FRONT_DOOR = {
    "PROFILES": "runner.config",
    "RunConfig": "runner.config",
    "setup_run": "runner.config",
    "run_notebooks": "runner.execute",
    "REGISTRY": "models",
    "build_model": "models",
    "register_network": "models",
    "LayerSpaces": "spaces.layer",
    "layer_spaces": "spaces.layer",
    "analyze": "spaces.analysis",
    "METHODS": "inversion.methods",
    "InversionResult": "inversion.results",
    "invert": "inversion.api",
    "comparison_table": "inversion.crosscheck",
    "run_methods": "inversion.crosscheck",
}

__all__ = sorted(_FRONT_DOOR)


def __getattr__(name: str) -> Any:
    if name not in _FRONT_DOOR:
        raise AttributeError(f"module 'nnspaces' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_FRONT_DOOR[name]}", __name__), name)
    globals()[name] = value  # the next access skips this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_FRONT_DOOR})
