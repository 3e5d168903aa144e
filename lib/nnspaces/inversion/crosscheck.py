"""Every inversion method on every network, measured side by side: the study behind Figure 3.

:mod:`nnspaces.inversion` holds the methods; this module runs every one that applies on a
network (:func:`run_methods`), picks the paper's per-digit choices (:func:`pick_per_class`),
asks other networks what digit they see (:func:`cross_check`), compares every method with the
original "+training" and across networks (:func:`comparison_table`) and saves every image set
(:func:`nnspaces.inversion.imagesets.save_inversions`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..data import Dataset
from ..models import refuse_judge
from ..training import predict
from .api import (
    COMPARED,
    InversionResult,
    ScoreStats,
    applicable,
    combine_best,
    invert,
    quick_steps,
    score_stats,
    take_rows,
)
from .results import finite_mean

#: The paper's "+training" from the class average: what every method is compared with.
BASELINE = "avg-img+training"


def run_methods(
    model: nn.Module,
    targets: torch.Tensor | str,
    *,
    data: Dataset,
    stats: ScoreStats | None = None,
    network: str | None = None,
    quick: bool = False,
    device: str | torch.device = "cpu",
    seed: int = 0,
    progress: bool | None = None,
    methods: Sequence[str] | None = None,
) -> dict[str, InversionResult]:
    """Every compared method (:data:`~nnspaces.inversion.COMPARED`) that applies to
    ``model`` for the targets ``(C, K)``, plus ``best`` (per class the lowest error) and
    ``best-box`` (the lowest error among images inside [0, 1]; left out when no method gave
    one image inside [0, 1]). ``quick`` caps the solvers
    of this library's iterative methods (:func:`~nnspaces.inversion.quick_steps`).
    ``stats``: the model's score statistics on ``data``'s training images
    (computed once here when not given). ``methods``: only those of them (in their order;
    ``best`` and ``best-box`` then combine only these; none of them applying: ``{}``), e.g.
    ``("exact", "newton")``."""
    unknown = sorted(set(methods or ()) - set(COMPARED))
    if unknown:
        raise ValueError(f"methods {unknown} are not compared; allowed: {', '.join(COMPARED)}")
    if stats is None:
        stats = score_stats(model, data.x_train, data.y_train, device=device)
    results = {}
    for method in applicable(model):
        if methods is not None and method not in methods:
            continue
        results[method] = invert(
            model,
            targets,
            method=method,
            data=data,
            stats=stats,
            network=network,
            steps=quick_steps(method) if quick else None,
            device=device,
            seed=seed,
            progress=progress,
        )
    found = list(results.values())
    if not found:
        return results
    results["best"] = combine_best(found)
    if any((np.asarray(r.outside) == 0).any() for r in found):
        # without any image inside [0, 1] a "best-box" would only repeat "best" under a name
        # that promises the box
        results["best-box"] = combine_best(found, box=True)
    return results


def pick_per_class(
    results: Mapping[str, InversionResult], methods: Mapping[int, str]
) -> InversionResult:
    """One result whose row for class c comes from ``results[methods[c]]`` (e.g. the paper's
    caption choices, :data:`nnspaces.paper.FIGURE3_METHODS`)."""
    names = list(results)
    unknown = sorted({m for m in methods.values() if m not in results})
    if unknown:
        raise ValueError(f"methods {unknown} not among the results; available: {names}")
    first = next(iter(results.values()))
    order = [results[methods[c]] for c in first.classes]
    return take_rows(order, list(range(len(order))), method="paper")


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
        refuse_judge(name, "cross_check")
        refuse_judge(m, "cross_check")
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


@dataclass
class Comparison:
    """Rows of the method comparison, the cross-model checks, and the table as text."""

    rows: list[dict]
    cross_model: dict[str, dict[str, dict]]
    text: str = field(repr=False)


def comparison_table(
    results: Mapping[str, Mapping[str, InversionResult]],
    models: Mapping[str, nn.Module],
    *,
    device: str | torch.device = "cpu",
) -> Comparison:
    """Per network and method: median relative error, classes reaching the target (success),
    mean target probability, mean fraction of pixels outside [0, 1], seconds, classes that
    every *other* network classifies as the target digit, and the median error relative to
    the paper's "+training" from the class average (:data:`BASELINE`)."""
    rows, cross = [], {}
    for net, by_method in results.items():
        others = {n: m for n, m in models.items() if n != net}
        base = by_method[BASELINE].median_rel_error
        cross[net] = {}
        for method, r in by_method.items():
            check = cross_check(r, others, device=device)
            every = recognised_by_all(check)
            cross[net][method] = {n: v["n_agree"] for n, v in check.items()} | {
                "all_others": int(every.sum())
            }
            rows.append(
                {
                    "network": net,
                    "method": method,
                    "median_rel_error": r.median_rel_error,
                    "n_success": r.n_success,
                    "n_classes": len(r),
                    "mean_prob": finite_mean(r.prob),
                    "outside": finite_mean(r.outside),
                    "seconds": r.seconds,
                    "recognised_by_others": int(every.sum()),
                    "vs_original_training": r.median_rel_error / base if base > 0 else np.nan,
                }
            )
    head = (
        f"{'network':9} {'method':21} {'median err':>10} {'reached':>7} {'prob':>5} "
        f"{'outside':>7} {'seconds':>7} {'others':>6} {'vs +training':>12}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['network']:9} {r['method']:21} {r['median_rel_error']:10.2e} "
            f"{r['n_success']:>4}/{r['n_classes']:<2} {_or_na(r['mean_prob'], '5.2f')} "
            f"{_or_na(r['outside'], '7.1%')} "
            f"{r['seconds']:7.2f} {r['recognised_by_others']:>3}/{r['n_classes']:<2} "
            f"{r['vs_original_training']:12.2e}"
        )
    return Comparison(rows, cross, "\n".join(lines))


def _or_na(value: float, spec: str) -> str:
    """``value`` formatted by ``spec``, or "n/a" as wide (no image, nothing to average)."""
    width = len(format(0.0, spec))
    return format(value, spec) if math.isfinite(value) else f"{'n/a':>{width}}"
