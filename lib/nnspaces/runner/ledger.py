"""The paper's claims ledger: every claim of the paper (:data:`nnspaces.paper.CLAIMS`) checked
on a run's saved metrics: what this run shows, and a verdict (:data:`VERDICTS`) with why.

A claim about one of the paper's numbers is testable only on MNIST (:data:`paper.DATASETS`);
it holds when the run's number is within a tolerance of the paper's (named below).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from .. import paper
from .metrics import Fig2Metrics, Fig3Metrics, MetricsLayoutError
from .numbers import key_numbers, read_back

HOLDS, FAILS, UNTESTABLE = "holds", "does not hold", "not testable here"
VERDICTS = (HOLDS, FAILS, UNTESTABLE)
#: An accuracy holds within this (absolute) below the paper's.
ACCURACY_TOLERANCE = 0.01
#: A condition number holds within this relative difference of the paper's.
CONDITION_TOLERANCE = 0.10
#: "Well conditioned": a kernel matrix's condition number below this.
WELL_CONDITIONED = 10.0
#: "+training" brings the output toward the target when every median error falls; the row
#: also counts those that fall by at least this much (the rest barely move).
TRAINING_DROP = 0.05
#: "Looks binarized", like a real digit image and unlike a class average: at least this share
#: of pixels within 0.1 of 0 or 1. Of the embedded MNIST digits, 99% of the training images
#: have at least 87% such pixels and every class average at most 82%.
BINARIZED = 0.85

Row = tuple[str, str, str]  # verdict, this run, why
Check = Callable[[Mapping[str, dict], str], Row]


def _key(metrics: Mapping[str, dict], network: str, kind: str) -> Any:
    return next((k for k in key_numbers(metrics) if k.network == network and k.kind == kind), None)


def _number_check(network: str, kind: str) -> Check:
    def check(metrics: Mapping[str, dict], dataset: str) -> Row:
        k = _key(metrics, network, kind)
        if k is None or k.value is None:
            return UNTESTABLE, "-", f"the run has no {network} {kind} ({k.source if k else ''})"
        if dataset not in paper.DATASETS:
            return UNTESTABLE, k.text, f"the paper's number is for MNIST; this run is {dataset}"
        ref = k.reference.value
        side = "below" if k.value < ref else "above"
        if kind == "test accuracy":
            ok = k.value >= ref - ACCURACY_TOLERANCE
            why = (
                f"{100 * abs(k.value - ref):.1f} points {side} {100 * ref:.0f}% (holds when at "
                f"most {100 * ACCURACY_TOLERANCE:.0f} point below){_data_size(metrics, network)}"
            )
        else:
            ok = abs(k.value / ref - 1) <= CONDITION_TOLERANCE
            why = (
                f"{abs(k.value / ref - 1):.0%} {side} {ref:g} (holds within "
                f"{CONDITION_TOLERANCE:.0%}){_untrained(metrics, k.name, k.value, ref)}"
            )
        return (HOLDS if ok else FAILS), k.text, why

    return check


def _data_size(metrics: Mapping[str, dict], network: str) -> str:
    """How many images and epochs this run trained ``network`` on beside the paper's (likely
    causes of a gap), where they differ."""
    n = next((m["n_train"] for m in metrics.values() if m.get("n_train")), None)
    epochs = next((m.get("epochs") for m in metrics.values() if m.get("network") == network), None)
    ours, theirs = [], []
    if n is not None and n != paper.TRAIN_IMAGES:
        ours.append(f"{n:,} images")
        theirs.append(f"{paper.TRAIN_IMAGES:,}")
    if isinstance(epochs, int) and epochs != paper.TRAINING["epochs"]:
        ours.append(f"{epochs} epoch{'s' if epochs != 1 else ''}")
        theirs.append(f"{paper.TRAINING['epochs']} epochs")
    if not ours:
        return ""
    return f"; this run trained on {', '.join(ours)}, the paper on {', '.join(theirs)}"


def _untrained(metrics: Mapping[str, dict], layer: str, value: float, ref: float) -> str:
    """For a convolution's condition number: the same layer's before training, and whether
    the tolerance passes that too (then the number says little about the training)."""
    m = read_back(Fig2Metrics, metrics.get(Fig2Metrics.name))
    row = next((r for r in (m.per_layer if m else []) if r.get("layer") == layer), None)
    if row is None or not row.get("condition_number_init"):
        return ""
    init = row["condition_number_init"]
    if abs(init / ref - 1) <= CONDITION_TOLERANCE:
        return (
            f"; the untrained layer has {init:.4g} (trained {value:.4g}), within it too: the "
            "number is the layer's shape more than its training"
        )
    return f"; the untrained layer has {init:.4g} (trained {value:.4g})"


def _well_conditioned(metrics: Mapping[str, dict], dataset: str) -> Row:
    m = read_back(Fig2Metrics, metrics.get(Fig2Metrics.name))
    rows = [r for r in (m.per_layer if m else []) if r.get("condition_number_trained")]
    if not rows:
        return UNTESTABLE, "-", "the run has no fig2.json with every convolution's kernels"
    worst = max(rows, key=lambda r: r["condition_number_trained"])
    below = sum(r["condition_number_trained"] < WELL_CONDITIONED for r in rows)
    text = f"largest {worst['condition_number_trained']:.3g} ({worst['layer']}, {len(rows)} convs)"
    shown = next((r for r in rows if r["layer"] == paper.FIGURE_LAYER["resnet18"]), None)
    if shown is not None and shown is not worst:
        text += f"; the paper's layer {shown['layer']}: {shown['condition_number_trained']:.3g}"
    why = f"{below} of {len(rows)} convolutions below {WELL_CONDITIONED:g} (holds when all are)"
    if worst.get("condition_number_init"):
        why += f"; {worst['layer']} before training: {worst['condition_number_init']:.3g}"
    return (HOLDS if below == len(rows) else FAILS), text, why


def _on_mnist(check: Check) -> Check:
    """``check`` only on the paper's data: the claim is about its MNIST networks or digits."""

    def on_mnist(metrics: Mapping[str, dict], dataset: str) -> Row:
        if dataset not in paper.DATASETS:
            return (
                UNTESTABLE,
                "-",
                f"a claim about the paper's MNIST networks; this run is {dataset}",
            )
        return check(metrics, dataset)

    return on_mnist


def _untestable(why: str) -> Check:
    return lambda metrics, dataset: (UNTESTABLE, "-", why)


def _fig3(metrics: Mapping[str, dict]) -> Any:
    return read_back(Fig3Metrics, metrics.get(Fig3Metrics.name))


def _invertible(metrics: Mapping[str, dict], dataset: str) -> Row:
    m = _fig3(metrics)
    runs = {n: by["exact"] for n, by in (m.results if m else {}).items() if "exact" in by}
    if not runs:
        return UNTESTABLE, "-", "the run has no exact inversion (fig3.json)"
    text = ", ".join(f"{n} {sum(r['success'])}/{len(r['success'])}" for n, r in runs.items())
    outside = ", ".join(
        f"{n} {float(np.mean(r['outside'])):.1%}" for n, r in runs.items() if r.get("outside")
    )
    ok = all(all(r["success"]) for r in runs.values())
    why = "every target reached to 1e-4" + (
        f"; as images, their pixels outside [0, 1]: {outside}" if outside else ""
    )
    return (HOLDS if ok else FAILS), f"exact reaches {text}", why


def _picks(m: Any, net: str) -> list[tuple[int, dict, int]]:
    """The paper's Figure 3 pick of each digit: (digit, its result, its row in the result)."""
    by = m.results.get(net, {})
    out = []
    for c, method in paper.FIGURE3_METHODS[net].items():
        if method in by:
            out.append((c, by[method], list(by[method]["classes"]).index(c)))
    return out


def _nets(m: Any) -> list[str]:
    return [n for n in paper.FIGURE3_METHODS if m is not None and n in m.results]


def _training(metrics: Mapping[str, dict], dataset: str) -> Row:
    m = _fig3(metrics)
    changes = {}
    for net in _nets(m):
        by = m.results[net]
        for start in ("avg-img", "min-img", "avg-min-img"):
            if start in by and f"{start}+training" in by:
                a, b = by[start]["median_rel_error"], by[f"{start}+training"]["median_rel_error"]
                changes[f"{net} {start}"] = b / a - 1
    if not changes:
        return UNTESTABLE, "-", "the run has no +training results (fig3.json)"
    text = ", ".join(f"{k} {v:+.1%}" for k, v in changes.items())
    enough = sum(v <= -TRAINING_DROP for v in changes.values())
    falls = sum(v < 0 for v in changes.values())
    n = len(changes)
    why = (
        f"{falls} of {n} median errors fall (holds when every one does); {enough} of {n} by "
        f"at least {TRAINING_DROP:.0%}, the rest barely move"
    )
    return (HOLDS if falls == n else FAILS), f"median error change: {text}", why


def _recognised(metrics: Mapping[str, dict], dataset: str) -> Row:
    m = _fig3(metrics)
    counts = {n: sum(r["predicted"][i] == c for c, r, i in _picks(m, n)) for n in _nets(m)}
    if not counts:
        return UNTESTABLE, "-", "the run has no fig3.json"
    text = ", ".join(f"{n} {k}/10" for n, k in counts.items())
    ok = all(k == 10 for k in counts.values())
    return (HOLDS if ok else FAILS), f"read as the digit: {text}", "the paper's pick per digit"


def _binarized(metrics: Mapping[str, dict], dataset: str) -> Row:
    m = _fig3(metrics)
    picks = [(c, r, i) for c, r, i in (_picks(m, "resnet18") if "resnet18" in _nets(m) else [])]
    near = [r["near_bound"][i] for c, r, i in picks if c in (0, 2, 3, 8) and "near_bound" in r]
    if not near:
        return UNTESTABLE, "-", "the run has no resnet18 min-img images' pixels (fig3.json)"
    text = ", ".join(f"{v:.1%}" for v in near)
    passing = sum(v >= BINARIZED for v in near)
    why = (
        f"{passing} of {len(near)} images have at least {BINARIZED:.0%} of pixels within 0.1 of "
        "0 or 1, as real digit images do and class averages do not (holds when all do)"
    )
    return (HOLDS if passing == len(near) else FAILS), f"pixels near 0 or 1: {text}", why


CHECKS: dict[str, Check] = {
    "accuracy.fcnn1": _number_check("fcnn1", "test accuracy"),
    "accuracy.fcnn5": _number_check("fcnn5", "test accuracy"),
    "accuracy.resnet18": _number_check("resnet18", "test accuracy"),
    "condition.fcnn1": _number_check("fcnn1", "condition number"),
    "condition.resnet18": _number_check("resnet18", "condition number"),
    "conv.well_conditioned": _on_mnist(_well_conditioned),
    "residual.information_lost": _untestable(
        "a statement about what a figure lets one see; fig1 computes the residuals and the "
        "energy each class average keeps, but 'visualises' has no number"
    ),
    "inverse.fcnn_invertible": _invertible,
    "inverse.training_improves": _training,
    "inverse.recognised": _on_mnist(_recognised),
    "inverse.resnet_binarized": _on_mnist(_binarized),
}

COLUMNS = ["id", "says", "source", "this_run", "verdict", "why"]


def paper_ledger(metrics: Mapping[str, dict]) -> pd.DataFrame:
    """Every claim of the paper checked on a run's metrics files by name (``{"fig1": {...}}``):
    ``id``, ``says``, ``source``, ``this_run``, ``verdict`` (one of :data:`VERDICTS`), ``why``."""
    dataset = next((d.get("dataset") for d in metrics.values() if d.get("dataset")), "")
    rows = []
    for c in paper.CLAIMS:
        try:
            verdict, this_run, why = CHECKS[c.id](metrics, dataset)
        except (MetricsLayoutError, KeyError, TypeError, ValueError, IndexError) as e:
            verdict, this_run, why = UNTESTABLE, "-", f"a metrics file of another layout ({e})"
        rows.append([c.id, c.says, c.source, this_run, verdict, why])
    return pd.DataFrame(rows, columns=COLUMNS)
