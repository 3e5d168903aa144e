"""Each figure's metrics: what a notebook saves, and the one place that reads it back.

A notebook's last cell builds one of these dataclasses from what it computed and saves it
with :meth:`nnspaces.config.RunContext.save_metrics` (``metrics/<name>.json``). The report,
the runner's summary and the README generator read the files through :func:`key_numbers` and
:func:`inversion_table`, which know the keys the dataclasses write: the metrics contract lives
here and is tested in one place (``tests/test_metrics.py``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from . import paper


def _floats(values: Any) -> list[float | None]:
    """Numbers as a JSON list; NaN and infinities become None."""
    return [_float(v) for v in np.asarray(values, dtype=np.float64).ravel().tolist()]


def _plain(value: Any) -> Any:
    """Dicts, lists, arrays and numbers as JSON values (NaN and infinities become None)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return _float(value)
    return value


def _float(value: Any) -> float | None:
    """A number for JSON: NaN and infinities (which strict JSON has not) become None."""
    v = float(value)
    return v if math.isfinite(v) else None


@dataclass
class Fig1Metrics:
    """Figure 1: the one-layer FCNN's weight, its SVD, and the class averages' energy."""

    name: ClassVar[str] = "fig1"
    network: str
    test_accuracy: float
    epochs: int
    singular_values: Any
    condition_number: float
    energy_kept_class_means: Any

    def to_dict(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "test_accuracy": _float(self.test_accuracy),
            "epochs": int(self.epochs),
            "singular_values": _floats(self.singular_values),
            "condition_number": _float(self.condition_number),
            "energy_kept_class_means": _floats(self.energy_kept_class_means),
        }


@dataclass
class Fig2Metrics:
    """Figure 2: one convolution's kernel-matrix SVD, and every convolution's condition
    number trained and at initialisation (``per_layer``: dicts with ``layer``, ``shape``,
    ``condition_number_trained``, ``condition_number_init``), and every convolution's
    operator on its actual input (``operators``: rows of :func:`nnspaces.analysis.analyze`)."""

    name: ClassVar[str] = "fig2"
    network: str
    test_accuracy: float
    epochs: int
    layer: str
    singular_values: Any
    condition_number: float
    per_layer: list[dict] = field(default_factory=list)
    operators: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "test_accuracy": _float(self.test_accuracy),
            "epochs": int(self.epochs),
            "layer": self.layer,
            "singular_values": _floats(self.singular_values),
            "condition_number": _float(self.condition_number),
            "per_layer": self.per_layer,
            "operators": [
                {k: _float(v) if isinstance(v, float) else v for k, v in row.items()}
                for row in self.operators
            ],
        }


@dataclass
class Fig3Metrics:
    """Figure 3: per network, its accuracy, every method's result, what the other networks
    see in each method's images, and the natural pre-images. ``results[net][method]`` is an
    :class:`~nnspaces.inversion.InversionResult`, ``cross_model[net][method]`` counts of
    recognised digits, ``natural[net]`` a :class:`~nnspaces.comparison.NaturalPreimages`."""

    name: ClassVar[str] = "fig3"
    accuracy: Mapping[str, float]
    results: Mapping[str, Mapping[str, Any]]
    cross_model: Mapping[str, Any]
    natural: Mapping[str, Any]
    targets: str = "min-max"

    def to_dict(self) -> dict[str, Any]:
        nets = {
            n: {
                "test_accuracy": _float(self.accuracy[n]),
                "methods": {m: r.to_dict() for m, r in self.results[n].items()},
                "cross_model": self.cross_model.get(n, {}),
                "natural": self.natural[n].to_dict() if n in self.natural else None,
            }
            for n in self.results
        }
        summary = ", ".join(
            f"{n} best {by['best'].median_rel_error:.1e} box {by['best-box'].median_rel_error:.1e}"
            for n, by in self.results.items()
            if "best" in by and "best-box" in by
        )
        return {"targets": self.targets, "networks": nets, "summary": summary}


@dataclass
class Lesson6Metrics:
    """Lesson 6, the follow-up paper's methods: per network its accuracy; probability
    targets (``probability[net][label]``: an :class:`~nnspaces.inversion.InversionResult` per
    method and residual, ``not_applicable[net][method]``: why a method does not apply);
    Levenberg-Marquardt on the paper's min/max targets (``min_max[net][method]``); the random
    backward walk (``walk[net][layers]``: dicts with ``k``, ``success``, ``reasons`` and the
    :func:`~nnspaces.exact.diversity` values); the ViT's attention heads (``heads``: rows with
    ``layer``, ``head``, ``projection``, ``shape``, ``rank``, ``condition_number``)."""

    name: ClassVar[str] = "lesson6"
    accuracy: Mapping[str, float]
    level: float
    probability: Mapping[str, Mapping[str, Any]]
    not_applicable: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    min_max: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    walk: Mapping[str, Mapping[str, dict]] = field(default_factory=dict)
    heads: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def brief(r) -> dict[str, Any]:
            return {
                "classes": list(r.classes),
                "n_success": int(r.n_success),
                "success": [bool(v) for v in r.success],
                "prob": _floats(r.prob),
                "median_prob": _float(np.median(r.prob)),
                "median_rel_error": _float(r.median_rel_error),
                "seconds": _float(r.seconds),
                "steps": int(r.steps),
                "reason": list(r.reason),
                "residual": r.settings.get("residual"),
            }

        return {
            "level": _float(self.level),
            "accuracy": {n: _float(a) for n, a in self.accuracy.items()},
            "probability": {
                n: {label: brief(r) for label, r in by.items()}
                for n, by in self.probability.items()
            },
            "not_applicable": {n: dict(by) for n, by in self.not_applicable.items()},
            "min_max": {n: {m: brief(r) for m, r in by.items()} for n, by in self.min_max.items()},
            "walk": {
                n: {layers: _plain(w) for layers, w in by.items()} for n, by in self.walk.items()
            },
            "heads": [
                {k: _float(v) if isinstance(v, float) else v for k, v in row.items()}
                for row in self.heads
            ],
        }


# --------------------------------------------------------------------------- reading back


@dataclass(frozen=True)
class KeyNumber:
    """One number of the run beside the paper's: ``value`` None when no metrics file has it."""

    label: str
    value: float | None
    reference: paper.Reference
    source: str
    percent: bool = False

    @property
    def text(self) -> str:
        if self.value is None:
            return "missing"
        return f"{100 * self.value:.1f}%" if self.percent else f"{self.value:.3g}"


def _accuracy(metrics: Mapping[str, dict], network: str) -> tuple[float | None, str]:
    for name in ("fig1", "fig2"):
        m = metrics.get(name) or {}
        if m.get("network") == network and _number(m.get("test_accuracy")):
            return m["test_accuracy"], f"{name}.json"
    net = ((metrics.get("fig3") or {}).get("networks") or {}).get(network) or {}
    if _number(net.get("test_accuracy")):
        return net["test_accuracy"], f"fig3.json: networks / {network}"
    return None, "no metrics file has it"


#: Which figure's metrics file holds each network's condition number.
CONDITION_NUMBER_FILE = {"fcnn1": Fig1Metrics.name, "resnet18": Fig2Metrics.name}


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


def key_numbers(metrics: Mapping[str, dict]) -> list[KeyNumber]:
    """The run's accuracies and figure condition numbers beside the paper's
    (:mod:`nnspaces.paper`), read from the metrics files by name (``{"fig1": {...}}``)."""
    rows = []
    for net, ref in paper.ACCURACY.items():
        value, source = _accuracy(metrics, net)
        rows.append(KeyNumber(f"{net} test accuracy", value, ref, source, percent=True))
    for net, ref in paper.CONDITION_NUMBER.items():
        name = CONDITION_NUMBER_FILE[net]
        m = metrics.get(name) or {}
        ok = m.get("network") == net and _number(m.get("condition_number"))
        layer = paper.FIGURE_LAYER[net]
        rows.append(
            KeyNumber(
                f"{net} {'layer ' if layer.isdigit() else ''}{layer} condition number",
                m["condition_number"] if ok else None,
                ref,
                f"{name}.json" if ok else "no metrics file has it",
            )
        )
    return rows


def inversion_table(fig3: Mapping[str, Any] | None) -> tuple[list[str], dict[str, dict]]:
    """From fig3.json: the networks, and per method (then ``natural pre-images``) the median
    relative output error on each network (None where that method did not run)."""
    nets = (fig3 or {}).get("networks") or {}
    table: dict[str, dict[str, float | None]] = {}
    for net, entry in nets.items():
        for method, r in (entry.get("methods") or {}).items():
            table.setdefault(method, {})[net] = r.get("median_rel_error")
        natural = entry.get("natural")
        if natural:
            table.setdefault("natural pre-images", {})[net] = natural.get("median_rel_error")
    return list(nets), table


def recognition_table(fig3: Mapping[str, Any] | None) -> dict[str, dict[str, float | None]]:
    """From fig3.json: per method (then ``natural pre-images``) the fraction of digits whose
    image the network itself classifies as the digit, on each network."""
    table: dict[str, dict[str, float | None]] = {}
    for net, entry in ((fig3 or {}).get("networks") or {}).items():
        runs = dict(entry.get("methods") or {})
        natural = entry.get("natural")
        if natural:
            runs["natural pre-images"] = natural.get("result") or {}
        for method, r in runs.items():
            classes, predicted = r.get("classes") or [], r.get("predicted") or []
            hits = [p == c for c, p in zip(classes, predicted, strict=False)]
            table.setdefault(method, {})[net] = sum(hits) / len(hits) if hits else None
    return table


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
