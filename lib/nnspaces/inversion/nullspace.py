"""What the null spaces of a SELU stack allow: many different inputs with one and the same
output (:func:`null_space_samples`, the random backward walk), how different they are
(:func:`diversity`), and whether any image inside the pixel box reaches a target
(:func:`box_reach_gap`), all on the exact inverse of :mod:`.exact`."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .exact import exact_images, selu_inverse, selu_inverter


def null_space_samples(
    model: nn.Module,
    target: torch.Tensor,
    reference: torch.Tensor,
    k: int = 8,
    *,
    scale: float = 0.5,
    margin: float = 1e-3,
    box: bool = False,
    seed: int = 0,
    layers: str = "first",
) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    """``k`` different inputs of a SELU stack that all give the output ``target`` ``(K,)``.

    ``layers="first"``: the exact inverse (closest to ``reference``: one image ``(1,
    *shape)``, its batch dimension kept, or a flat ``(n,)``) fixes the first layer's
    pre-activation ``z1``; its pre-image set is ``W1^+ (z1 - b1) + N w``, and each sample is
    the point of that set closest to ``reference`` plus a random null-space vector (std
    ``scale`` times the reference's RMS per null-space coordinate; seeded). ``layers="all"``:
    the follow-up paper's backward inversion, a random null-space vector at every layer that
    has a null space (:meth:`SeluInverter.invert` with ``noise=scale``); a draw fails where its
    choices leave nothing admissible below. With ``box`` the images are moved inside [0, 1]
    where possible. Returns images ``(k, *shape)``, success ``(k,)`` and the reasons of failed
    rows (their images NaN).
    """
    inverter = selu_inverter(model)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k={k!r} must be an integer >= 1")
    if not scale >= 0:
        raise ValueError(f"scale={scale!r} must be >= 0")
    if layers not in ("first", "all"):
        raise ValueError(f"layers={layers!r}; allowed: first, all")
    t = torch.as_tensor(target).detach().cpu().double().reshape(1, -1)
    if t.shape[1] != inverter.n_outputs:
        raise ValueError(f"target has {t.shape[1]} values; the network has {inverter.n_outputs}")
    ref = torch.as_tensor(reference).detach().cpu()
    if ref.numel() != inverter.n_inputs:
        raise ValueError(
            f"reference has {ref.numel()} values; the network takes {inverter.n_inputs}"
        )
    shape = ref.shape[1:] if ref.shape[0] == 1 and ref.dim() > 1 else ref.shape
    P = np.repeat(ref.double().reshape(1, -1).numpy(), k, axis=0)
    rng = np.random.default_rng(seed)
    lo, hi = (0.0, 1.0) if box else (-math.inf, math.inf)
    if layers == "all":
        T = np.repeat(t.numpy(), k, axis=0)
        X, ok, reasons = inverter.invert(
            T, P, margin=margin, box=(lo, hi) if box else None, noise=scale, rng=rng
        )
        return torch.from_numpy(X).reshape(k, *shape), ok, reasons
    x1, ok1, reasons1, _ = exact_images(
        inverter, t, ref.reshape(1, -1), margin=margin, hidden="auto"
    )
    first = inverter.layers[0]
    D = np.repeat(x1.numpy() @ first.W.T, k, axis=0)  # W1 x = z1 - b1
    rms = float(np.sqrt(np.mean(P[0] ** 2))) + 1e-12
    null = first.spaces.null_space
    coeffs = rng.standard_normal((k, null.shape[1]))
    Q = P + scale * rms * coeffs @ null.T
    ok, reasons = np.repeat(ok1, k), reasons1 * k
    X = inverter.solve_layer(0, D, Q, lo, hi, ok, reasons)
    return torch.from_numpy(X).reshape(k, *shape), ok, reasons


def diversity(images: torch.Tensor) -> dict[str, float]:
    """How different images ``(k, ...)`` are (NaN rows, failed samples, left out): the
    number kept, and the mean and smallest pairwise RMS pixel difference
    ``sqrt(mean((x_i - x_j)^2))`` over pairs ``i < j`` (NaN with fewer than two)."""
    X = torch.as_tensor(images).detach().double().reshape(len(images), -1)
    X = X[~torch.isnan(X).any(1)]
    n = len(X)
    if n < 2:
        return {"n": n, "mean_rms_difference": math.nan, "min_rms_difference": math.nan}
    d = torch.cdist(X, X) / math.sqrt(X.shape[1])
    pairs = d[torch.triu_indices(n, n, 1).unbind()]
    return {
        "n": n,
        "mean_rms_difference": float(pairs.mean()),
        "min_rms_difference": float(pairs.min()),
    }


def box_reach_gap(model: nn.Module, targets: torch.Tensor, lo: float = 0.0, hi: float = 1.0):
    """Whether any image in ``[lo, hi]`` reaches each target row of a one-layer SELU network.

    The target asks for the pre-activation ``z = selu^-1(t) - b``; the closest ``W x`` any
    image in the box gives is a bounded least-squares problem (convex: scipy's
    ``lsq_linear``), so the answer is exact, not a local search. Returns per row the relative
    distance ``||W x* - z|| / ||z||``: zero (to the solver's accuracy) exactly when the
    target is reachable inside the box. Deeper networks are refused: there, SELUs sit between
    the box and the output and the question is no longer convex.
    """
    from scipy.optimize import lsq_linear

    layers = selu_inverter(model).layers
    if len(layers) != 1:
        raise ValueError(
            f"box_reach_gap needs a one-layer SELU network; this one has {len(layers)} "
            "layers (beyond one the question is not convex)"
        )
    (layer,) = layers
    t = targets.detach().double().cpu().numpy()
    need = (selu_inverse(t) if layer.selu_after else t) - layer.b
    gap = [
        np.linalg.norm(layer.W @ lsq_linear(layer.W, z, bounds=(lo, hi)).x - z) / np.linalg.norm(z)
        for z in need
    ]
    return np.array(gap)
