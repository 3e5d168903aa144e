"""Image priors: named penalty terms that pull an inverse image toward looking natural.

A prior here always means one of these penalties, added with a weight to the output error
that ``descent`` and ``box`` minimise (``priors={"tv": 0.1}``). The image an exact pre-image
stays closest to is its *reference*, not a prior.

=========  =====================================================================================
name       penalty per image
=========  =====================================================================================
tv         anisotropic total variation: mean absolute difference of neighbouring pixels
l2-avg     mean squared distance to the class's average training image
bn         DeepInversion-style: each BatchNorm2d input's channel mean and variance against the
           layer's running statistics (networks with BatchNorm2d only)
=========  =====================================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .specialise import bn_affine
from .targets import check_name


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@dataclass(frozen=True)
class Prior:
    """A named penalty: what it measures, whether it needs the class averages, and which
    models it applies to (``refusal`` says why one does not)."""

    name: str
    description: str
    needs_averages: bool = False
    applies_to: Callable[[nn.Module], bool] = lambda model: True
    refusal: str = ""


PRIORS: dict[str, Prior] = {
    p.name: p
    for p in (
        Prior("tv", "total variation: neighbouring pixels alike"),
        Prior("l2-avg", "squared distance to the class average", needs_averages=True),
        Prior(
            "bn",
            "BatchNorm statistics of real images",
            applies_to=_has_batchnorm,
            refusal="it has no BatchNorm2d layers",
        ),
    )
}


def check_priors(
    priors: Mapping[str, float | Sequence[float]] | None,
    model: nn.Module | None = None,
    rows: int | None = None,
) -> dict:
    """``priors`` as a dict ``{name: weight}`` with names from :data:`PRIORS` and finite
    weights >= 0 (priors whose weights are all zero dropped); with ``model``, each prior must
    apply to it. With ``rows``, a weight may also be a sequence of ``rows`` weights, one per
    image of the batch (kept as a tuple): one batch then holds runs with different weights.
    ``None`` means no prior."""
    if priors is None:
        return {}
    if not isinstance(priors, Mapping):
        raise ValueError(f"priors must be a dict {{name: weight}}, got {priors!r}")
    out = {}
    for name, weight in priors.items():
        check_name("prior", name, tuple(PRIORS))
        per_row = rows is not None and isinstance(weight, Sequence)
        if per_row and len(weight) != rows:
            raise ValueError(
                f"prior {name!r} has {len(weight)} weights for a batch of {rows} images"
            )
        for w in weight if per_row else (weight,):
            if isinstance(w, bool) or not isinstance(w, int | float):
                raise ValueError(f"prior {name!r} weight {w!r} must be a number")
            if not math.isfinite(w) or w < 0:
                raise ValueError(f"prior {name!r} weight {w!r} must be finite and >= 0")
        if model is not None and not PRIORS[name].applies_to(model):
            raise ValueError(
                f"prior {name!r} ({PRIORS[name].description}) does not apply to "
                f"{type(model).__name__}: {PRIORS[name].refusal}"
            )
        if per_row and any(w > 0 for w in weight):
            out[name] = tuple(float(w) for w in weight)
        elif not per_row and weight > 0:
            out[name] = float(weight)
    return out


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation per image, mean absolute neighbour difference ``(C,)``."""
    if x.dim() >= 3:
        dh = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).sum(1)
        dw = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).sum(1)
        return (dh + dw) / x[0].numel()
    return (x[:, 1:] - x[:, :-1]).abs().sum(1) / x.shape[1]


class BatchNormStats:
    """The ``bn`` prior's bookkeeping: while entered, every forward pass records, per image,
    ``||mu - running_mean|| + ||var - running_var||`` of each BatchNorm2d input (channel
    statistics over spatial positions); :meth:`pop` sums them over layers. Layers whose
    input is 1x1 (no spatial statistics) are skipped.

    ``folded`` (``{convolution name: BatchNorm2d}``, what
    :attr:`.specialise.Specialised.bn_of` records): BatchNorm layers folded into the
    convolution before them in ``model``, a specialised copy. Such a convolution outputs
    ``y = s (z - mean) + beta`` for the BatchNorm input ``z`` (``s = gamma / sqrt(var +
    eps)``, which must not be zero), so ``z``'s channel mean is ``(mu_y - beta) / s + mean``
    and its variance ``var_y / s^2``: the same terms from the faster copy."""

    def __init__(self, model: nn.Module, folded: Mapping[str, nn.BatchNorm2d] | None = None):
        self.layers = [(m, None) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        for name, bn in (folded or {}).items():
            s, beta = bn_affine(bn)
            if (s == 0).any():
                raise ValueError(f"{name}: the BatchNorm folded into it has a zero scale")
            self.layers.append((model.get_submodule(name), (bn, s, beta)))
        if not self.layers:
            raise ValueError(
                f"prior 'bn' needs BatchNorm2d layers (resnet18); {type(model).__name__} has none"
            )
        self.terms: list[torch.Tensor] = []
        self.handles: list = []

    def _term(self, a: torch.Tensor, bn: nn.BatchNorm2d, scale=None, shift=None) -> None:
        if a.shape[2] * a.shape[3] < 2:
            return
        mu = a.mean((2, 3))
        var = a.var((2, 3), unbiased=False)
        if scale is not None:  # a is the BatchNorm's output: back to its input's statistics
            mu, var = (mu - shift) / scale + bn.running_mean, var / scale**2
        self.terms.append(
            torch.linalg.vector_norm(mu - bn.running_mean, dim=1)
            + torch.linalg.vector_norm(var - bn.running_var, dim=1)
        )

    def __enter__(self) -> BatchNormStats:
        def hook(folded):
            if folded is None:
                return lambda mod, inp, out: self._term(inp[0], mod)
            # a copy: the activation after it may work in place (ResNet's ReLU does)
            return lambda mod, inp, out: self._term(out.clone(), *folded)

        self.handles = [m.register_forward_hook(hook(f)) for m, f in self.layers]
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []
        self.terms = []

    def pop(self) -> torch.Tensor:
        total = torch.stack(self.terms).sum(0)
        self.terms = []
        return total


class PriorTerms:
    """The weighted priors of one run, as a context (``bn`` hooks the model while entered).

    ``add(total, x, rows)`` returns ``total + sum_k weight_k * penalty_k(x)`` per image, for
    the images ``x`` of the batch's ``rows``, called after the forward pass of ``x`` (``bn``
    reads what that pass recorded). A weight is a number or one weight per row of the batch
    (:func:`check_priors`); ``free`` marks the rows without any prior weight (a ``(C,)`` mask
    with per-row weights, else one boolean). ``averages`` ``(C, *shape)``: the class averages
    ``l2-avg`` compares with; ``folded``: see :class:`BatchNormStats`.
    """

    def __init__(
        self,
        model: nn.Module,
        weights: Mapping[str, float | Sequence[float]],
        averages: torch.Tensor | None,
        device: torch.device | str = "cpu",
        folded: Mapping[str, nn.BatchNorm2d] | None = None,
    ):
        if "l2-avg" in weights and averages is None:
            raise ValueError("prior 'l2-avg' needs the class averages")
        self.weights = {
            name: torch.as_tensor(w, dtype=torch.float64, device=device)
            for name, w in weights.items()
        }
        self.free = torch.tensor(True, device=device)
        for w in self.weights.values():
            self.free = self.free & (w == 0)
        self.averages = averages
        self.bn = BatchNormStats(model, folded) if "bn" in self.weights else None

    def __enter__(self) -> PriorTerms:
        if self.bn is not None:
            self.bn.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.bn is not None:
            self.bn.__exit__(*exc)

    def add(self, total: torch.Tensor, x: torch.Tensor, rows) -> torch.Tensor:
        w = {
            name: (weight[rows] if weight.dim() else weight).to(total.dtype)
            for name, weight in self.weights.items()
        }
        if "tv" in w:
            total = total + w["tv"] * total_variation(x)
        if "l2-avg" in w:
            total = total + w["l2-avg"] * ((x - self.averages[rows]) ** 2).flatten(1).mean(1)
        if "bn" in w:
            total = total + w["bn"] * self.bn.pop()
        return total
