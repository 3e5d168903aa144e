"""Every inversion method on every network, measured side by side: the study behind Figure 3.

:mod:`nnspaces.inversion` holds the methods; this module runs every one that applies on a
network (:func:`run_methods`), picks the paper's per-digit choices (:func:`pick_per_class`),
asks other networks what digit they see (:func:`cross_check`), compares every method with the
original "+training" and across networks (:func:`comparison_table`), searches for natural
pre-images along a prior's frontier (:func:`prior_frontier`, :func:`natural_preimages`),
shows what each prior does (:func:`prior_effects`) and saves every image set
(:func:`save_inversions`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data import Dataset
from .files import atomic_write
from .inversion import (
    COMPARED,
    PRIORS,
    QUICK_STEPS,
    InversionResult,
    ScoreStats,
    applicable,
    combine_best,
    invert,
    quick_steps,
    score_stats,
    take_rows,
)
from .inversion.priors import check_priors
from .inversion.results import finite_mean
from .inversion.targets import check_classes, check_name, check_targets
from .models import n_outputs_of
from .training import predict

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
    ``best-box`` (the lowest error among images inside [0, 1]). ``quick`` caps the solvers
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


def invert_runs(
    model: nn.Module,
    targets: torch.Tensor | str,
    runs: Mapping[str, Mapping[str, float] | None],
    *,
    classes: Sequence[int] | int | None = None,
    start: torch.Tensor | str | None = None,
    **invert_kwargs,
) -> dict[str, InversionResult]:
    """:func:`invert` once for each of ``runs`` (``{label: priors}``) in at most three
    batches: every class once per run, each row with its run's prior weights; the runs
    without any prior apart (they stop at the tolerance and are polished), and those with
    the ``bn`` prior apart (its statistics would be computed for every row of a batch: on
    ResNet18 a batch of three runs took 19 s with one of them ``bn``, 13 s without). In eval
    mode the images do not interact and Adam moves every pixel on its own, so a run's rows
    are what its own call gives, up to the order of floating-point sums, in a fraction of
    the time (on ResNet18 and one core, nine runs of ten images in 0.6 of the time of one
    after the other). A run's ``seconds`` is its share of its batch's, its ``steps`` and
    ``history`` the batch's."""
    n_out = n_outputs_of(model)
    classes = check_classes(classes, n_out)
    C = len(classes)
    groups: dict[tuple[bool, bool], list] = {}
    for label, pri in runs.items():
        pri = check_priors(pri, model)
        groups.setdefault((bool(pri), "bn" in pri), []).append((label, pri))
    out = {}
    for members in groups.values():
        W = len(members)
        names = sorted({name for _, pri in members for name in pri})
        weights = {n: [pri.get(n, 0.0) for _, pri in members for _ in range(C)] for n in names}
        t = targets if isinstance(targets, str) else check_targets(targets, C, n_out).repeat(W, 1)
        x0 = start.repeat(W, *[1] * (start.dim() - 1)) if torch.is_tensor(start) else start
        batch = invert(model, t, classes=classes * W, start=x0, priors=weights, **invert_kwargs)
        for i, (label, pri) in enumerate(members):
            r = batch.rows(slice(i * C, (i + 1) * C))
            r.seconds = batch.seconds / W
            r.settings = batch.settings | {
                "priors": pri,
                "batch": {"runs": W, "seconds": batch.seconds},
            }
            out[label] = r
    return {label: out[label] for label in runs}


def prior_frontier(
    model: nn.Module,
    targets: torch.Tensor | str,
    others: Mapping[str, nn.Module],
    *,
    prior: str = "l2-avg",
    weights: Sequence[float] = (0.0, 1e-3, 1e-2, 1e-1, 1.0),
    method: str = "box",
    base_priors: Mapping[str, float] | None = None,
    progress: bool | None = None,
    **invert_kwargs,
) -> list[dict]:
    """Sweep one prior's weight: the trade-off between reaching the target and looking like a
    digit to other networks. For each weight, :func:`invert` with ``priors = base_priors |
    {prior: weight}`` (all weights in one batch: :func:`invert_runs`); returns one dict per
    weight with ``weight``, ``median_rel_error``, ``max_rel_error``, ``n_agree`` (images every
    network in ``others`` classifies as the target digit), ``agree_by_network`` ({name:
    count}), ``outside`` (mean fraction of pixels outside [0, 1]) and the ``result`` itself."""
    check_name("prior", prior, tuple(PRIORS))
    rows = []
    weights = [float(w) for w in weights]
    runs = {i: dict(base_priors or {}) | {prior: w} for i, w in enumerate(weights)}
    results = invert_runs(model, targets, runs, method=method, progress=progress, **invert_kwargs)
    for w, res in zip(weights, results.values(), strict=True):
        check = cross_check(res, others)
        every = recognised_by_all(check)
        rows.append(
            {
                "weight": float(w),
                "median_rel_error": res.median_rel_error,
                "max_rel_error": float(np.nanmax(res.rel_error)),
                "n_agree": int(every.sum()),
                "agree_by_network": {k: v["n_agree"] for k, v in check.items()},
                "outside": finite_mean(res.outside),
                "result": res,
            }
        )
    return rows


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


#: Where the natural pre-image search looks, per network: the target variant and the prior
#: whose weight is swept (box-constrained, ``PRESETS["natural"]``: gentle steps from the class
#: average). Chosen by measurement on the embedded data: fcnn1's and fcnn5's percentile targets
#: ask output c for only its 75th percentile over all digits, and images that reach them are
#: not recognised; resnet18 reaches its percentile targets with images that still look like
#: digits, where its min/max targets need extreme ones.
#: A network the table does not name gets the paper's targets.
NATURAL_SEARCH: dict[str, dict] = {
    "fcnn1": {"targets": "min-max", "prior": "l2-avg"},
    "fcnn5": {"targets": "min-max", "prior": "l2-avg"},
    "resnet18": {"targets": "percentile", "prior": "l2-avg"},
}
NATURAL_SEARCH_DEFAULT = {"targets": "min-max", "prior": "l2-avg"}
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
            "median_rel_error": m if math.isfinite(m := self.result.median_rel_error) else None,
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
    search = NATURAL_SEARCH.get(network, NATURAL_SEARCH_DEFAULT)
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
    network: str | None = None,
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
    return invert_runs(
        model,
        targets,
        runs,
        method="box",
        data=data,
        stats=stats,
        network=network,
        device=device,
        seed=seed,
        progress=False,
        preset="natural",
        steps=QUICK_STEPS if quick else None,
    )


def save_inversions(
    results: Mapping[str, Mapping[str, InversionResult]],
    path: str | Path,
    *,
    natural: Mapping[str, NaturalPreimages] | None = None,
    extra: Mapping[str, InversionResult] | None = None,
) -> Path:
    """Every image set shown, in one ``.npz`` file (written atomically): per network,
    ``{network}/{method}/images`` ``(C, *shape)`` and ``.../targets`` ``(C, K)`` for each
    method; ``{network}/natural/images|targets|classes|settings`` for the natural pre-images;
    ``{key}/images|targets|classes|settings`` for each other result in ``extra`` (e.g.
    ``"resnet18/priors/tv 0.1"``). ``settings`` is a JSON string (the natural search's
    targets, prior, chosen weight and recognition count; a result's own settings), so the
    file loads without pickle."""
    arrays: dict[str, np.ndarray] = {}

    def put(key: str, r: InversionResult, settings: dict | None = None) -> None:
        arrays[f"{key}/images"] = r.image.detach().cpu().numpy()
        arrays[f"{key}/targets"] = r.target.detach().cpu().numpy()
        if settings is not None:
            arrays[f"{key}/classes"] = np.asarray(r.classes, dtype=np.int64)
            arrays[f"{key}/settings"] = np.asarray(json.dumps(settings, default=str))

    for net, by_method in results.items():
        for method, r in by_method.items():
            put(f"{net}/{method}", r)
    for net, found in (natural or {}).items():
        summary = {k: v for k, v in found.to_dict().items() if k not in ("frontier", "result")}
        put(f"{net}/natural", found.result, summary)
    for key, r in (extra or {}).items():
        put(key, r, r.settings)
    return atomic_write(path, lambda tmp: np.savez_compressed(tmp, **arrays))
