"""Inverse maps: images that make a network give a chosen output.

    invert(model, "min-max", method="descent", data=data)  ->  InversionResult

:func:`invert` is a thin dispatcher: it validates the call, looks the method up in
:data:`METHODS` (the paper's composite names are aliases), makes the targets and the start
image (:mod:`.targets`), calls the method's ``solve`` (:mod:`.solve`: the solvers of
:mod:`.solvers`, :mod:`.roots` and :mod:`.exact`, with the priors of :mod:`.priors`), and
measures the images it found (:mod:`.results`). This module is also the inversion API's
front: :data:`__all__` is what ``nnspaces.inversion`` exports.

Image shapes are ``(C, *input_shape)`` (``(C, 1, 28, 28)`` for the paper's networks), outputs
and targets ``(C, K)`` with ``K`` the number of outputs. Results live on the CPU.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..data import Dataset
from ..models import model_as, n_outputs_of, network_name, refuse_judge
from ..training import predict
from .entry import Problem, Solution
from .equations import RESIDUALS, log_odds, log_odds_goal
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
    register_method,
    unregister_method,
)
from .options import InvertOptions, merge_options
from .priors import PRIORS, check_priors
from .results import InversionResult, combine_best, evaluate_images, take_rows
from .solve import Workspace
from .solvers import PRESETS, Callback, Preset
from .targets import (
    PROB_LEVEL,
    PROB_MARGIN,
    STARTS,
    TARGETS,
    ScoreStats,
    check_classes,
    check_name,
    check_targets,
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
    "Problem",
    "ScoreStats",
    "Solution",
    "Workspace",
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
    "register_method",
    "score_stats",
    "start_images",
    "take_rows",
    "unregister_method",
]


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

    Works in float64 on SELU stacks for the methods with the ``float64`` flag (``exact``, the
    root finders), else in float32, on ``device``; returns an :class:`InversionResult` (on
    the CPU).
    """
    t0 = time.perf_counter()
    refuse_judge(model, "invert")
    m = get_method(method)
    opts = merge_options(options, overrides)
    device = torch.device(device)
    m.requires(model)  # a clear error where the method does not apply
    classes = check_classes(classes, n_outputs_of(model))
    if network is not None and not isinstance(network, str):
        raise ValueError(f"network={network!r} must be a name (a string) or None")
    priors = check_priors(priors, model, rows=len(classes))
    _check_method_call(m, targets, start, priors, opts)
    by_prob = isinstance(targets, str) and targets == "probability"
    start_name = m.start if (m.fixed_start or start is None) else start
    start_name = start_name if isinstance(start_name, str) else None
    xy = _data_xy(data)
    t, x0 = _targets_and_start(
        model, method, targets, start, start_name, classes, xy, stats, priors, opts, device, seed
    )
    settings: dict = {
        "start": start_name or "given",
        "priors": priors,
        "device": str(device),
        "seed": seed,
    }
    if by_prob:
        settings |= {"level": opts.level, "residual": opts.residual}
    problem = Problem(
        model=model,
        method=m,
        start=x0,
        targets=t,
        classes=classes,
        options=opts,
        priors=priors,
        data=xy,
        device=device,
        seed=seed,
        callback=callback,
        progress=progress,
        settings=settings,
    )
    found = m.solve(problem)
    if not (isinstance(found, Solution) and found.images.shape == x0.shape):
        raise ValueError(
            f"method {method!r}: its solve must return a Solution with images of shape "
            f"{tuple(x0.shape)}; got {type(found).__name__}"
            + (f" with images {tuple(found.images.shape)}" if isinstance(found, Solution) else "")
        )
    return evaluate_images(
        model,
        found.images,
        t,
        classes,
        method=method,
        network=network or network_name(model),
        start=x0,
        tol=opts.tol,
        level=opts.level if by_prob else None,
        require_box=m.box,
        ok=found.ok,
        reasons=found.reasons,
        steps=found.steps,
        history=found.history,
        seconds=time.perf_counter() - t0,
        device=device,
        settings=settings,
    )


def _check_method_call(
    m: Method,
    targets: torch.Tensor | str,
    start: torch.Tensor | str | None,
    priors: Mapping[str, object],
    opts: InvertOptions,
) -> None:
    """A clear ValueError where the call asks ``m`` for what it does not do: priors, a start
    image where an alias fixes its own, or a residual it does not solve."""
    if priors and not m.takes_priors:
        takers = list(method_names(takes_priors=True, aliases=False))
        raise ValueError(f"priors apply to methods {takers}, not {m.name!r}")
    if m.fixed_start and start is not None:
        raise ValueError(f"method {m.name!r} names its start image; do not pass start={start!r}")
    if isinstance(start, str):
        check_name("start", start, STARTS)
    if isinstance(targets, str):
        check_name("target", targets, TARGETS)
    by_prob = isinstance(targets, str) and targets == "probability"
    residual = opts.residual
    if residual != "scores" and not (by_prob and residual in m.residuals):
        raise ValueError(
            f"residual={residual!r} solves probability targets (targets='probability') with "
            f"the methods {', '.join(method_names(residual=residual, aliases=False))}; not "
            f"targets {targets if isinstance(targets, str) else 'given as scores'!r} with "
            f"method {m.name!r}"
        )
    if residual not in m.residuals:
        raise ValueError(
            f"method {m.name!r} solves residuals {m.residuals}, not residual={residual!r}"
        )


def _targets_and_start(
    model: nn.Module,
    method: str,
    targets: torch.Tensor | str,
    start: torch.Tensor | str | None,
    start_name: str | None,
    classes: list[int],
    xy: tuple[torch.Tensor, torch.Tensor] | None,
    stats: ScoreStats | None,
    priors: Mapping[str, object],
    opts: InvertOptions,
    device: torch.device,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The raw-score targets ``(C, K)`` float64 and the start images ``(C, *input_shape)``
    (on the CPU) of one call: ``start_name`` made from ``xy`` (else the given ``start``);
    named targets from ``stats`` (computed from ``xy`` where not given); probability
    targets from the start image's own outputs."""
    by_prob = isinstance(targets, str) and targets == "probability"
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
        t = check_targets(targets, len(classes), n_outputs_of(model))
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
    return t, x0.cpu()
