"""Every inversion method on every network, measured side by side: the study behind Figure 3.

:mod:`nnspaces.inversion` holds the methods; this module runs them all on one network
(:func:`run_methods`), picks the paper's per-digit choices (:func:`pick_per_class`), compares
them with the original "+training" and across networks (:func:`comparison_table`), searches
for natural pre-images along a prior's frontier (:func:`natural_preimages`), shows what each
prior does (:func:`prior_effects`) and saves the images (:func:`save_inversions`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data import Dataset
from .inversion import (
    METHODS,
    InversionResult,
    ScoreStats,
    combine_best,
    cross_check,
    invert,
    is_selu_stack,
    prior_frontier,
    recognised_by_all,
    score_stats,
    take_rows,
)

#: The method the paper's Figure 3 caption names for each digit of each network. The caption
#: lists ResNet18's digit 4 twice (avg-img and avg-min-img); the later one is used.
PAPER_FIGURE_METHODS: dict[str, dict[int, str]] = {
    "fcnn1": {c: "min-img+training" if c in (2, 3, 7) else "avg-img+training" for c in range(10)},
    "fcnn5": {
        c: "avg-img+training" if c in (1, 2, 6, 7) else "min-img+training" for c in range(10)
    },
    "resnet18": {
        c: "min-img" if c in (0, 2, 3, 8) else "avg-min-img" if c == 4 else "avg-img"
        for c in range(10)
    },
}
#: The paper's "+training" from the class average: what every method is compared with.
BASELINE = "avg-img+training"
#: Solver steps in quick runs (smoke tests); full runs use each method's preset.
QUICK_STEPS = 60


def run_methods(
    model: nn.Module,
    targets: torch.Tensor,
    *,
    data: Dataset,
    stats: ScoreStats,
    network: str,
    quick: bool = False,
    device: str | torch.device = "cpu",
    seed: int = 0,
    progress: bool = True,
) -> dict[str, InversionResult]:
    """Every applicable method of :data:`~nnspaces.inversion.METHODS` on ``model`` for the
    targets ``(10, 10)``, plus ``best`` (per class the lowest error) and ``best-box`` (the
    lowest error among images inside [0, 1]). ``exact`` runs only on SELU FCNNs."""
    results = {}
    for method in METHODS:
        if method == "exact" and not is_selu_stack(model):
            continue
        iterative = method in ("newton", "descent", "box")
        results[method] = invert(
            model,
            targets,
            method=method,
            data=data,
            stats=stats,
            network=network,
            steps=QUICK_STEPS if quick and iterative else None,
            device=device,
            seed=seed,
            progress=progress,
        )
    found = list(results.values())
    results["best"] = combine_best(found)
    results["best-box"] = combine_best(found, box=True)
    return results


def pick_per_class(
    results: Mapping[str, InversionResult], methods: Mapping[int, str]
) -> InversionResult:
    """One result whose row for class c comes from ``results[methods[c]]`` (e.g. the paper's
    caption choices, :data:`PAPER_FIGURE_METHODS`)."""
    names = list(results)
    unknown = sorted({m for m in methods.values() if m not in results})
    if unknown:
        raise ValueError(f"methods {unknown} not among the results; available: {names}")
    first = next(iter(results.values()))
    order = [results[methods[c]] for c in first.classes]
    return take_rows(order, list(range(len(order))), method="paper")


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
                    "mean_prob": float(np.nanmean(r.prob)),
                    "outside": float(np.nanmean(r.outside)),
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
            f"{r['n_success']:>4}/10 {r['mean_prob']:5.2f} {r['outside']:7.1%} "
            f"{r['seconds']:7.2f} {r['recognised_by_others']:>3}/10 "
            f"{r['vs_original_training']:12.2e}"
        )
    return Comparison(rows, cross, "\n".join(lines))


#: Where the natural pre-image search looks, per network: the target variant and the prior
#: whose weight is swept (box-constrained, ``PRESETS["natural"]``: gentle steps from the class
#: average). Chosen by measurement on the embedded data: fcnn1's and fcnn5's percentile targets
#: ask output c for only its 75th percentile over all digits, and images that reach them are
#: not recognised; resnet18 reaches its percentile targets with images that still look like
#: digits, where its min/max targets need extreme ones.
NATURAL_SEARCH: dict[str, dict] = {
    "fcnn1": {"targets": "min-max", "prior": "l2-avg"},
    "fcnn5": {"targets": "min-max", "prior": "l2-avg"},
    "resnet18": {"targets": "percentile", "prior": "l2-avg"},
}
NATURAL_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0, 3.0, 10.0)


@dataclass
class NaturalPreimages:
    """The frontier of one prior for one network, and the point chosen on it."""

    network: str
    targets: str
    prior: str
    frontier: list[dict]
    chosen_weight: float
    result: InversionResult = field(repr=False)
    n_recognised: int = 0

    @property
    def summary(self) -> str:
        return (
            f"{self.network} ({self.targets} targets): {self.prior} weight "
            f"{self.chosen_weight:g}: median error {self.result.median_rel_error:.2e}, "
            f"{self.n_recognised}/10 recognised by both other networks, pixels outside [0, 1]: "
            f"{float(np.mean(self.result.outside)):.1%}"
        )

    def to_dict(self) -> dict:
        return {
            "targets": self.targets,
            "prior": self.prior,
            "chosen_weight": self.chosen_weight,
            "n_recognised": self.n_recognised,
            "median_rel_error": self.result.median_rel_error,
            "frontier": self.frontier,
            "result": self.result.to_dict(),
        }


def natural_preimages(
    models: Mapping[str, nn.Module],
    network: str,
    *,
    data: Dataset,
    stats: ScoreStats | None = None,
    quick: bool = False,
    device: str | torch.device = "cpu",
    seed: int = 0,
    recognised: int = 9,
) -> NaturalPreimages:
    """Sweep :data:`NATURAL_SEARCH`'s prior for ``network`` over :data:`NATURAL_WEIGHTS`
    (box-constrained, gentle steps from the class average) and choose the lowest-error weight
    at which both other networks recognise at least ``recognised`` of the ten digits; where no
    weight gets there, the weight with the most recognised digits (the frontier then shows
    that the network cannot have both). ``stats``: ``network``'s score statistics on the
    training images (computed once here when not given)."""
    search = NATURAL_SEARCH[network]
    if stats is None:
        stats = score_stats(models[network], data.x_train, data.y_train, device=device)
    weights = NATURAL_WEIGHTS[::2] if quick else NATURAL_WEIGHTS
    others = {n: m for n, m in models.items() if n != network}
    rows = prior_frontier(
        models[network],
        search["targets"],
        others,
        prior=search["prior"],
        weights=weights,
        method="box",
        preset="natural",
        data=data,
        stats=stats,
        network=network,
        steps=QUICK_STEPS if quick else None,
        device=device,
        seed=seed,
        progress=False,
    )
    good = [r for r in rows if r["n_agree"] >= recognised]
    if good:
        best = min(good, key=lambda r: r["median_rel_error"])
    else:
        best = max(rows, key=lambda r: (r["n_agree"], -r["median_rel_error"]))
    table = [{k: v for k, v in r.items() if k != "result"} for r in rows]
    return NaturalPreimages(
        network,
        search["targets"],
        search["prior"],
        table,
        best["weight"],
        best["result"],
        best["n_agree"],
    )


def prior_effects(
    model: nn.Module,
    targets: str,
    priors: Mapping[str, float],
    *,
    data: Dataset,
    network: str,
    stats: ScoreStats | None = None,
    quick: bool = False,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> dict[str, InversionResult]:
    """What each prior does alone: box-constrained ``PRESETS["natural"]`` runs without a prior
    (key ``"none"``) and with each ``{prior: weight}`` on its own (key ``"prior weight"``).
    ``stats``: the model's score statistics (computed once here when not given)."""
    if stats is None:
        stats = score_stats(model, data.x_train, data.y_train, device=device)
    runs = {"none": None} | {f"{name} {w:g}": {name: w} for name, w in priors.items()}
    return {
        label: invert(
            model,
            targets,
            method="box",
            preset="natural",
            priors=pri,
            data=data,
            stats=stats,
            network=network,
            steps=QUICK_STEPS if quick else None,
            device=device,
            seed=seed,
            progress=False,
        )
        for label, pri in runs.items()
    }


def save_inversions(results: Mapping[str, Mapping[str, InversionResult]], path: str | Path) -> Path:
    """Write ``"{network}/{method}/images"`` ``(10, 1, 28, 28)`` and ``".../targets"``
    ``(10, 10)`` arrays for every network and method into one ``.npz`` file, atomically."""
    arrays = {}
    for net, by_method in results.items():
        for method, r in by_method.items():
            arrays[f"{net}/{method}/images"] = r.image.detach().cpu().numpy()
            arrays[f"{net}/{method}/targets"] = r.target.detach().cpu().numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
