"""Inverse maps: images that make a network give a chosen output.

The paper's recipe (its Figure 3), and what we add to it::

    training set --score_stats--> ScoreStats --make_targets--> targets t   (C, 10)
         |                                                         |
         +--------------------start_images-------------------------+--> start images (C,1,28,28)
                                                                   |
    invert(model, t, method=...)  -->  InversionResult (image, output, errors, success, ...)

Methods (:data:`METHODS`), all batched over the requested classes:

==========================  ===============================================================
``avg-img`` ...             the start image itself (no optimisation): the paper's plain rows
``<start>+training``        the paper's "+training": SGD on the image against the MSE to the
                            target, lr 1e-4, 100 steps (``PRESETS["original"]``)
``exact``                   SELU FCNNs only: walk backward layer by layer, inverting SELU
                            exactly and solving each linear layer as ``W^+ (z - b) + N w``,
                            the null-space part chosen closest to a prior image (the start)
                            while keeping every hidden value inside SELU's range; for deeper
                            nets the hidden values come from Newton steps on the first
                            layer's pre-activation instead (see :func:`nnspaces.exact.exact_images`)
``newton``                  minimum-norm Gauss-Newton root finding ``x += J^+ (t - f(x))``
                            with the input Jacobian, damped, with a line search
``descent``                 Adam on the relative squared output error (plus optional priors),
                            step size decaying; any differentiable network
``box``                     the same, projected onto pixels in [0, 1] after every step
==========================  ===============================================================

Every method returns an :class:`InversionResult`; :func:`combine_best` picks per class the best
of several ("best", or "best-box" among images inside [0, 1]); :func:`cross_check` asks other
networks what digit they see; :func:`prior_frontier` sweeps a prior's weight.

Image shapes are ``(C, *input_shape)`` (``(C, 1, 28, 28)`` for the paper's networks), outputs
and targets ``(C, K)`` with ``K`` the number of outputs (10). Results live on the CPU.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .data import Dataset, class_means
from .exact import (
    HIDDEN,
    exact_images,
    selu_inverter,
    weights_version,
)
from .models import check_network
from .training import predict

TARGETS = ("min-max", "percentile", "notebook")
STARTS = ("avg-img", "min-img", "avg-min-img", "avg-img+noise")
METHODS = (
    "avg-img",
    "min-img",
    "avg-min-img",
    "avg-img+training",
    "min-img+training",
    "avg-min-img+training",
    "exact",
    "newton",
    "descent",
    "box",
)
PRIORS = ("tv", "l2-avg", "bn")

Callback = Callable[[int, float], "bool | None"]


@dataclass(frozen=True)
class Preset:
    """Settings of an iterative solver: optimiser, initial step size, number of steps, and
    the step size it decays to (geometrically; ``None`` keeps it constant)."""

    optimizer: str  # "sgd", "adam" or "gauss-newton"
    lr: float
    steps: int
    lr_final: float | None = None


#: ``original`` is the authors' "+training"; the others are this library's defaults.
PRESETS: dict[str, Preset] = {
    "original": Preset("sgd", 1e-4, 100),
    "newton": Preset("gauss-newton", 1.0, 60),
    # measured on resnet18 (embedded data, min/max targets; bench/inversion.py): smaller
    # steps leave some classes in a poor local minimum; projected steps this large push
    # pixels to 0 or 1 and still reach every class to ~3e-7
    "descent": Preset("adam", 0.3, 1000, 1e-5),
    "box": Preset("adam", 3.0, 1000, 1e-4),
    # gentle steps from the start image: with a prior, images that still look like digits
    "natural": Preset("adam", 0.1, 300, 1e-2),
}


# ----------------------------------------------------------------------------- validation


def _check_name(kind: str, value: object, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"unknown {kind} {value!r}; allowed: {', '.join(allowed)}")
    return value


def check_priors(priors: Mapping[str, float] | None) -> dict[str, float]:
    """``priors`` as a dict ``{name: weight}`` with names from :data:`PRIORS` and finite
    weights >= 0 (zero weights dropped). ``None`` means no prior."""
    if priors is None:
        return {}
    if not isinstance(priors, Mapping):
        raise ValueError(f"priors must be a dict {{name: weight}}, got {priors!r}")
    out = {}
    for name, weight in priors.items():
        _check_name("prior", name, PRIORS)
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise ValueError(f"prior {name!r} weight {weight!r} must be a number")
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"prior {name!r} weight {weight!r} must be finite and >= 0")
        if weight > 0:
            out[name] = float(weight)
    return out


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


def _check_percentiles(percentiles: Sequence[float]) -> tuple[float, float]:
    lo, hi = (float(p) for p in percentiles)
    if not 0 <= lo < hi <= 100:
        raise ValueError(f"percentiles {tuple(percentiles)!r} must satisfy 0 <= low < high <= 100")
    return lo, hi


def _check_fraction(fraction: float) -> float:
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction!r} must be in (0, 1]")
    return float(fraction)


# ----------------------------------------------------------------------------- statistics


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
    is that minimum of output ``c``.
    """
    _check_name("target", kind, TARGETS)
    classes = check_classes(classes, stats.n_outputs)
    if kind == "percentile":
        p_lo, p_hi = _check_percentiles(percentiles)
        lo, hi = stats.percentile(p_lo), stats.percentile(p_hi)
    else:
        lo, hi = stats.min(), stats.max()
    t = torch.empty((len(classes), stats.n_outputs), dtype=torch.float64)
    for i, c in enumerate(classes):
        t[i] = lo[c] if kind == "notebook" else lo
        t[i, c] = hi[c]
    return t


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
    ``avg-img+noise``: the class average plus uniform noise in [0, 1) (seeded).
    """
    _check_name("start", kind, STARTS)
    fraction = _check_fraction(fraction)
    n_out = stats.n_outputs if stats is not None else int(y.max()) + 1
    classes = check_classes(classes, n_out)
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


# ----------------------------------------------------------------------------- models


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and ``requires_grad=False`` on every parameter; both restored on exit."""
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, f in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(f)
        model.train(was_training)


_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _model_as(model: nn.Module, dtype: torch.dtype, device: torch.device) -> nn.Module:
    """``model`` itself when it already has this dtype and device, else a frozen eval-mode
    copy (cached while the weights stay the same). Never changes ``model``."""
    p = next(model.parameters())
    if p.dtype == dtype and p.device == device:
        return model
    per_model = _COPIES.setdefault(model, {})
    key = (dtype, str(device))
    version = weights_version(model)
    hit = per_model.get(key)
    if hit is not None and hit[0] == version:
        return hit[1]
    work = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    for q in work.parameters():
        q.requires_grad_(False)
    per_model[key] = (version, work)
    return work


def n_outputs_of(model: nn.Module) -> int:
    """Number of outputs: ``out_features`` of the last Linear layer."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"cannot tell how many outputs {type(model).__name__} has (no Linear)")
    return linears[-1].out_features


def infer_network(model: nn.Module) -> str:
    """The paper's name for ``model`` (``fcnn1`` / ``fcnn5`` / ``resnet18``) when it has that
    structure, else ``selu-fcnn`` (another Linear/SELU stack) or its class name."""
    try:
        inv = selu_inverter(model)
    except ValueError:
        from torchvision.models import ResNet

        return "resnet18" if isinstance(model, ResNet) else type(model).__name__
    widths = [inv.layers[0].W.shape[1]] + [la.W.shape[0] for la in inv.layers]
    if widths == [784, 10] and inv.layers[-1].selu_after:
        return "fcnn1"
    if widths == [784, 256, 256, 128, 32, 10] and not inv.layers[-1].selu_after:
        return "fcnn5"
    return "selu-fcnn"


# ----------------------------------------------------------------------------- results


@dataclass(repr=False)
class InversionResult:
    """Images for ``C`` classes and how well they reach their targets (all on the CPU).

    ``image`` / ``start`` ``(C, *input_shape)``; ``output`` / ``target`` ``(C, K)`` float64
    (``output`` is the network's output on ``image``, evaluated in float64); per class
    ``(C,)`` arrays: ``rel_error = ||output - target|| / ||target||``, ``prob`` (softmax
    probability of the class), ``predicted``, ``start_distance`` (L2 to the start / prior
    image), ``outside`` (fraction of pixels outside [0, 1]), ``success``; ``reason`` says why a
    class failed (empty where it succeeded); ``source`` names the method behind each image
    (differs per class for :func:`combine_best`).
    """

    network: str
    method: str
    classes: list[int]
    image: torch.Tensor
    start: torch.Tensor
    output: torch.Tensor
    target: torch.Tensor
    rel_error: np.ndarray
    prob: np.ndarray
    predicted: np.ndarray
    start_distance: np.ndarray
    outside: np.ndarray
    success: np.ndarray
    reason: list[str]
    seconds: float
    source: list[str]
    steps: int = 0
    settings: dict = field(default_factory=dict)
    history: list[tuple[int, float]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def median_rel_error(self) -> float:
        """Median relative error over classes (failed exact rows count as infinite)."""
        return float(np.median(np.where(np.isnan(self.rel_error), np.inf, self.rel_error)))

    @property
    def n_success(self) -> int:
        return int(self.success.sum())

    def __repr__(self) -> str:
        rel = np.where(np.isnan(self.rel_error), np.inf, self.rel_error)
        return (
            f"InversionResult({self.network}, {self.method}, {len(self)} classes, "
            f"rel_error median {np.median(rel):.3g} max {rel.max():.3g}, "
            f"success {self.n_success}/{len(self)}, "
            f"outside [0,1] {float(np.nanmean(self.outside)) if len(self) else 0:.1%}, "
            f"{self.seconds:.3g} s)"
        )

    def table(self) -> str:
        """One line per class: error, probability, prediction, pixels outside, success."""
        lines = ["class  rel_error  prob    pred  outside  start_dist  ok  reason"]
        for i, c in enumerate(self.classes):
            lines.append(
                f"{c:>5}  {self.rel_error[i]:9.3g}  {self.prob[i]:6.3f}  {self.predicted[i]:>4}"
                f"  {self.outside[i]:7.1%}  {self.start_distance[i]:10.3g}"
                f"  {'yes' if self.success[i] else 'no':>3}  {self.reason[i]}"
            )
        return "\n".join(lines)

    def to_dict(self, images: bool = False) -> dict:
        """Plain lists and numbers for a JSON metrics file (NaN becomes None)."""

        def floats(a) -> list:
            a = np.asarray(a, dtype=np.float64)
            return (
                [None if not math.isfinite(v) else float(v) for v in a.ravel().tolist()]
                if (a.ndim <= 1)
                else [floats(r) for r in a]
            )

        d = {
            "network": self.network,
            "method": self.method,
            "classes": list(self.classes),
            "source": list(self.source),
            "rel_error": floats(self.rel_error),
            "median_rel_error": float(np.median(self.rel_error)) if len(self) else None,
            "prob": floats(self.prob),
            "predicted": [int(p) for p in self.predicted],
            "start_distance": floats(self.start_distance),
            "outside": floats(self.outside),
            "success": [bool(s) for s in self.success],
            "reason": list(self.reason),
            "seconds": float(self.seconds),
            "steps": int(self.steps),
            "output": floats(self.output.numpy()),
            "target": floats(self.target.numpy()),
            "settings": _jsonable(self.settings),
        }
        if not math.isfinite(d["median_rel_error"] or 0.0):
            d["median_rel_error"] = None
        if images:
            d["image"] = floats(self.image.reshape(len(self), -1).numpy())
        return d


def _jsonable(v):
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, float | int | str | bool) or v is None:
        return v
    return str(v)


@torch.no_grad()
def evaluate_images(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    classes: Sequence[int],
    *,
    network: str,
    method: str,
    start: torch.Tensor | None = None,
    seconds: float = 0.0,
    tol: float = 1e-4,
    require_box: bool = False,
    ok: np.ndarray | None = None,
    reasons: Sequence[str] | None = None,
    steps: int = 0,
    settings: dict | None = None,
    history: list | None = None,
    device: str | torch.device = "cpu",
) -> InversionResult:
    """Measure images ``(C, *shape)`` against targets ``(C, K)`` (float64 forward pass).

    A class succeeds when its relative error is <= ``tol`` (and, with ``require_box``, all
    its pixels lie in [0, 1]) and it did not already fail (``ok`` False with a reason).
    """
    device = torch.device(device)
    classes = list(classes)
    C = len(classes)
    img = images.detach().cpu()
    start = img.clone() if start is None else start.detach().cpu()
    target = targets.detach().cpu().double()
    work = _model_as(model, torch.float64, device)
    with frozen(work):
        out = work(img.double().to(device)).cpu()
    rel = (
        torch.linalg.vector_norm(out - target, dim=1)
        / torch.linalg.vector_norm(target, dim=1).clamp_min(1e-300)
    ).numpy()
    prob = torch.softmax(out, 1)[torch.arange(C), torch.tensor(classes)].numpy()
    pred = out.argmax(1).numpy() if C else np.zeros(0, dtype=np.int64)
    flat = img.double().reshape(C, -1)
    dist = torch.linalg.vector_norm(flat - start.double().reshape(C, -1), dim=1).numpy()
    outside = ((flat < 0) | (flat > 1)).double().mean(1).numpy()
    nan = torch.isnan(flat).any(1).numpy()
    outside[nan] = np.nan
    success = np.ones(C, dtype=bool) if ok is None else np.asarray(ok, dtype=bool).copy()
    reason = [""] * C if reasons is None else list(reasons)
    for i in range(C):
        if not success[i]:
            continue
        if not rel[i] <= tol:
            success[i] = False
            reason[i] = f"relative error {rel[i]:.3g} > tol {tol:g}"
        elif require_box and outside[i] > 0:
            success[i] = False
            reason[i] = f"{outside[i]:.1%} of pixels outside [0, 1]"
    return InversionResult(
        network=network,
        method=method,
        classes=classes,
        image=img,
        start=start,
        output=out,
        target=target,
        rel_error=rel,
        prob=prob,
        predicted=pred,
        start_distance=dist,
        outside=outside,
        success=success,
        reason=reason,
        seconds=float(seconds),
        source=[method] * C,
        steps=steps,
        settings=dict(settings or {}),
        history=list(history or []),
    )


# ----------------------------------------------------------------------------- objectives


def _mse_matched(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-row mean squared error ``(C,)``; shapes must match exactly (no broadcasting)."""
    if out.shape != target.shape:
        raise ValueError(f"output shape {tuple(out.shape)} != target shape {tuple(target.shape)}")
    return ((out - target) ** 2).mean(1)


def _tv(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation per image, mean absolute neighbour difference ``(C,)``."""
    if x.dim() >= 3:
        dh = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).sum(1)
        dw = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).sum(1)
        return (dh + dw) / x[0].numel()
    return (x[:, 1:] - x[:, :-1]).abs().sum(1) / x.shape[1]


class _BNStats:
    """DeepInversion-style prior: per image, each BatchNorm2d input's channel mean and
    variance over spatial positions against the layer's running statistics,
    ``||mu - running_mean|| + ||var - running_var||`` summed over layers. Layers whose input
    is 1x1 (no spatial statistics) are skipped."""

    def __init__(self, model: nn.Module):
        self.layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        if not self.layers:
            raise ValueError(
                f"prior 'bn' needs BatchNorm2d layers (resnet18); {type(model).__name__} has none"
            )
        self.terms: list[torch.Tensor] = []
        self.handles: list = []

    def _hook(self, mod: nn.BatchNorm2d, inp: tuple, out: torch.Tensor) -> None:
        a = inp[0]
        if a.shape[2] * a.shape[3] < 2:
            return
        mu = a.mean((2, 3))
        var = a.var((2, 3), unbiased=False)
        self.terms.append(
            torch.linalg.vector_norm(mu - mod.running_mean, dim=1)
            + torch.linalg.vector_norm(var - mod.running_var, dim=1)
        )

    def __enter__(self) -> _BNStats:
        self.handles = [m.register_forward_hook(self._hook) for m in self.layers]
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


def _relative_sq_error(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    if out.shape != t.shape:
        raise ValueError(f"output shape {tuple(out.shape)} != target shape {tuple(t.shape)}")
    return ((out - t) ** 2).sum(1) / (t**2).sum(1).clamp_min(1e-30)


# ----------------------------------------------------------------------------- solvers


def _lr_at(preset: Preset, lr: float, step: int, steps: int) -> float:
    if preset.lr_final is None or steps <= 1:
        return lr
    return lr * (preset.lr_final / preset.lr) ** (step / (steps - 1))


def _first_order(
    model: nn.Module,
    start: torch.Tensor,
    t: torch.Tensor,
    *,
    preset: Preset,
    steps: int,
    lr: float,
    loss: str,
    priors: dict[str, float],
    averages: torch.Tensor | None,
    box: bool,
    callback: Callback | None,
    callback_every: int,
    progress: bool,
    desc: str,
    stop_tol: float,
) -> tuple[torch.Tensor, int, list]:
    """SGD / Adam on the images, batched over classes (classes are independent: eval mode).

    ``loss="mse"``: the paper's per-class MSE (mean over outputs), summed over classes, so
    each class gets exactly the gradient of its own run. ``loss="rel"``: relative squared
    error plus weighted priors. ``box``: project onto [0, 1] after every step.
    """
    x = start.clone()
    if box:
        x.clamp_(0, 1)
    x.requires_grad_(True)
    opt = torch.optim.SGD([x], lr=lr) if preset.optimizer == "sgd" else torch.optim.Adam([x], lr=lr)
    bn = _BNStats(model) if "bn" in priors else contextlib.nullcontext()

    def objective(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-class objective ``(C,)`` and relative output error ``(C,)`` (detached)."""
        out = model(x)
        rel_sq = _relative_sq_error(out, t)
        if loss == "mse":
            return _mse_matched(out, t), rel_sq.detach().sqrt()
        total = rel_sq
        if "tv" in priors:
            total = total + priors["tv"] * _tv(x)
        if "l2-avg" in priors:
            total = total + priors["l2-avg"] * ((x - averages) ** 2).flatten(1).mean(1)
        if "bn" in priors:
            total = total + priors["bn"] * bn.pop()
        return total, rel_sq.detach().sqrt()

    best_obj = torch.full((len(x),), math.inf, dtype=torch.float64, device=x.device)
    best_x = x.detach().clone()
    history: list[tuple[int, float]] = []
    step = 0
    with bn:
        bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
        for step in bar:
            for group in opt.param_groups:
                group["lr"] = _lr_at(preset, lr, step, steps)
            opt.zero_grad(set_to_none=True)
            per_class, rel = objective(x)
            obj = per_class.detach().double()
            better = obj < best_obj
            best_obj = torch.where(better, obj, best_obj)
            best_x[better] = x.detach()[better]
            per_class.sum().backward()
            opt.step()
            if box:
                with torch.no_grad():
                    x.clamp_(0, 1)
            if step % callback_every == 0 and _report(step, rel, history, bar, callback):
                break
            if not priors and float(rel.max()) <= stop_tol:
                break
        bar.close()
        # the last update is not yet scored: score it and keep it where it is better
        with torch.no_grad():
            obj = objective(x)[0].double()
            better = obj < best_obj
            best_x[better] = x.detach()[better]
    if loss == "mse":
        # the paper's "+training" keeps its last iterate, whatever happened on the way
        best_x = x.detach()
    return best_x, step + 1, history


def _jacobian(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs ``(C, K)`` and input Jacobians ``(C, K, n)`` of independent images ``x``.

    One forward pass and K backward passes (one per output row, summed over the batch: the
    images do not interact in eval mode). Nothing is kept between calls.
    """
    xg = x.detach().requires_grad_(True)
    out = model(xg)
    K = out.shape[1]
    rows = []
    for j in range(K):
        (g,) = torch.autograd.grad(out[:, j].sum(), xg, retain_graph=j < K - 1)
        rows.append(g.reshape(len(x), -1))
    return out.detach(), torch.stack(rows, 1)


def _newton(
    model: nn.Module,
    start: torch.Tensor,
    t: torch.Tensor,
    *,
    steps: int,
    callback: Callback | None,
    callback_every: int,
    progress: bool,
    stop_tol: float,
    max_halvings: int = 12,
) -> tuple[torch.Tensor, int, list]:
    """Minimum-norm Gauss-Newton root finding, batched over classes.

    Each step solves ``J dx = t - f(x)`` for the smallest ``dx``, ``dx = J^T (J J^T)^{-1} r``
    (``J`` the ``(K, n)`` input Jacobian; a 1e-10 relative Tikhonov term only guards the
    ``K x K`` solve), then halves the step until the residual norm drops (Armijo, at most
    ``max_halvings`` times; a class whose step cannot improve stays where it is). On smooth
    SELU networks this converges quadratically; on piecewise-linear (ReLU) networks steps
    cross region boundaries and the line search shortens them, so it may stall.
    """
    C = len(start)
    x = start.detach().clone()
    tn = torch.linalg.vector_norm(t, dim=1).clamp_min(1e-30)
    history: list[tuple[int, float]] = []
    step = 0
    eye = torch.eye(t.shape[1], dtype=x.dtype, device=x.device)
    with torch.no_grad():
        r = t - model(x)
    bar = tqdm(range(steps), desc="newton", disable=not progress, leave=False)
    for step in bar:
        rn = torch.linalg.vector_norm(r, dim=1)
        rel = rn / tn
        if step % callback_every == 0 and _report(step, rel, history, bar, callback):
            break
        done = rel <= stop_tol
        if done.all():
            break
        with torch.enable_grad():
            _, J = _jacobian(model, x)
        A = J @ J.transpose(1, 2)
        A = A + 1e-10 * A.diagonal(dim1=1, dim2=2).mean(1)[:, None, None] * eye
        dx = (J.transpose(1, 2) @ torch.linalg.solve(A, r.unsqueeze(2))).squeeze(2)
        dx = dx.view_as(x)
        del J, A
        alpha = torch.ones(C, dtype=x.dtype, device=x.device)
        accepted = done.clone()
        with torch.no_grad():
            for _ in range(max_halvings):
                trial = x + alpha.view(-1, *([1] * (x.dim() - 1))) * dx
                tr = t - model(trial)
                good = ~accepted & (torch.linalg.vector_norm(tr, dim=1) <= (1 - 1e-4 * alpha) * rn)
                x[good], r[good] = trial[good], tr[good]
                accepted |= good
                if accepted.all():
                    break
                alpha = torch.where(accepted, alpha, alpha * 0.5)
    bar.close()
    return x, step + 1, history


def _report(step: int, rel: torch.Tensor, history: list, bar, callback: Callback | None) -> bool:
    """Record the median relative error, show it on the progress bar, call ``callback``;
    True when the callback asks to stop."""
    med = _median(rel)
    history.append((step, med))
    bar.set_postfix(rel=f"{med:.2e}")
    return callback is not None and callback(step, med) is False


def _median(v: torch.Tensor) -> float:
    """The usual median (mean of the two middle values), unlike ``torch.median``."""
    return float(np.median(v.detach().double().cpu().numpy()))


# ----------------------------------------------------------------------------- entry point


def _data_xy(data: Dataset | tuple | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    if data is None:
        return None
    if isinstance(data, Dataset):
        return data.x_train, data.y_train
    x, y = data
    return x, y


def invert(
    model: nn.Module,
    targets: torch.Tensor | str,
    *,
    method: str,
    start: torch.Tensor | str | None = None,
    classes: Sequence[int] | int | None = None,
    network: str | None = None,
    data: Dataset | tuple[torch.Tensor, torch.Tensor] | None = None,
    stats: ScoreStats | None = None,
    steps: int | None = None,
    lr: float | None = None,
    priors: Mapping[str, float] | None = None,
    preset: str | None = None,
    percentiles: Sequence[float] = (25.0, 75.0),
    fraction: float = 0.25,
    margin: float = 1e-3,
    hidden: str = "auto",
    tol: float = 1e-4,
    device: str | torch.device = "cpu",
    seed: int = 0,
    callback: Callback | None = None,
    callback_every: int = 10,
    progress: bool = True,
) -> InversionResult:
    """Images that make ``model`` output ``targets``, by ``method`` (one of :data:`METHODS`).

    ``targets``: ``(C, K)`` tensor (one row per class in ``classes``, default all K), or a
    name from :data:`TARGETS` computed from ``stats`` / ``data`` (``percentiles`` for
    ``percentile``). ``start``: ``(C, *input_shape)`` images or a name from :data:`STARTS`
    (``data`` needed); methods named after a start use that start; ``exact`` uses it as the
    prior its null-space parts stay closest to; default ``avg-img``. ``data``: a
    :class:`~nnspaces.data.Dataset` (training split used) or ``(x, y)``.

    ``hidden`` (``exact``): the hidden-layer values come from the backward walk, closest to
    the prior image's activations (``prior``), or from Newton root finding on the first
    layer's pre-activation (``newton``); ``auto``: the walk for one-layer networks, Newton
    for deeper ones (see :func:`nnspaces.exact.exact_images`).

    ``priors`` (``descent`` / ``box``): ``{"tv": w, "l2-avg": w, "bn": w}``. ``preset``: a
    key of :data:`PRESETS` (default: the method's own; ``+training`` always uses
    ``original``), ``steps`` / ``lr`` override it. ``margin``: how far inside SELU's range
    ``exact`` keeps hidden values. A class succeeds when its relative output error is <=
    ``tol`` (``box``: and every pixel in [0, 1]). ``callback(step, median_rel_error)`` runs
    every ``callback_every`` steps of iterative methods; returning False stops them.

    Works in float64 for ``exact`` and for ``newton`` on SELU networks, else in float32,
    on ``device``; returns an :class:`InversionResult` (on the CPU).
    """
    t0 = time.perf_counter()
    _check_name("method", method, METHODS)
    device = torch.device(device)
    n_out = n_outputs_of(model)
    classes = check_classes(classes, n_out)
    if network is None:
        network = infer_network(model)
    elif network not in ("selu-fcnn",):
        check_network(network)
    priors = check_priors(priors)
    if priors and method not in ("descent", "box"):
        raise ValueError(f"priors apply to methods 'descent' and 'box', not {method!r}")
    if preset is not None:
        _check_name("preset", preset, tuple(PRESETS))
    _check_fraction(fraction)
    _check_percentiles(percentiles)
    for label, value in (("steps", steps), ("callback_every", callback_every)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"{label}={value!r} must be an integer >= 1")
    if lr is not None and not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr={lr!r} must be a finite number > 0")
    if not margin > 0:
        raise ValueError(f"margin={margin!r} must be > 0")
    _check_name("hidden", hidden, HIDDEN)

    base, _, training = method.partition("+")
    named_start = base if base in STARTS else None
    if named_start is not None and start is not None:
        raise ValueError(f"method {method!r} names its start image; do not pass start={start!r}")
    if isinstance(start, str):
        _check_name("start", start, STARTS)
    if isinstance(targets, str):
        _check_name("target", targets, TARGETS)
    if "bn" in priors:
        _BNStats(model)  # raises for a network without BatchNorm
    if method == "exact":
        inverter = selu_inverter(model)  # raises for other networks

    xy = _data_xy(data)
    start_name = named_start or (start if isinstance(start, str) else None)
    if start is None and start_name is None:
        start_name = "avg-img"
    needs_stats = isinstance(targets, str) or start_name in ("min-img", "avg-min-img")
    if (needs_stats or start_name or "l2-avg" in priors) and xy is None:
        raise ValueError(
            f"method {method!r} with start {start_name!r} / named targets / 'l2-avg' needs "
            "data=Dataset or (x, y)"
        )
    if needs_stats and stats is None:
        stats = score_stats(model, *xy, device=device)
    if isinstance(targets, str):
        t = make_targets(stats, targets, classes, percentiles=percentiles)
    else:
        t = check_targets(targets, len(classes), n_out)
    if start_name is not None:
        x0 = start_images(
            start_name, xy[0], xy[1], t, classes=classes, stats=stats, fraction=fraction, seed=seed
        )
    else:
        x0 = torch.as_tensor(start).detach()
        if x0.shape[0] != len(classes):
            raise ValueError(f"{x0.shape[0]} start images for {len(classes)} classes")
    x0 = x0.cpu()
    averages = class_averages(*xy, classes) if "l2-avg" in priors else None

    settings: dict = {
        "start": start_name or "given",
        "priors": priors,
        "device": str(device),
        "seed": seed,
    }
    common = dict(network=network, start=x0, tol=tol, device=device)
    cb_every = callback_every

    if method == "exact":
        img, ok, reasons, path = exact_images(
            inverter, t, x0, margin=margin, hidden=hidden, tol=tol
        )
        settings |= {"margin": margin, "dtype": "float64", "hidden": path}
        return evaluate_images(
            model,
            img,
            t,
            classes,
            method=method,
            ok=ok,
            reasons=reasons,
            settings=settings,
            seconds=time.perf_counter() - t0,
            **common,
        )
    if method in STARTS:
        return evaluate_images(
            model,
            x0,
            t,
            classes,
            method=method,
            settings=settings,
            seconds=time.perf_counter() - t0,
            **common,
        )

    selu_net = is_selu_stack(model)
    if training:
        p = PRESETS["original"]
    else:
        p = PRESETS[preset or method]
    n_steps = steps or p.steps
    step_lr = lr or p.lr
    dtype = torch.float64 if (method == "newton" and selu_net) else torch.float32
    work = _model_as(model, dtype, device)
    xs = x0.to(device, dtype)
    tt = t.to(device, dtype)
    settings |= {
        "steps": n_steps,
        "lr": step_lr,
        "optimizer": p.optimizer,
        "lr_final": p.lr_final,
        "dtype": str(dtype).removeprefix("torch."),
    }
    stop_tol = 1e-12 if dtype == torch.float64 else 1e-7
    with frozen(work):
        if method == "newton":
            x, done, hist = _newton(
                work,
                xs,
                tt,
                steps=n_steps,
                callback=callback,
                callback_every=cb_every,
                progress=progress,
                stop_tol=stop_tol,
            )
        else:
            avg = averages.to(device, dtype) if averages is not None else None
            x, done, hist = _first_order(
                work,
                xs,
                tt,
                preset=p,
                steps=n_steps,
                lr=step_lr,
                loss="mse" if training else "rel",
                priors=priors,
                averages=avg,
                box=method == "box",
                callback=callback,
                callback_every=cb_every,
                progress=progress,
                desc=method,
                stop_tol=stop_tol,
            )
    return evaluate_images(
        model,
        x.cpu(),
        t,
        classes,
        method=method,
        require_box=method == "box",
        steps=done,
        settings=settings,
        history=hist,
        seconds=time.perf_counter() - t0,
        **common,
    )


def is_selu_stack(model: nn.Module) -> bool:
    """Whether ``model`` is a Linear / SELU stack that ``exact`` can invert."""
    try:
        selu_inverter(model)
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------- more tools


def null_space_samples(
    model: nn.Module,
    target: torch.Tensor,
    klass: int,
    k: int = 8,
    *,
    prior: torch.Tensor,
    scale: float = 0.5,
    margin: float = 1e-3,
    box: bool = False,
    network: str | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> InversionResult:
    """``k`` different inputs of a SELU FCNN that all give the same output ``target`` ``(K,)``.

    The exact inverse (``method="exact"``, ``prior`` as the prior) fixes the first layer's
    pre-activation ``z1``; its pre-image set is ``W1^+ (z1 - b1) + N w``. Each sample is the
    point of that set closest to ``prior`` plus a random null-space vector (std ``scale``
    times the prior's RMS per null-space coordinate; seeded), with ``box`` moved inside
    [0, 1] where possible. ``prior``: one image ``(*input_shape)`` or ``(1, *input_shape)``.
    Returns a result with ``k`` rows, all of class ``klass``.
    """
    t0 = time.perf_counter()
    inverter = selu_inverter(model)
    (klass,) = check_classes(klass, inverter.n_outputs)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k={k!r} must be an integer >= 1")
    if not scale >= 0:
        raise ValueError(f"scale={scale!r} must be >= 0")
    t = check_targets(target, 1, inverter.n_outputs)
    prior = torch.as_tensor(prior).detach().cpu()
    if prior.numel() != inverter.n_inputs:
        raise ValueError(f"prior has {prior.numel()} values; the network takes {inverter.n_inputs}")
    shape = prior.shape[1:] if prior.shape[0] == 1 and prior.dim() > 1 else prior.shape
    x1, ok1, reasons1, _ = exact_images(
        inverter, t, prior.reshape(1, -1), margin=margin, hidden="auto"
    )
    first = inverter.layers[0]
    D = np.repeat(x1.numpy() @ first.W.T, k, axis=0)  # W1 x = z1 - b1
    P = np.repeat(prior.double().reshape(1, -1).numpy(), k, axis=0)
    rms = float(np.sqrt(np.mean(P[0] ** 2))) + 1e-12
    coeffs = np.random.default_rng(seed).standard_normal((k, first.null.shape[1]))
    Q = P + scale * rms * coeffs @ first.null.T
    ok, reasons = np.repeat(ok1, k), reasons1 * k
    lo, hi = (0.0, 1.0) if box else (-math.inf, math.inf)
    X = inverter.solve_layer(0, D, Q, lo, hi, ok, reasons)
    return evaluate_images(
        model,
        torch.from_numpy(X).reshape(k, *shape),
        t.repeat(k, 1),
        [klass] * k,
        network=network or infer_network(model),
        method="exact-null-samples",
        start=torch.from_numpy(P).reshape(k, *shape),
        ok=ok,
        reasons=reasons,
        require_box=box,
        tol=1e-6,
        seconds=time.perf_counter() - t0,
        settings={"scale": scale, "margin": margin, "box": box, "seed": seed},
        device=device,
    )


def take_rows(
    results: Sequence[InversionResult],
    pick: Sequence[int],
    *,
    method: str,
    success: np.ndarray | None = None,
    reason: Sequence[str] | None = None,
) -> InversionResult:
    """One result whose row ``i`` is row ``i`` of ``results[pick[i]]`` (same classes and
    targets in all of them). ``success`` / ``reason`` default to the picked rows' own."""
    if not results:
        raise ValueError("take_rows needs at least one result")
    first = results[0]
    for r in results[1:]:
        if r.classes != first.classes or not torch.allclose(r.target, first.target):
            raise ValueError(
                f"results cover different classes or targets ({r.method} vs {first.method})"
            )
    if len(pick) != len(first) or any(not 0 <= j < len(results) for j in pick):
        raise ValueError(f"pick {list(pick)!r} needs {len(first)} indices in 0..{len(results) - 1}")
    rows = list(enumerate(pick))
    dtype = first.image.dtype
    for r in results[1:]:
        dtype = torch.promote_types(dtype, r.image.dtype)

    def take(attr: str):
        picked = [getattr(results[j], attr)[i] for i, j in rows]
        if isinstance(picked[0], torch.Tensor):
            return torch.stack([p.to(dtype) if p.is_floating_point() else p for p in picked])
        return np.array(picked)

    return InversionResult(
        network=first.network,
        method=method,
        classes=list(first.classes),
        image=take("image").to(dtype),
        start=take("start").to(dtype),
        output=torch.stack([results[j].output[i] for i, j in rows]),
        target=first.target.clone(),
        rel_error=take("rel_error"),
        prob=take("prob"),
        predicted=take("predicted"),
        start_distance=take("start_distance"),
        outside=take("outside"),
        success=take("success").astype(bool) if success is None else np.asarray(success),
        reason=[results[j].reason[i] for i, j in rows] if reason is None else list(reason),
        seconds=float(sum(results[j].seconds for j in sorted(set(pick)))),
        source=[results[j].source[i] for i, j in rows],
        settings={"from": [results[j].method for j in sorted(set(pick))]},
    )


def combine_best(results: Sequence[InversionResult], *, box: bool = False) -> InversionResult:
    """Per class, the image with the lowest relative error among ``results`` ("best"); with
    ``box``, only images whose pixels all lie in [0, 1] count ("best-box").

    A class succeeds when its picked image did (for "best-box", also inside [0, 1]); a class
    for which no image lies in [0, 1] keeps the lowest-error image, marked failed.
    """
    if not results:
        raise ValueError("combine_best needs at least one result")
    C = len(results[0])
    pick, ok, reason = [], np.zeros(C, dtype=bool), [""] * C
    for i in range(C):
        errs = np.array([r.rel_error[i] for r in results], dtype=np.float64)
        errs = np.where(np.isnan(errs), np.inf, errs)
        allowed = np.array([(not box) or r.outside[i] == 0 for r in results])
        j = int(np.argmin(np.where(allowed, errs, np.inf) if allowed.any() else errs))
        pick.append(j)
        if box and not allowed.any():
            reason[i] = "no image inside [0, 1] among the results"
            continue
        ok[i] = bool(results[j].success[i])
        reason[i] = results[j].reason[i]
    return take_rows(results, pick, method="best-box" if box else "best", success=ok, reason=reason)


@torch.no_grad()
def cross_check(
    images: torch.Tensor | InversionResult,
    models: Mapping[str, nn.Module],
    classes: Sequence[int] | None = None,
    *,
    device: str | torch.device = "cpu",
) -> dict[str, dict]:
    """What other networks see in the images: ``{name: {"predicted": [...], "agree": [...],
    "n_agree": int, "prob": [...]}}``, ``agree[i]`` meaning network ``name`` classifies image
    ``i`` as ``classes[i]`` (taken from the result when ``images`` is one). Images ``(C,
    *shape)`` are classified as they are (not clipped); NaN images never agree."""
    if isinstance(images, InversionResult):
        classes = images.classes if classes is None else classes
        images = images.image
    if classes is None:
        raise ValueError("cross_check needs the classes the images are meant to show")
    classes = list(classes)
    if len(classes) != len(images):
        raise ValueError(f"{len(images)} images for {len(classes)} classes")
    out = {}
    x = images.detach().float().cpu()
    finite = torch.isfinite(x.reshape(len(x), -1)).all(1)
    for name, m in models.items():
        logits = predict(m, torch.nan_to_num(x), device=device)
        pred = logits.argmax(1)
        agree = (pred == torch.tensor(classes)) & finite
        prob = torch.softmax(logits.double(), 1)[torch.arange(len(classes)), torch.tensor(classes)]
        out[name] = {
            "predicted": [int(p) for p in pred],
            "agree": [bool(a) for a in agree],
            "n_agree": int(agree.sum()),
            "prob": [float(p) for p in prob],
        }
    return out


def recognised_by_all(check: Mapping[str, dict]) -> np.ndarray:
    """Per image, whether every network of a :func:`cross_check` saw the intended digit."""
    return np.logical_and.reduce([np.asarray(v["agree"], dtype=bool) for v in check.values()])


def prior_frontier(
    model: nn.Module,
    targets: torch.Tensor | str,
    others: Mapping[str, nn.Module],
    *,
    prior: str = "l2-avg",
    weights: Sequence[float] = (0.0, 1e-3, 1e-2, 1e-1, 1.0),
    method: str = "box",
    base_priors: Mapping[str, float] | None = None,
    progress: bool = True,
    **invert_kwargs,
) -> list[dict]:
    """Sweep one prior's weight: the trade-off between reaching the target and looking like a
    digit to other networks. For each weight, :func:`invert` with ``priors = base_priors |
    {prior: weight}``; returns one dict per weight with ``weight``, ``median_rel_error``,
    ``max_rel_error``, ``n_agree`` (images every network in ``others`` classifies as the
    target digit), ``agree_by_network`` ({name: count}), ``outside`` (mean fraction of pixels
    outside [0, 1]) and the ``result`` itself."""
    _check_name("prior", prior, PRIORS)
    rows = []
    for w in tqdm(list(weights), desc=f"sweep {prior}", disable=not progress, leave=False):
        pri = dict(base_priors or {}) | {prior: float(w)}
        res = invert(model, targets, method=method, priors=pri, progress=False, **invert_kwargs)
        check = cross_check(res, others)
        every = recognised_by_all(check)
        rows.append(
            {
                "weight": float(w),
                "median_rel_error": res.median_rel_error,
                "max_rel_error": float(np.nanmax(res.rel_error)),
                "n_agree": int(every.sum()),
                "agree_by_network": {k: v["n_agree"] for k, v in check.items()},
                "outside": float(np.nanmean(res.outside)),
                "result": res,
            }
        )
    return rows
