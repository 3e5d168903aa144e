"""Results of inverse maps: images, how close their outputs get to the targets, and picks.

Every method returns an :class:`InversionResult` (made by :func:`evaluate_images`, which
measures any images against their targets); :func:`combine_best` picks per class the best of
several results ("best", or "best-box" among images inside [0, 1]); :func:`take_rows` builds
one result from rows of others.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..models import frozen, model_as, network_name


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

    def rows(self, index: slice) -> InversionResult:
        """The rows ``index`` of this result as a result of their own (the per-class fields
        sliced; the others, ``history`` of the whole batch among them, shared)."""
        per_row = ("image", "start", "output", "target", "rel_error", "prob", "predicted")
        per_row += ("start_distance", "outside", "success")
        return dataclasses.replace(
            self,
            classes=self.classes[index],
            reason=self.reason[index],
            source=self.source[index],
            **{name: getattr(self, name)[index] for name in per_row},
        )

    @property
    def median_rel_error(self) -> float:
        """Median relative error over classes (failed exact rows count as infinite)."""
        return float(np.median(np.where(np.isnan(self.rel_error), np.inf, self.rel_error)))

    @property
    def n_success(self) -> int:
        return int(self.success.sum())

    @property
    def outside_fraction(self) -> float:
        """The mean share of pixels outside [0, 1] over the classes that have an image."""
        return finite_mean(self.outside)

    def captions(self) -> list[str]:
        """Under each image: relative output error / target-class probability."""
        return [f"{e:.1e} / {p:.2f}" for e, p in zip(self.rel_error, self.prob, strict=True)]

    def __repr__(self) -> str:
        rel = np.where(np.isnan(self.rel_error), np.inf, self.rel_error)
        # failed rows (no image: NaN) count as infinite; with no image at all, say so
        errors = (
            f"rel_error median {np.median(rel):.3g} max {rel.max():.3g}"
            if np.isfinite(rel).any()
            else "rel_error n/a (no image)"
        )
        outside = finite_mean(self.outside)
        return (
            f"InversionResult({self.network}, {self.method}, {len(self)} classes, {errors}, "
            f"success {self.n_success}/{len(self)}, "
            f"outside [0,1] {'n/a' if math.isnan(outside) else f'{outside:.1%}'}, "
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


def finite_mean(values) -> float:
    """The mean of the finite entries of ``values``; NaN when there are none (where
    ``np.nanmean`` would also warn "Mean of empty slice", e.g. for rows without an image)."""
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else math.nan


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
    method: str,
    network: str | None = None,
    start: torch.Tensor | None = None,
    seconds: float = 0.0,
    tol: float = 1e-4,
    level: float | None = None,
    require_box: bool = False,
    ok: np.ndarray | None = None,
    reasons: Sequence[str] | None = None,
    steps: int = 0,
    settings: dict | None = None,
    history: list | None = None,
    device: str | torch.device = "cpu",
) -> InversionResult:
    """Measure images ``(C, *shape)`` against targets ``(C, K)`` (float64 forward pass).

    A class succeeds when its relative error is <= ``tol`` (with a probability ``level``:
    when its softmax probability is >= ``level`` instead), with ``require_box`` all its
    pixels lie in [0, 1], and it did not already fail (``ok`` False with a reason).
    ``network`` labels the result (default :func:`nnspaces.models.network_name`).
    """
    device = torch.device(device)
    classes = list(classes)
    C = len(classes)
    img = images.detach().cpu()
    start = img.clone() if start is None else start.detach().cpu()
    target = targets.detach().cpu().double()
    work = model_as(model, torch.float64, device)
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
        if level is not None and not prob[i] >= level:
            success[i] = False
            reason[i] = f"p(c) {prob[i]:.3g} < level {level:g}"
        elif level is None and not rel[i] <= tol:
            success[i] = False
            reason[i] = f"relative error {rel[i]:.3g} > tol {tol:g}"
        elif require_box and outside[i] > 0:
            success[i] = False
            reason[i] = f"{outside[i]:.1%} of pixels outside [0, 1]"
    return InversionResult(
        network=network or network_name(model),
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
