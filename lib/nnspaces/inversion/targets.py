"""Targets and start images: what an inverse map aims at, and where it starts.

The paper's recipe: run the network over the training set and collect every output unit's
raw scores (:func:`score_stats`); the target for class ``c`` asks the other outputs for their
minimum and output ``c`` for its maximum (:func:`make_targets`); the search starts from a
class average or from the training images whose outputs come closest (:func:`start_images`)::

    training set --score_stats--> ScoreStats --make_targets--> targets t   (C, K)
         |                                                         |
         +--------------------start_images-------------------------+--> starts (C, *shape)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..data import class_means
from ..training import predict

#: Target variants: the paper's, its 25/75 percentile variant, the authors' notebook's, and
#: the follow-up paper's class probability (see :func:`probability_targets`).
TARGETS = ("min-max", "percentile", "notebook", "probability")
#: The class probability a ``probability`` target asks for by default (the follow-up paper's).
PROB_LEVEL = 0.9
#: How far past the level (in log-odds) a probability target aims: a solver that stops within
#: a relative error of 1e-4 of the raw scores still ends above the level.
PROB_MARGIN = 0.05
#: Start images (see :func:`start_images`); the first three are the paper's.
STARTS = ("avg-img", "min-img", "avg-min-img", "avg-img+noise", "avg-all")
PAPER_STARTS = STARTS[:3]


def check_name(kind: str, value: object, allowed: Sequence[str]) -> str:
    """``value`` if it is one of ``allowed``, else a ValueError naming both."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"unknown {kind} {value!r}; allowed: {', '.join(allowed)}")
    return value


def check_classes(classes: Sequence[int] | int | None, n_outputs: int) -> list[int]:
    """The requested classes as a list of ints in ``0 .. n_outputs-1`` (default: all)."""
    if classes is None:
        return list(range(n_outputs))
    if isinstance(classes, int | np.integer) and not isinstance(classes, bool):
        classes = [int(classes)]
    classes = list(classes)
    if not classes:
        raise ValueError("classes is empty; give at least one class")
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, int | np.integer) or not 0 <= c < n_outputs:
            raise ValueError(f"class {c!r} is out of range; allowed: 0..{n_outputs - 1}")
    return [int(c) for c in classes]


def check_targets(
    targets: torch.Tensor | np.ndarray, n_classes: int, n_outputs: int
) -> torch.Tensor:
    """Targets as a float64 ``(n_classes, n_outputs)`` tensor; a single ``(n_outputs,)``
    vector is accepted for one class."""
    t = torch.as_tensor(targets).detach().to("cpu", torch.float64)
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() != 2 or t.shape[1] != n_outputs:
        raise ValueError(
            f"target of length {t.shape[-1] if t.dim() else 0} (shape {tuple(t.shape)}); "
            f"expected {n_outputs} values per class"
        )
    if t.shape[0] != n_classes:
        raise ValueError(f"{t.shape[0]} target rows for {n_classes} classes; give one per class")
    if not torch.isfinite(t).all():
        raise ValueError("targets contain NaN or infinite values")
    return t


def check_percentiles(percentiles: Sequence[float]) -> tuple[float, float]:
    lo, hi = (float(p) for p in percentiles)
    if not 0 <= lo < hi <= 100:
        raise ValueError(f"percentiles {tuple(percentiles)!r} must satisfy 0 <= low < high <= 100")
    return lo, hi


def check_fraction(fraction: float) -> float:
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction!r} must be in (0, 1]")
    return float(fraction)


@dataclass(frozen=True, repr=False)
class ScoreStats:
    """Raw outputs ``(N, K)`` (float64) of a network on a data set, with its labels ``(N,)``."""

    outputs: torch.Tensor
    labels: torch.Tensor

    @property
    def n_outputs(self) -> int:
        return self.outputs.shape[1]

    def min(self) -> torch.Tensor:
        """Smallest value of every output unit over the data: ``(K,)``."""
        return self.outputs.min(0).values

    def max(self) -> torch.Tensor:
        """Largest value of every output unit over the data: ``(K,)``."""
        return self.outputs.max(0).values

    def percentile(self, q: float) -> torch.Tensor:
        """The ``q``-th percentile (0..100, linear interpolation) of every output: ``(K,)``."""
        if not 0 <= q <= 100:
            raise ValueError(f"percentile {q!r} must be in [0, 100]")
        return torch.from_numpy(np.percentile(self.outputs.numpy(), q, axis=0))

    def class_outputs(self, c: int) -> torch.Tensor:
        """Outputs of the images labelled ``c``: ``(N_c, K)``."""
        return self.outputs[self.labels == c]

    def __repr__(self) -> str:
        return f"ScoreStats({len(self.labels)} images x {self.n_outputs} outputs)"


def score_stats(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 1000,
) -> ScoreStats:
    """Every output unit's raw output on every image ``x`` ``(N, ...)`` (labels ``y``)."""
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images but {len(y)} labels")
    out = predict(model, x, device=device, batch_size=batch_size)
    return ScoreStats(out.double(), y.detach().cpu().long())


def make_targets(
    stats: ScoreStats,
    kind: str = "min-max",
    classes: Sequence[int] | int | None = None,
    *,
    percentiles: Sequence[float] = (25.0, 75.0),
) -> torch.Tensor:
    """Target outputs ``(C, K)`` float64, one row per class.

    ``min-max`` (the paper): ``t_j = min_data(output j)`` for ``j != c`` and ``t_c =
    max_data(output c)``. ``percentile``: the same with the low / high ``percentiles``.
    ``notebook`` (the authors' notebook): min and max of output ``c`` alone; every other entry
    is that minimum of output ``c``. (``probability`` targets depend on the start image:
    :func:`probability_targets`.)
    """
    check_name("target", kind, TARGETS)
    if kind == "probability":
        raise ValueError(
            "probability targets depend on the start image's outputs: use "
            "probability_targets(outputs, classes) or invert(..., targets='probability')"
        )
    classes = check_classes(classes, stats.n_outputs)
    if kind == "percentile":
        p_lo, p_hi = check_percentiles(percentiles)
        lo, hi = stats.percentile(p_lo), stats.percentile(p_hi)
    else:
        lo, hi = stats.min(), stats.max()
    t = torch.empty((len(classes), stats.n_outputs), dtype=torch.float64)
    for i, c in enumerate(classes):
        t[i] = lo[c] if kind == "notebook" else lo
        t[i, c] = hi[c]
    return t


def check_level(level: float) -> float:
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise ValueError(f"level={level!r} must be a probability in (0, 1)")
    return float(level)


def probability_targets(
    outputs: torch.Tensor, classes: Sequence[int], level: float = PROB_LEVEL
) -> torch.Tensor:
    """Raw-score targets ``(C, K)`` float64 whose softmax gives class ``c`` probability just
    above ``level``: the start image's ``outputs`` ``(C, K)`` with only output ``c`` changed,
    raised to ``log(level / (1 - level)) + PROB_MARGIN + logsumexp_{j != c} z_j`` (the
    smallest change of the scores that does it; an output already above stays as it is).
    """
    level = check_level(level)
    z = torch.as_tensor(outputs).detach().cpu().double().clone()
    classes = check_classes(list(classes), z.shape[1])
    if len(classes) != len(z):
        raise ValueError(f"{len(z)} output rows for {len(classes)} classes; give one per class")
    for i, c in enumerate(classes):
        others = torch.cat([z[i, :c], z[i, c + 1 :]])
        need = math.log(level / (1 - level)) + PROB_MARGIN + float(torch.logsumexp(others, 0))
        z[i, c] = max(float(z[i, c]), need)
    return z


def class_averages(x: torch.Tensor, y: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """Average training image of each class in ``classes``: ``(C, *x.shape[1:])``."""
    y = y.cpu().long()
    n = max(int(y.max()), *classes) + 1
    return class_means(x.cpu(), y, n)[list(classes)]


def start_images(
    kind: str,
    x: torch.Tensor,
    y: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    classes: Sequence[int] | int | None = None,
    stats: ScoreStats | None = None,
    fraction: float = 0.25,
    seed: int = 0,
) -> torch.Tensor:
    """Start images ``(C, *x.shape[1:])`` for the classes, from training images ``x`` / ``y``.

    ``avg-img``: the class average. ``min-img``: the class image whose output (from
    ``stats``, computed on these same ``x``) is closest to its target row (mean squared
    error). ``avg-min-img``: the average of the closest ``ceil(fraction * N_c)`` class images.
    ``avg-img+noise``: the class average plus uniform noise in [0, 1) (seeded). ``avg-all``:
    the average of all images, the same start for every class (for probability targets: a
    class average is often above the level already).
    """
    check_name("start", kind, STARTS)
    fraction = check_fraction(fraction)
    n_out = stats.n_outputs if stats is not None else int(y.max()) + 1
    classes = check_classes(classes, n_out)
    if kind == "avg-all":
        return x.double().mean(0).to(x.dtype).expand(len(classes), *x.shape[1:]).clone()
    if kind in ("avg-img", "avg-img+noise"):
        avg = class_averages(x, y, classes)
        if kind == "avg-img":
            return avg
        g = torch.Generator().manual_seed(seed)
        return avg + torch.rand(avg.shape, generator=g, dtype=avg.dtype)
    if stats is None or targets is None:
        raise ValueError(f"start {kind!r} needs the score statistics and the targets")
    if len(stats.labels) != len(y) or not torch.equal(stats.labels, y.cpu().long()):
        raise ValueError("stats were not computed on these images (labels differ)")
    targets = check_targets(targets, len(classes), stats.n_outputs)
    rows = []
    for i, c in enumerate(classes):
        idx = torch.nonzero(y.cpu() == c).flatten()
        if len(idx) == 0:
            raise ValueError(f"class {c} has no images")
        err = ((stats.outputs[idx] - targets[i]) ** 2).mean(1)
        order = torch.argsort(err, stable=True)
        if kind == "min-img":
            rows.append(x[idx[order[0]]])
        else:
            k = max(1, math.ceil(fraction * len(idx)))
            rows.append(x[idx[order[:k]]].double().mean(0).to(x.dtype))
    return torch.stack(rows)
