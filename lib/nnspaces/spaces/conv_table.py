"""The table of every convolution of a model at a real input size: one row per layer, each
value beside its label (:data:`~nnspaces.spaces.conv_spectra.LABELS`) and its seconds.

    table = conv_table(torchvision.models.resnet18(weights=None), (3, 224, 224))

The values and methods are :mod:`nnspaces.spaces.conv_spectra`'s.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .conv_spectra import CONVS, TRANSPOSED, LayerSpectrum, layer_spectrum


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def _condition(s: LayerSpectrum) -> tuple[float, str]:
    """``sigma_max / sigma_min_all`` and its label, from those of its two parts."""
    if s.sigma_min == 0.0 and s.sigma_min_label == "exact":
        return math.inf, "exact"
    kappa = s.sigma_max / s.sigma_min if s.sigma_min > 0 else math.inf
    if s.sigma_max_label == "exact" and s.sigma_min_label == "exact":
        return kappa, "exact"
    if s.sigma_min_label == "upper bound" and s.sigma_max_label == "exact":
        return kappa, "lower bound"
    return kappa, "lower bound" if s.sigma_max_label == "lower bound" else "not applicable"


def input_shapes(model: nn.Module, input_shape, device=None) -> dict[str, tuple[int, ...]]:
    """The input shape (no batch dimension) every convolution of ``model`` sees on one
    zero input of ``input_shape`` (forward pre-hooks; the first call of a layer used twice)."""
    param = next(model.parameters(), None)
    device = device if device is not None else (param.device if param is not None else "cpu")
    dtype = param.dtype if param is not None else torch.float32
    seen: dict[str, tuple[int, ...]] = {}

    def hook(name):
        def record(module, args):
            seen.setdefault(name, tuple(args[0].shape[1:]))

        return record

    handles = [
        m.register_forward_pre_hook(hook(name))
        for name, m in model.named_modules()
        if isinstance(m, CONVS + TRANSPOSED)
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device, dtype=dtype))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return seen


#: The columns of :func:`conv_table`; each value column ``v`` has ``v_label`` beside it.
TABLE_COLUMNS = (
    "layer", "type", "input_shape", "shape",
    "kernel_norm", "kernel_norm_label",
    "circular_norm", "circular_norm_label", "circular_sigma_min", "circular_sigma_min_label",
    "sigma_max", "sigma_max_label", "sigma_max_rel_error",
    "sigma_max_upper", "sigma_max_upper_label",
    "sigma_min_all", "sigma_min_all_label", "condition_number_all", "condition_number_all_label",
    "null_dim", "null_dim_label", "lanczos_steps",
    "seconds_kernel_norm", "seconds_circular", "seconds_upper_bound", "seconds_lanczos",
)  # fmt: skip


def conv_table(
    model: nn.Module,
    input_shape,
    *,
    layers=None,
    device=None,
    smallest_steps: int = 0,
    max_steps: int = 300,
    upper_bound: bool = True,
    fast: bool = True,
    progress: bool = False,
):
    """One row per convolution of ``model`` (``Conv1d/2d/3d``, ``ConvTranspose1d/2d/3d``) at the
    input it sees on an input of ``input_shape`` (one input, no batch dimension): a pandas
    DataFrame with :data:`TABLE_COLUMNS`. ``layers``: the first that many convolutions (an
    int) or their names (default all). Every value carries its label (:data:`LABELS`);
    ``kernel_norm`` is exact for the reshaped kernel, which is not the layer's operator.
    ``sigma_max_rel_error``: how far below the certified eigenvalue's root ``sigma_max`` may
    lie, relative (its Ritz residual; 0 where the structure gives it).
    ``sigma_min_all`` / ``condition_number_all`` are over all ``min(m, n)`` singular values,
    the zero ones too. See :func:`layer_spectrum` for ``smallest_steps``, ``max_steps``,
    ``upper_bound`` and ``fast``."""
    import pandas as pd
    from tqdm.auto import tqdm

    shapes = input_shapes(model, input_shape, device)
    modules = dict(model.named_modules())
    names = list(shapes)
    if isinstance(layers, int):
        names = names[:layers]
    elif layers is not None:
        unknown = [name for name in layers if name not in shapes]
        if unknown:
            raise ValueError(
                f"layers {unknown} are not convolutions of the model; allowed: {names}"
            )
        names = list(layers)
    rows = []
    for name in tqdm(names, desc="convolutions", disable=not progress):
        s = layer_spectrum(
            modules[name], shapes[name], device=device, smallest_steps=smallest_steps,
            max_steps=max_steps, upper_bound=upper_bound, fast=fast,
        )  # fmt: skip
        kappa, kappa_label = _condition(s)
        circ = "exact-for-circular" if s.circular_norm is not None else "not applicable"
        rows.append({
            "layer": name, "type": type(modules[name]).__name__,
            "input_shape": " x ".join(map(str, shapes[name])),
            "shape": f"{s.shape[0]} x {s.shape[1]}",
            "kernel_norm": s.kernel_norm, "kernel_norm_label": "exact",
            "circular_norm": _nan(s.circular_norm), "circular_norm_label": circ,
            "circular_sigma_min": _nan(s.circular_min), "circular_sigma_min_label": circ,
            "sigma_max": s.sigma_max, "sigma_max_label": s.sigma_max_label,
            "sigma_max_rel_error": s.sigma_max_rel_error,
            "sigma_max_upper": _nan(s.sigma_max_upper),
            "sigma_max_upper_label": "upper bound" if s.sigma_max_upper is not None
            else "not applicable",
            "sigma_min_all": s.sigma_min, "sigma_min_all_label": s.sigma_min_label,
            "condition_number_all": kappa, "condition_number_all_label": kappa_label,
            "null_dim": s.null_dim, "null_dim_label": s.null_dim_label,
            "lanczos_steps": s.lanczos_steps,
            **{f"seconds_{k}": v for k, v in s.seconds.items()},
        })  # fmt: skip
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
