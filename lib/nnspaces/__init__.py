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

#: Each front-door name and the module that defines it, by role.
_FRONT_DOOR = {
    "PROFILES": "runner.config",
    "RunConfig": "runner.config",
    "setup_run": "runner.config",
    "run_notebooks": "runner.execute",
    "Fig1Metrics": "runner.metrics",
    "Fig2Metrics": "runner.metrics",
    "Fig3Metrics": "runner.metrics",
    "Lesson4Metrics": "runner.metrics",
    "Lesson5Metrics": "runner.metrics",
    "Lesson6Metrics": "runner.metrics",
    "claim": "runner.decide",
    "evaluate_claims": "runner.decide",
    "with_paper": "paper",
    "CLASS_NAMES": "data",
    "class_means": "data",
    "load_dataset": "data",
    "REGISTRY": "models",
    "build_model": "models",
    "is_selu_stack": "models",
    "load_model": "loading",
    "materialize": "models",
    "model_as": "models",
    "n_parameters": "models",
    "networks": "models",
    "register_network": "models",
    "weight_layers": "models",
    "evaluate": "training",
    "write_csv": "files",
    "write_json": "files",
    "predict": "training",
    "LayerSpaces": "spaces.layer",
    "condition_number": "spaces.layer",
    "conv_as_matrix": "spaces.layer",
    "layer_spaces": "spaces.layer",
    "class_residuals": "spaces.residuals",
    "energy_kept": "spaces.residuals",
    "analyze": "spaces.analysis",
    "conv_table": "spaces.conv_table",
    "circular_spectrum": "spaces.conv_spectra",
    "kernel_norm": "spaces.conv_spectra",
    "layer_spectrum": "spaces.conv_spectra",
    "attention_heads": "spaces.analysis",
    "head_matrices": "spaces.analysis",
    "layernorm_reach": "spaces.analysis",
    "stopping_rules": "inversion",
    "invert": "inversion.api",
    "METHODS": "inversion.methods",
    "method_names": "inversion.methods",
    "QUICK_STEPS": "inversion.methods",
    "get_method": "inversion.methods",
    "quick_steps": "inversion.methods",
    "PRESETS": "inversion.solvers",
    "PROB_LEVEL": "inversion.targets",
    "make_targets": "inversion.targets",
    "probability_targets": "inversion.targets",
    "start_images": "inversion.targets",
    "PROB_MARGIN": "inversion.equations",
    "RESIDUALS": "inversion.equations",
    "InversionResult": "inversion.results",
    "evaluate_images": "inversion.results",
    "comparison_table": "inversion.crosscheck",
    "cross_check": "inversion.crosscheck",
    "pick_per_class": "inversion.crosscheck",
    "recognised_by_all": "inversion.crosscheck",
    "run_methods": "inversion.crosscheck",
    "NATURAL_SEARCH": "inversion.natural",
    "natural_preimages": "inversion.natural",
    "prior_effects": "inversion.natural",
    "QUICK_ROBUST_STEPS": "inversion.robust",
    "ROBUST_LADDER": "inversion.robust",
    "robust_preimages": "inversion.robust",
    "verdicts": "inversion.verdicts",
    "total_variation": "inversion.priors",
    "box_reach_gap": "inversion.nullspace",
    "diversity": "inversion.nullspace",
    "null_space_samples": "inversion.nullspace",
    "selu_inverter": "inversion.exact",
    "jacobian": "inversion.roots",
    "grouped_bars": "plots.figures",
    "head_spectra": "plots.figures",
    "image_grid": "plots.figures",
    "save_figure": "plots.figures",
    "error_histories": "plots.inversion",
    "frontier": "plots.inversion",
    "null_space_figure": "plots.inversion",
    "score_histograms": "plots.inversion",
    "signed_grid": "plots.inversion",
    "Explorer": "plots.widgets",
    "ex": "teaching.exercises",
}
#: Modules the front door names as they are (``ns.paper.ACCURACY``).
_MODULES = ("paper",)

__all__ = sorted([*_FRONT_DOOR, *_MODULES])


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value = importlib.import_module(f".{name}", __name__)
    elif name in _FRONT_DOOR:
        value = getattr(importlib.import_module(f".{_FRONT_DOOR[name]}", __name__), name)
    else:
        raise AttributeError(f"module 'nnspaces' has no attribute {name!r}")
    globals()[name] = value  # the next access skips this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
