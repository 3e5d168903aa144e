"""The metrics files read back: a run's key numbers beside the paper's, and its inversion and
recognition tables (what the report, the runner's summary, the README and the sweep show).

Every file is read as the dataclass that wrote it (:mod:`.metrics`' ``from_dict``); a file of
another layout gives missing numbers whose source says why, and the other files are still read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import paper
from .metrics import (
    Fig1Metrics,
    Fig2Metrics,
    Fig3Metrics,
    Lesson5Metrics,
    M,
    MetricsLayoutError,
)


@dataclass(frozen=True)
class KeyNumber:
    """One number of the run beside the paper's: the ``kind`` (one of :data:`KEY_KINDS`) of
    ``network`` (``name``: a condition number's layer, "" for an accuracy); ``value`` None
    when no metrics file has it, ``source`` the file it was read from, or why it is missing."""

    network: str
    kind: str
    name: str
    value: float | None
    reference: paper.Reference
    source: str

    @property
    def label(self) -> str:
        return " ".join(part for part in (self.network, self.name, self.kind) if part)

    @property
    def percent(self) -> bool:
        return self.kind == "test accuracy"

    @property
    def text(self) -> str:
        if self.value is None:
            return "missing"
        return f"{100 * self.value:.1f}%" if self.percent else f"{self.value:.3g}"


#: The kinds of key numbers.
KEY_KINDS = ("test accuracy", "condition number")
#: Which figure's metrics file holds each network's condition number.
CONDITION_NUMBER_FILE = {"fcnn1": Fig1Metrics.name, "resnet18": Fig2Metrics.name}


#: A run's judges' verdicts on one file of image sets: ``metrics/verdicts_<file>.json``.
VERDICTS_PREFIX = "verdicts_"


def verdict_table(
    metrics: Mapping[str, dict], column: str = "digit and inside"
) -> dict[str, dict[str, float | None]]:
    """From every ``verdicts_*`` metrics file: per image set (``file: set`` without its
    network) and network, the fraction of its images that every judge reads as the intended
    digit with every pixel in [0, 1] (``column="every judge"``: whatever the pixels)."""
    table: dict[str, dict[str, float | None]] = {}
    for name, content in metrics.items():
        if not name.startswith(VERDICTS_PREFIX):
            continue
        for key, row in (content.get("sets") or {}).items():
            label = f"{name[len(VERDICTS_PREFIX) :]}: {key.split('/', 1)[-1]}"
            n = row.get("images") or 0
            table.setdefault(label, {})[row.get("network", "")] = (
                row.get(column, 0) / n if n else None
            )
    return table


def read_metrics(out_dir: str | Path) -> dict[str, dict]:
    """A run's ``metrics/*.json`` by name (``{"fig1": {...}}``); unreadable files are left
    out (the report lists them as problems)."""
    out = {}
    for path in sorted((Path(out_dir) / "metrics").glob("*.json")):
        try:
            out[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return out


def read_back(cls: type[M], data: Mapping[str, Any] | M | None) -> M | None:
    """A metrics file's content as its dataclass ``cls`` (None for a missing or empty one;
    :class:`MetricsLayoutError` for another layout)."""
    if data is None or isinstance(data, cls):
        return data
    return cls.from_dict(data) if data else None


def key_numbers(metrics: Mapping[str, dict]) -> list[KeyNumber]:
    """The run's accuracies and figure condition numbers beside the paper's
    (:mod:`nnspaces.paper`), read from the metrics files by name (``{"fig1": {...}}``); a
    file of another layout gives missing numbers (its source says so)."""
    files, other = {}, []
    for cls in (Fig1Metrics, Fig2Metrics, Fig3Metrics):
        try:
            files[cls.name] = read_back(cls, metrics.get(cls.name))
        except MetricsLayoutError:
            files[cls.name] = None
            other.append(f"{cls.name}.json")
    fig3 = files.pop(Fig3Metrics.name)
    none = "no metrics file has it" + (f" ({', '.join(other)}: another layout)" if other else "")
    rows = []
    for net, ref in paper.ACCURACY.items():
        value, source = None, none
        found = [m for m in files.values() if m and m.network == net and _number(m.test_accuracy)]
        if found:
            value, source = found[0].test_accuracy, f"{found[0].name}.json"
        elif fig3 and _number(fig3.accuracy.get(net)):
            value, source = fig3.accuracy[net], f"fig3.json: networks / {net}"
        rows.append(KeyNumber(net, "test accuracy", "", value, ref, source))
    for net, ref in paper.CONDITION_NUMBER.items():
        name = CONDITION_NUMBER_FILE[net]
        m = files[name]
        ok = m is not None and m.network == net and _number(m.condition_number)
        layer = paper.FIGURE_LAYER[net]
        layer = f"layer {layer}" if layer.isdigit() else layer
        value, source = (m.condition_number, f"{name}.json") if ok else (None, none)
        rows.append(KeyNumber(net, "condition number", layer, value, ref, source))
    return rows


def inversion_table(
    fig3: Mapping[str, Any] | None, lesson5: Mapping[str, Any] | None = None
) -> tuple[list[str], dict[str, dict]]:
    """From fig3.json: the networks, and per method the median relative output error on each
    network (None where that method did not run); then, from lesson5.json when given, the
    ``natural pre-images`` row."""
    results = _results(fig3)
    natural = _natural(lesson5)
    table: dict[str, dict[str, float | None]] = {}
    for net, methods in results.items():
        for method, r in methods.items():
            table.setdefault(method, {})[net] = r.get("median_rel_error")
    for net, n in natural.items():
        table.setdefault("natural pre-images", {})[net] = n.get("median_rel_error")
    return list(dict.fromkeys([*results, *natural])), table


def _results(fig3: Mapping[str, Any] | None) -> Mapping[str, Mapping[str, dict]]:
    """From fig3.json: per network, each method's result as written."""
    m = read_back(Fig3Metrics, fig3)
    return m.results if m else {}


def _natural(lesson5: Mapping[str, Any] | None) -> Mapping[str, dict]:
    """From lesson5.json: each network's natural pre-images as written."""
    m = read_back(Lesson5Metrics, lesson5)
    return m.natural if m else {}


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
