"""Each notebook's metrics: what a notebook saves, and the one place that reads it back.

A notebook's last cell builds one of these dataclasses from what it computed and saves it
with :meth:`nnspaces.runner.config.RunContext.save_metrics` (``metrics/<name>.json``: ``fig1``,
``fig2``, ``fig3``, then ``lesson4`` and ``lesson5``, the lessons beyond Figure 3). The report,
the runner's summary and the README generator read the files back as the same dataclasses
(``from_dict``, the inverse of ``to_dict``) through :func:`key_numbers`,
:func:`inversion_table` and :func:`recognition_table`: the metrics contract lives here and is
tested in one place (``tests/runner/test_metrics.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from .. import paper
from ..files import jsonable


def _floats(values: Any) -> list[float | None]:
    """Numbers as a flat JSON list of floats (NaN and infinities become None)."""
    return jsonable(np.asarray(values, dtype=np.float64).ravel())


def _float(value: Any) -> float | None:
    """A number for JSON: NaN and infinities (which strict JSON has not) become None."""
    return jsonable(float(value))


M = TypeVar("M", bound="_Metrics")


class MetricsLayoutError(ValueError):
    """A metrics file that is not of the layout its dataclass writes (an older notebook's)."""


class _Metrics:
    """What every metrics dataclass shares: reading itself back from what ``to_dict`` wrote."""

    name: ClassVar[str]
    #: The keys every file of this layout has.
    layout: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_dict(cls, data: Any) -> Any:
        """The metrics a file holds (what :meth:`to_dict` wrote; the keys ``save_metrics``
        adds beside them, the profile and the data, are not fields). A missing field takes
        its default, or None; results stay the dicts their ``to_dict`` wrote. Raises
        :class:`MetricsLayoutError` for a file of another layout."""
        if not isinstance(data, Mapping):
            raise MetricsLayoutError(f"{cls.name}.json holds a {type(data).__name__}, not a dict")
        missing = [k for k in cls.layout if k not in data]
        try:
            if missing:
                raise KeyError(", ".join(missing))
            values = cls._fields(data)
        except (AttributeError, TypeError, KeyError) as e:
            raise MetricsLayoutError(
                f"{cls.name}.json does not have the layout nnspaces.runner.metrics writes "
                f"({cls.__name__}; it has {', '.join(map(str, data)) or 'nothing'}; "
                f"{type(e).__name__}: {e}); rerun its notebook"
            ) from None
        required = [f for f in fields(cls) if MISSING is f.default and MISSING is f.default_factory]
        return cls(**({f.name: None for f in required} | values))

    @classmethod
    def _fields(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """The fields' values in a file of this layout (by default, under their names)."""
        return {f.name: data[f.name] for f in fields(cls) if f.name in data}


def _dicts(value: Any, where: str) -> Mapping[str, Any]:
    """``value``, a dict whose values are dicts (or None); TypeError naming ``where``."""
    if not isinstance(value, Mapping) or not all(
        v is None or isinstance(v, Mapping) for v in value.values()
    ):
        raise TypeError(f"{where} is not a dict of dicts")
    return value


@dataclass
class Fig1Metrics(_Metrics):
    """Figure 1: the one-layer FCNN's weight, its SVD, and the class averages' energy."""

    name: ClassVar[str] = "fig1"
    layout: ClassVar[tuple[str, ...]] = ("network",)
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
class Fig2Metrics(_Metrics):
    """Figure 2: one convolution's kernel-matrix SVD, and every convolution's condition
    number trained and at initialisation (``per_layer``: dicts with ``layer``, ``shape``,
    ``condition_number_trained``, ``condition_number_init``), and every convolution's
    operator on its actual input (``operators``: rows of :func:`nnspaces.spaces.analyze`)."""

    name: ClassVar[str] = "fig2"
    layout: ClassVar[tuple[str, ...]] = ("network",)
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
class Fig3Metrics(_Metrics):
    """Figure 3 (``fig3_inverse_images``): per network, its accuracy, every method's result
    and what the other networks see in each method's images. ``results[net][method]`` is an
    :class:`~nnspaces.inversion.InversionResult`, ``cross_model[net][method]`` counts of
    recognised digits."""

    name: ClassVar[str] = "fig3"
    layout: ClassVar[tuple[str, ...]] = ("networks",)
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

    @classmethod
    def _fields(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        nets = {n: e or {} for n, e in _dicts(data["networks"], "networks").items()}
        return {
            "accuracy": {n: e.get("test_accuracy") for n, e in nets.items()},
            "results": {
                n: dict(_dicts(e.get("methods") or {}, f"networks/{n}/methods"))
                for n, e in nets.items()
            },
            "cross_model": {n: e.get("cross_model") or {} for n, e in nets.items()},
        } | ({"targets": data["targets"]} if "targets" in data else {})


@dataclass
class Lesson4Metrics(_Metrics):
    """Lesson 4 (exact and Newton inversion): per network the ``exact``/``newton`` results
    (``results[net][method]``), the null-space samples of one output (``null_space[net]``, an
    :class:`~nnspaces.inversion.InversionResult` of k images of one digit), and fcnn5's
    greedy backward walk (``walk``: a result whose ``reason`` says where it stopped)."""

    name: ClassVar[str] = "lesson4"
    layout: ClassVar[tuple[str, ...]] = ("networks",)
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

    @classmethod
    def _fields(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        nets = {n: e or {} for n, e in _dicts(data["networks"], "networks").items()}
        return {
            "results": {n: dict(e.get("methods") or {}) for n, e in nets.items()},
            "null_space": {n: e["null_space"] for n, e in nets.items() if e.get("null_space")},
        } | {k: data[k] for k in ("walk", "targets") if k in data}


@dataclass
class Lesson5Metrics(_Metrics):
    """Lesson 5 (priors and natural pre-images): per network the natural pre-images
    (``natural[net]``, a :class:`~nnspaces.inversion.natural.NaturalPreimages`), and the prior
    effects on ``priors_network`` (``priors[label]`` a result, ``priors_recognised[label]``
    how many of its digits every other network recognises)."""

    name: ClassVar[str] = "lesson5"
    layout: ClassVar[tuple[str, ...]] = ("networks",)
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

    @classmethod
    def _fields(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        nets = _dicts(data["networks"], "networks")
        priors = data.get("priors") or {}
        runs = _dicts(priors.get("runs") or {}, "priors/runs")
        return {
            "natural": {n: e["natural"] for n, e in nets.items() if (e or {}).get("natural")},
            "priors": {
                label: {k: v for k, v in r.items() if k != "recognised_by_others"}
                for label, r in runs.items()
            },
            "priors_recognised": {
                label: r.get("recognised_by_others", -1) for label, r in runs.items()
            },
        } | ({"priors_network": priors["network"]} if "network" in priors else {})


@dataclass
class Lesson6Metrics(_Metrics):
    """Lesson 6, the follow-up paper's methods: per network its accuracy; probability
    targets (``probability[net][label]``: an :class:`~nnspaces.inversion.InversionResult` per
    method and residual, ``not_applicable[net][method]``: why a method does not apply);
    Levenberg-Marquardt on the paper's min/max targets (``min_max[net][method]``); the random
    backward walk (``walk[net][layers]``: dicts with ``k``, ``success``, ``reasons`` and the
    :func:`~nnspaces.inversion.nullspace.diversity`); the ViT's attention heads (``heads``: rows with
    ``layer``, ``head``, ``projection``, ``shape``, ``rank``, ``condition_number``)."""

    name: ClassVar[str] = "lesson6"
    layout: ClassVar[tuple[str, ...]] = ("level", "accuracy", "probability")
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


def recognition_table(
    fig3: Mapping[str, Any] | None, lesson5: Mapping[str, Any] | None = None
) -> dict[str, dict[str, float | None]]:
    """From fig3.json: per method the fraction of digits whose image the network itself
    classifies as the digit, on each network; then, from lesson5.json when given, the
    ``natural pre-images`` row."""
    runs_by_net = {net: dict(methods) for net, methods in _results(fig3).items()}
    for net, n in _natural(lesson5).items():
        runs_by_net.setdefault(net, {})["natural pre-images"] = n.get("result") or {}
    table: dict[str, dict[str, float | None]] = {}
    for net, runs in runs_by_net.items():
        for method, r in runs.items():
            classes, predicted = r.get("classes") or [], r.get("predicted") or []
            hits = [p == c for c, p in zip(classes, predicted, strict=False)]
            table.setdefault(method, {})[net] = sum(hits) / len(hits) if hits else None
    return table


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
