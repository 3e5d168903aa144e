"""Each notebook's metrics: what a notebook saves, and the one place that reads it back.

A notebook's last cell builds one of these dataclasses from what it computed and saves it
with :meth:`nnspaces.runner.config.RunContext.save_metrics` (``metrics/<name>.json``: ``fig1``,
``fig2``, ``fig3``, then ``lesson4`` and ``lesson5``, the lessons beyond Figure 3). The report,
the runner's summary and the README generator read the files through :func:`key_numbers` and
:func:`inversion_table`, which know the keys the dataclasses write: the metrics contract lives
here and is tested in one place (``tests/test_metrics.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import paper
from ..files import jsonable


def _floats(values: Any) -> list[float | None]:
    """Numbers as a flat JSON list of floats (NaN and infinities become None)."""
    return jsonable(np.asarray(values, dtype=np.float64).ravel())


def _float(value: Any) -> float | None:
    """A number for JSON: NaN and infinities (which strict JSON has not) become None."""
    return jsonable(float(value))


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
    operator on its actual input (``operators``: rows of :func:`nnspaces.spaces.analyze`)."""

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
            "operators": jsonable(self.operators),
        }


@dataclass
class Fig3Metrics:
    """Figure 3 (``fig3_inverse_images``): per network, its accuracy, every method's result
    and what the other networks see in each method's images. ``results[net][method]`` is an
    :class:`~nnspaces.inversion.InversionResult`, ``cross_model[net][method]`` counts of
    recognised digits."""

    name: ClassVar[str] = "fig3"
    accuracy: Mapping[str, float]
    results: Mapping[str, Mapping[str, Any]]
    cross_model: Mapping[str, Any]
    targets: str = "min-max"

    def to_dict(self) -> dict[str, Any]:
        nets = {
            n: {
                "test_accuracy": _float(self.accuracy[n]),
                "methods": {m: r.to_dict() for m, r in self.results[n].items()},
                "cross_model": self.cross_model.get(n, {}),
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
class Lesson4Metrics:
    """Lesson 4 (exact and Newton inversion): per network the ``exact``/``newton`` results
    (``results[net][method]``), the null-space samples of one output (``null_space[net]``, an
    :class:`~nnspaces.inversion.InversionResult` of k images of one digit), and fcnn5's
    greedy backward walk (``walk``: a result whose ``reason`` says where it stopped)."""

    name: ClassVar[str] = "lesson4"
    results: Mapping[str, Mapping[str, Any]]
    null_space: Mapping[str, Any] = field(default_factory=dict)
    walk: Any = None
    targets: str = "min-max"

    def to_dict(self) -> dict[str, Any]:
        nets = {
            n: {
                "methods": {m: r.to_dict() for m, r in self.results.get(n, {}).items()},
                "null_space": self.null_space[n].to_dict() if n in self.null_space else None,
            }
            for n in dict.fromkeys([*self.results, *self.null_space])
        }
        walk = self.walk.to_dict() if self.walk is not None else None
        return {"targets": self.targets, "networks": nets, "walk": walk}


@dataclass
class Lesson5Metrics:
    """Lesson 5 (priors and natural pre-images): per network the natural pre-images
    (``natural[net]``, a :class:`~nnspaces.inversion.natural.NaturalPreimages`), and the prior
    effects on ``priors_network`` (``priors[label]`` a result, ``priors_recognised[label]``
    how many of its digits every other network recognises)."""

    name: ClassVar[str] = "lesson5"
    natural: Mapping[str, Any]
    priors: Mapping[str, Any] = field(default_factory=dict)
    priors_recognised: Mapping[str, int] = field(default_factory=dict)
    priors_network: str = "resnet18"

    def to_dict(self) -> dict[str, Any]:
        return {
            "networks": {n: {"natural": found.to_dict()} for n, found in self.natural.items()},
            "priors": {
                "network": self.priors_network,
                "runs": {
                    label: r.to_dict()
                    | {"recognised_by_others": int(self.priors_recognised.get(label, -1))}
                    for label, r in self.priors.items()
                },
            },
        }


@dataclass
class Lesson6Metrics:
    """Lesson 6, the follow-up paper's methods: per network its accuracy; probability
    targets (``probability[net][label]``: an :class:`~nnspaces.inversion.InversionResult` per
    method and residual, ``not_applicable[net][method]``: why a method does not apply);
    Levenberg-Marquardt on the paper's min/max targets (``min_max[net][method]``); the random
    backward walk (``walk[net][layers]``: dicts with ``k``, ``success``, ``reasons`` and the
    :func:`~nnspaces.inversion.exact.diversity`); the ViT's attention heads (``heads``: rows with
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
                n: {layers: jsonable(w) for layers, w in by.items()} for n, by in self.walk.items()
            },
            "heads": jsonable(self.heads),
        }


# --------------------------------------------------------------------------- reading back


@dataclass(frozen=True)
class KeyNumber:
    """One number of the run beside the paper's: ``value`` None when no metrics file has it.
    ``kind`` is one of :data:`KEY_KINDS`, on ``network``; ``name`` the layer of a condition
    number ("" for an accuracy)."""

    label: str
    value: float | None
    reference: paper.Reference
    source: str
    percent: bool = False
    network: str = ""
    kind: str = ""
    name: str = ""

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


#: The kinds of key numbers.
KEY_KINDS = ("test accuracy", "condition number")
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
        rows.append(
            KeyNumber(
                f"{net} test accuracy",
                value,
                ref,
                source,
                percent=True,
                network=net,
                kind="test accuracy",
            )
        )
    for net, ref in paper.CONDITION_NUMBER.items():
        name = CONDITION_NUMBER_FILE[net]
        m = metrics.get(name) or {}
        ok = m.get("network") == net and _number(m.get("condition_number"))
        layer = paper.FIGURE_LAYER[net]
        layer = f"layer {layer}" if layer.isdigit() else layer
        rows.append(
            KeyNumber(
                f"{net} {layer} condition number",
                m["condition_number"] if ok else None,
                ref,
                f"{name}.json" if ok else "no metrics file has it",
                network=net,
                kind="condition number",
                name=layer,
            )
        )
    return rows


def _natural(lesson5: Mapping[str, Any] | None) -> dict[str, dict]:
    """From lesson5.json: each network's natural pre-images (``{net: {...}}``)."""
    nets = (lesson5 or {}).get("networks") or {}
    return {n: e["natural"] for n, e in nets.items() if (e or {}).get("natural")}


def inversion_table(
    fig3: Mapping[str, Any] | None, lesson5: Mapping[str, Any] | None = None
) -> tuple[list[str], dict[str, dict]]:
    """From fig3.json: the networks, and per method the median relative output error on each
    network (None where that method did not run); then, from lesson5.json when given, the
    ``natural pre-images`` row."""
    nets = (fig3 or {}).get("networks") or {}
    table: dict[str, dict[str, float | None]] = {}
    for net, entry in nets.items():
        for method, r in (entry.get("methods") or {}).items():
            table.setdefault(method, {})[net] = r.get("median_rel_error")
    natural = _natural(lesson5)
    for net, n in natural.items():
        table.setdefault("natural pre-images", {})[net] = n.get("median_rel_error")
    return list(dict.fromkeys([*nets, *natural])), table


def recognition_table(
    fig3: Mapping[str, Any] | None, lesson5: Mapping[str, Any] | None = None
) -> dict[str, dict[str, float | None]]:
    """From fig3.json: per method the fraction of digits whose image the network itself
    classifies as the digit, on each network; then, from lesson5.json when given, the
    ``natural pre-images`` row."""
    runs_by_net: dict[str, dict] = {
        net: dict(entry.get("methods") or {})
        for net, entry in ((fig3 or {}).get("networks") or {}).items()
    }
    for net, n in _natural(lesson5).items():
        runs_by_net.setdefault(net, {})["natural pre-images"] = n.get("result") or {}
    table: dict[str, dict[str, float | None]] = {}
    for net, runs in runs_by_net.items():
        for method, r in runs.items():
            classes, predicted = r.get("classes") or [], r.get("predicted") or []
            hits = [p == c for c, p in zip(classes, predicted, strict=False)]
            table.setdefault(method, {})[net] = sum(hits) / len(hits) if hits else None
    return table


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
