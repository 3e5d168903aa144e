"""Inverse maps: images that make a network give a chosen output.

    invert(model, "min-max", method="descent", data=data)  ->  InversionResult

:func:`invert` is a thin dispatcher: it looks the method up in :data:`METHODS` (the paper's
composite names are aliases), makes the targets and the start image (:mod:`.targets`), runs
the method's solver (:mod:`.solvers`, :mod:`.roots`, or :mod:`.exact` for ``exact``)
with its priors (:mod:`.priors`), and measures the images it found (:mod:`.results`).

Image shapes are ``(C, *input_shape)`` (``(C, 1, 28, 28)`` for the paper's networks), outputs
and targets ``(C, K)`` with ``K`` the number of outputs. Results live on the CPU.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..data import Dataset
from ..models import frozen, full_float32, is_selu_stack, model_as, n_outputs_of, network_name
from ..training import predict
from .equations import RESIDUALS, LogOddsEquations, log_odds, log_odds_goal
from .exact import HIDDEN, exact_images, selu_inverter
from .methods import (
    ALIASES,
    COMPARED,
    METHODS,
    QUICK_ROOT_STEPS,
    QUICK_STEPS,
    Method,
    applicable,
    get_method,
    method_names,
    quick_steps,
)
from .priors import PRIORS, PriorTerms, check_priors
from .results import InversionResult, combine_best, evaluate_images, take_rows
from .roots import HANDOFF, levenberg_marquardt, newton, polish
from .solvers import PRESETS, Callback, Preset, first_order
from .specialise import bn_affine, specialised
from .targets import (
    PROB_LEVEL,
    PROB_MARGIN,
    STARTS,
    TARGETS,
    ScoreStats,
    check_classes,
    check_fraction,
    check_level,
    check_name,
    check_percentiles,
    check_targets,
    class_averages,
    make_targets,
    probability_targets,
    score_stats,
    start_images,
)

__all__ = [
    "ALIASES",
    "COMPARED",
    "METHODS",
    "PRESETS",
    "PRIORS",
    "PROB_LEVEL",
    "PROB_MARGIN",
    "QUICK_ROOT_STEPS",
    "QUICK_STEPS",
    "RESIDUALS",
    "STARTS",
    "TARGETS",
    "InversionResult",
    "InvertOptions",
    "Method",
    "Preset",
    "ScoreStats",
    "applicable",
    "combine_best",
    "evaluate_images",
    "get_method",
    "invert",
    "log_odds",
    "log_odds_goal",
    "make_targets",
    "method_names",
    "probability_targets",
    "quick_steps",
    "score_stats",
    "start_images",
    "take_rows",
]


def _positive_int(label: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{label}={value!r} must be an integer >= 1")


@dataclass(frozen=True)
class InvertOptions:
    """The settings of one :func:`invert` call beyond the method, validated on creation.

    ``preset``: a key of :data:`PRESETS` (default: the method's own); ``steps`` / ``lr``
    override it. ``tol``: a class succeeds when its relative output error is <= ``tol``.
    ``level``: the class probability ``probability`` targets ask for (a class succeeds when
    it reaches it). ``residual`` (:data:`RESIDUALS`): what the iterative solvers solve for
    probability targets, the raw-score targets (``scores``, K equations per class) or one
    equation per class on its log-odds (``log-odds``, :mod:`.equations`). ``percentiles``:
    the low / high percentiles of ``percentile`` targets.
    ``fraction``: the share of class images ``avg-min-img`` averages. ``margin``: how far
    inside SELU's range ``exact`` keeps hidden values; ``hidden``: where ``exact`` takes them
    from (see :func:`nnspaces.inversion.exact.exact_images`). ``callback_every``: steps between
    callbacks. Iterative solvers stop once every class is within half of ``tol``, except
    ``newton`` in float64 (SELU stacks), which goes on to 1e-12 to show its quadratic
    convergence. ``specialise``: the solvers run the network's equivalent copy for this input
    size (:mod:`nnspaces.inversion.specialise`; the ``bn`` prior reads the statistics of a folded
    BatchNorm's input from the convolution it was folded into); False runs the network as it
    is. ``polish``: ``descent`` and ``box`` without priors hand the classes Adam brought
    within 1e-2 to Levenberg-Marquardt (:func:`~nnspaces.inversion.roots.polish`); False
    keeps Adam to the end.
    """

    preset: str | None = None
    steps: int | None = None
    lr: float | None = None
    tol: float = 1e-4
    level: float = PROB_LEVEL
    residual: str = "scores"
    percentiles: tuple[float, float] = (25.0, 75.0)
    fraction: float = 0.25
    margin: float = 1e-3
    hidden: str = "auto"
    callback_every: int = 10
    specialise: bool = True
    polish: bool = True

    def __post_init__(self) -> None:
        if self.preset is not None:
            check_name("preset", self.preset, tuple(PRESETS))
        if self.steps is not None:
            _positive_int("steps", self.steps)
        _positive_int("callback_every", self.callback_every)
        for flag in ("specialise", "polish"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag}={getattr(self, flag)!r} must be True or False")
        lr = self.lr
        if lr is not None and not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr={lr!r} must be a finite number > 0")
        if not (isinstance(self.tol, int | float) and self.tol > 0):
            raise ValueError(f"tol={self.tol!r} must be a number > 0")
        check_level(self.level)
        check_name("residual", self.residual, RESIDUALS)
        check_percentiles(self.percentiles)
        check_fraction(self.fraction)
        if not self.margin > 0:
            raise ValueError(f"margin={self.margin!r} must be > 0")
        check_name("hidden", self.hidden, HIDDEN)


#: The solvers that solve equations other than raw scores (``residual="log-odds"``).
_LOG_ODDS_SOLVERS = ("newton", "lm", "descent", "box")


def _options(options: InvertOptions | None, overrides: dict) -> InvertOptions:
    allowed = [f.name for f in dataclasses.fields(InvertOptions)]
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise TypeError(f"invert() got unknown options {unknown}; allowed: {', '.join(allowed)}")
    return dataclasses.replace(options or InvertOptions(), **overrides)


def _data_xy(data: Dataset | tuple | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    if isinstance(data, Dataset):
        return data.x_train, data.y_train
    return None if data is None else tuple(data)


def invert(
    model: nn.Module,
    targets: torch.Tensor | str,
    *,
    method: str,
    start: torch.Tensor | str | None = None,
    classes: Sequence[int] | int | None = None,
    data: Dataset | tuple[torch.Tensor, torch.Tensor] | None = None,
    stats: ScoreStats | None = None,
    priors: Mapping[str, float | Sequence[float]] | None = None,
    network: str | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    callback: Callback | None = None,
    progress: bool | None = None,
    options: InvertOptions | None = None,
    **overrides,
) -> InversionResult:
    """Images that make ``model`` output ``targets``, by ``method`` (see :data:`METHODS`;
    the paper's composite names such as ``"min-img+training"`` are aliases).

    ``targets``: ``(C, K)`` tensor (one row per class in ``classes``, default all K), or a
    name from :data:`TARGETS` computed from ``stats`` / ``data``. ``start``: ``(C,
    *input_shape)`` images or a name from :data:`STARTS` (``data`` needed); default the
    method's own (``avg-img``); ``exact`` returns the pre-images closest to it. ``data``: a
    :class:`~nnspaces.data.Dataset` (training split used) or ``(x, y)``. ``priors``:
    ``{name: weight}`` from :data:`PRIORS`, for methods that take them; a weight may be a
    sequence of one weight per class row (several runs in one batch:
    :func:`nnspaces.inversion.natural.invert_runs`). ``network`` labels the result (default
    :func:`nnspaces.models.network_name`). ``callback(step, median_rel_error)`` runs during
    iterative methods; returning False stops them. ``options`` (or keyword ``overrides`` such
    as ``steps=100``): :class:`InvertOptions`.

    Works in float64 for ``exact`` and for ``newton`` on SELU stacks, else in float32, on
    ``device``; returns an :class:`InversionResult` (on the CPU).
    """
    t0 = time.perf_counter()
    m = get_method(method)
    opts = _options(options, overrides)
    device = torch.device(device)
    m.requires(model)  # a clear error where the method does not apply
    n_out = n_outputs_of(model)
    classes = check_classes(classes, n_out)
    if network is not None and not isinstance(network, str):
        raise ValueError(f"network={network!r} must be a name (a string) or None")
    network = network or network_name(model)
    priors = check_priors(priors, model, rows=len(classes))
    if priors and not m.takes_priors:
        takers = [k for k, v in METHODS.items() if v.takes_priors]
        raise ValueError(f"priors apply to methods {takers}, not {method!r}")
    if m.fixed_start and start is not None:
        raise ValueError(f"method {method!r} names its start image; do not pass start={start!r}")
    if isinstance(start, str):
        check_name("start", start, STARTS)
    if isinstance(targets, str):
        check_name("target", targets, TARGETS)
    by_log_odds = opts.residual == "log-odds"
    if by_log_odds and not (targets == "probability" and m.solver in _LOG_ODDS_SOLVERS):
        raise ValueError(
            "residual='log-odds' solves probability targets (targets='probability') with the "
            f"solvers {', '.join(_LOG_ODDS_SOLVERS)}; not targets "
            f"{targets if isinstance(targets, str) else 'given as scores'!r} with method "
            f"{method!r} (solver {m.solver!r})"
        )

    xy = _data_xy(data)
    start_name = m.start if (m.fixed_start or start is None) else start
    start_name = start_name if isinstance(start_name, str) else None
    by_prob = targets == "probability"
    if by_prob and start_name in ("min-img", "avg-min-img"):
        raise ValueError(
            f"start {start_name!r} is chosen by its distance to the targets, but probability "
            "targets are made from the start image; use start 'avg-img' or give images"
        )
    needs_stats = (isinstance(targets, str) and not by_prob) or start_name in (
        "min-img",
        "avg-min-img",
    )
    if (needs_stats or start_name or "l2-avg" in priors) and xy is None:
        raise ValueError(
            f"method {method!r} with start {start_name!r} / named targets / 'l2-avg' needs "
            "data=Dataset or (x, y)"
        )
    if needs_stats and stats is None:
        stats = score_stats(model, *xy, device=device)
    if by_prob:
        t = None  # made from the start image's outputs below
    elif isinstance(targets, str):
        t = make_targets(stats, targets, classes, percentiles=opts.percentiles)
    else:
        t = check_targets(targets, len(classes), n_out)
    if start_name is not None:
        x0 = start_images(
            start_name,
            *xy,
            t,
            classes=classes,
            stats=stats,
            fraction=opts.fraction,
            seed=seed,
        )
    else:
        x0 = torch.as_tensor(start).detach()
        if x0.shape[0] != len(classes):
            raise ValueError(f"{x0.shape[0]} start images for {len(classes)} classes")
    if by_prob:
        z0 = predict(model_as(model, torch.float64, device), x0.double(), device=device)
        t = probability_targets(z0, classes, opts.level)
    x0 = x0.cpu()
    settings: dict = {
        "start": start_name or "given",
        "priors": priors,
        "device": str(device),
        "seed": seed,
    }
    if by_prob:
        settings |= {"level": opts.level, "residual": opts.residual}
    measure = dict(
        network=network,
        start=x0,
        tol=opts.tol,
        level=opts.level if by_prob else None,
        device=device,
        settings=settings,
    )

    if m.solver == "none":
        return evaluate_images(
            model, x0, t, classes, method=method, seconds=time.perf_counter() - t0, **measure
        )
    if m.solver == "exact":
        img, ok, reasons, path = exact_images(
            selu_inverter(model), t, x0, margin=opts.margin, hidden=opts.hidden, tol=opts.tol
        )
        settings |= {"margin": opts.margin, "dtype": "float64", "hidden": path}
        seconds = time.perf_counter() - t0
        return evaluate_images(
            model,
            img,
            t,
            classes,
            method=method,
            ok=ok,
            reasons=reasons,
            seconds=seconds,
            **measure,
        )

    averages = class_averages(*xy, classes) if "l2-avg" in priors else None
    preset = PRESETS[opts.preset or m.preset]
    steps, lr = opts.steps or preset.steps, opts.lr or preset.lr
    root = m.solver in ("newton", "lm")
    dtype = torch.float64 if (root and is_selu_stack(model)) else torch.float32
    work = model_as(model, dtype, device)
    folded = None
    if opts.specialise:
        fast = specialised(work, tuple(x0.shape[1:]))
        # the bn prior needs every folded BatchNorm's scale to undo it (none is zero)
        if "bn" not in priors or all((bn_affine(bn)[0] != 0).all() for bn in fast.bn_of.values()):
            work, folded = fast.model, fast.bn_of
            settings["specialised"] = fast.summary()
    xs, tt = x0.to(device, dtype), t.to(device, dtype)
    if by_log_odds:  # one equation per class on its log-odds, instead of the K raw scores
        tt = LogOddsEquations(classes, log_odds_goal(opts.level), device=device)
    settings |= {
        "steps": steps,
        "lr": lr,
        "optimizer": preset.optimizer,
        "lr_final": preset.lr_final,
        "dtype": str(dtype).removeprefix("torch."),
    }
    common = dict(
        steps=steps,
        callback=callback,
        callback_every=opts.callback_every,
        progress=progress,
        # Newton in float64 goes on to the rounding floor; everything else stops once every
        # class is within half the tolerance (float32 against the float64 measurement: a
        # margin of 2)
        stop_tol=1e-12 if m.solver == "newton" and dtype == torch.float64 else opts.tol / 2,
    )
    with frozen(work), full_float32():
        if m.solver == "newton":
            x, done, hist = newton(work, xs, tt, **common)
        elif m.solver == "lm":
            x, done, hist = levenberg_marquardt(work, xs, tt, box=m.box, **common)
        else:
            terms = PriorTerms(
                work,
                priors,
                averages.to(device, dtype) if averages is not None else None,
                device=device,
                folded=folded,
            )
            handoff = m.polish and opts.polish and not priors
            x, done, hist = first_order(
                work,
                xs,
                tt,
                preset=preset,
                lr=lr,
                loss="mse" if m.solver == "training" else "rel",
                priors=terms,
                box=m.box,
                desc=method,
                **(common | {"stop_tol": max(HANDOFF, common["stop_tol"])}) if handoff else common,
            )
            if handoff:
                x, more, n_cls = polish(
                    work,
                    x,
                    tt,
                    box=m.box,
                    steps_before=done,
                    history=hist,
                    **{k: v for k, v in common.items() if k != "steps"},
                )
                settings["polish"] = {"handoff": HANDOFF, "classes": n_cls, "steps": more}
                done += more
    return evaluate_images(
        model,
        x.cpu(),
        t,
        classes,
        method=method,
        require_box=m.box,
        steps=done,
        history=hist,
        seconds=time.perf_counter() - t0,
        **measure,
    )
