"""Each notebook's metrics: what a notebook saves, and how a saved file is read back.

A notebook's last cell builds one of these dataclasses from what it computed and saves it
with :meth:`nnspaces.runner.config.RunContext.save_metrics` (``metrics/<name>.json``: ``fig1``,
``fig2``, ``fig3``, then ``lesson4``, ``lesson5`` and ``lesson6``, the lessons beyond Figure
3). The report, the runner's summary and the README generator read the files back as the same
dataclasses (``from_dict``, the inverse of ``to_dict``) through :mod:`.numbers`: the metrics
contract lives here and is tested in one place (``tests/runner/test_metrics.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

import numpy as np

from ..files import jsonable


def _floats(values: Any) -> list[float | None]:
    """Numbers as a flat JSON list of floats (NaN and infinities become None)."""
    return jsonable(np.asarray(values, dtype=np.float64).ravel())


def _float(value: Any) -> float | None:
    """A number for JSON: NaN and infinities (which strict JSON has not) become None."""
    return jsonable(float(value))


#: A pixel this close to 0 or 1 looks black or white.
NEAR = 0.1


def _pixels(r: Any) -> dict[str, Any]:
    """What the claims read of a result's images (which the metrics files do not hold): per
    image the fraction of pixels exactly on 0 or 1 (``at_bound``) and within :data:`NEAR` of
    0 or 1 (``near_bound``: how binarised it looks), and the largest difference
    of any image from the first with the images' pixel range (``largest_difference``,
    ``pixel_range``). Empty for a result read back from a file."""
    image = getattr(r, "image", None)
    if image is None:
        return {}
    x = np.asarray(image, dtype=np.float64).reshape(len(image), -1)
    finite = np.isfinite(x).all(1)  # an exact method's failed rows are NaN

    def share(mask: np.ndarray) -> list[float | None]:
        return _floats(np.where(finite, mask.mean(1), np.nan))

    ok = x[finite]
    return {
        "at_bound": share((x == 0) | (x == 1)),
        "near_bound": share(np.minimum(np.abs(x), np.abs(x - 1)) <= NEAR),
        "largest_difference": _float(np.abs(ok - ok[0]).max()) if len(ok) else None,
        "pixel_range": _float(ok.max() - ok.min()) if len(ok) else None,
    }


def _result(r: Any) -> dict[str, Any]:
    """A result as the metrics file holds it: its ``to_dict`` and :func:`_pixels`."""
    return r if isinstance(r, Mapping) else r.to_dict() | _pixels(r)


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
                "methods": {m: _result(r) for m, r in self.results[n].items()},
                "cross_model": self.cross_model.get(n, {}),
            }
            for n in self.results
        }
        summary = ", ".join(
            f"{n} best {nets[n]['methods']['best']['median_rel_error']:.1e} "
            f"box {nets[n]['methods']['best-box']['median_rel_error']:.1e}"
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
                "methods": {m: _result(r) for m, r in self.results.get(n, {}).items()},
                "null_space": _result(self.null_space[n]) if n in self.null_space else None,
            }
            for n in dict.fromkeys([*self.results, *self.null_space])
        }
        walk = _result(self.walk) if self.walk is not None else None
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
    how many of its digits every other network recognises); projected gradient with two first
    steps (``box[net][lr]``: a result, or the summary a file holds: ``median_rel_error``,
    ``n_success``, ``at_bound``: the mean fraction of pixels exactly on 0 or 1); the evidence
    for the natural search's targets (``evidence``: rows with ``network``, ``targets``,
    ``median_rel_error``, ``recognised``: digits both other networks recognise, ``chosen``:
    whether the natural search uses these targets)."""

    name: ClassVar[str] = "lesson5"
    layout: ClassVar[tuple[str, ...]] = ("networks",)
    natural: Mapping[str, Any]
    priors: Mapping[str, Any] = field(default_factory=dict)
    priors_recognised: Mapping[str, int] = field(default_factory=dict)
    priors_network: str = "resnet18"
    box: Mapping[str, Mapping[Any, Any]] = field(default_factory=dict)
    evidence: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def box_run(lr: Any, r: Any) -> dict[str, Any]:
            if isinstance(r, Mapping):
                return dict(r)
            at_bound = [v for v in _pixels(r).get("at_bound", []) if v is not None] or [np.nan]
            return {
                "lr": _float(lr),
                "median_rel_error": _float(r.median_rel_error),
                "n_success": int(r.n_success),
                "at_bound": _float(np.mean(at_bound)),
            }

        return {
            "networks": {
                n: {"natural": found if isinstance(found, Mapping) else found.to_dict()}
                for n, found in self.natural.items()
            },
            "box": {
                n: {f"{float(lr):g}": box_run(lr, r) for lr, r in by.items()}
                for n, by in self.box.items()
            },
            "evidence": jsonable(self.evidence),
            "priors": {
                "network": self.priors_network,
                "runs": {
                    label: _result(r)
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
            "box": _dicts(data.get("box") or {}, "box"),
            "evidence": list(data.get("evidence") or []),
        } | ({"priors_network": priors["network"]} if "network" in priors else {})


@dataclass
class Lesson6Metrics(_Metrics):
    """Lesson 6, the follow-up paper's methods: per network its accuracy; probability
    targets (``probability[net][label]``: an :class:`~nnspaces.inversion.InversionResult` per
    method and residual, ``not_applicable[net][method]``: why a method does not apply);
    Levenberg-Marquardt on the paper's min/max targets (``min_max[net][method]``); the random
    backward walk (``walk[net][layers]``: dicts with ``k``, ``success``, ``reasons`` and the
    :func:`~nnspaces.inversion.nullspace.diversity`); the ViT's attention heads (``heads``: rows
    with ``layer``, ``head``, ``projection``, ``shape``, ``rank``, ``condition_number``);
    the null-space dimension of every layer of each SELU network, first layer first
    (``null_dims[net]``: what the backward walk can draw in)."""

    name: ClassVar[str] = "lesson6"
    layout: ClassVar[tuple[str, ...]] = ("level", "accuracy", "probability")
    accuracy: Mapping[str, float]
    level: float
    probability: Mapping[str, Mapping[str, Any]]
    not_applicable: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    min_max: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    walk: Mapping[str, Mapping[str, dict]] = field(default_factory=dict)
    heads: list[dict] = field(default_factory=list)
    null_dims: Mapping[str, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def brief(r) -> dict[str, Any]:
            if isinstance(r, Mapping):
                return dict(r)
            return {
                "classes": list(r.classes),
                "n_success": int(r.n_success),
                "success": [bool(v) for v in r.success],
                "prob": _floats(r.prob),
                "median_prob": _float(np.median(r.prob)),
                "median_rel_error": _float(r.median_rel_error),
                "rel_error": _floats(r.rel_error),
                "seconds": _float(r.seconds),
                "steps": int(r.steps),
                "step_limit": r.settings.get("steps"),
                "polish": r.settings.get("polish"),
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
            "null_dims": {n: [int(d) for d in dims] for n, dims in self.null_dims.items()},
        }
