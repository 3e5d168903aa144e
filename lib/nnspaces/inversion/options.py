"""The settings of one :func:`~nnspaces.inversion.invert` call beyond the method:
:class:`InvertOptions`, validated on creation, and :func:`merge_options` (``options`` plus
keyword overrides such as ``steps=100``)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .equations import RESIDUALS
from .exact import HIDDEN
from .solvers import PRESETS
from .targets import PROB_LEVEL, check_fraction, check_level, check_name, check_percentiles


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


def merge_options(options: InvertOptions | None, overrides: dict) -> InvertOptions:
    """``options`` (default :class:`InvertOptions`) with the keyword ``overrides`` applied;
    a TypeError names unknown keywords and the allowed ones."""
    allowed = [f.name for f in dataclasses.fields(InvertOptions)]
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise TypeError(f"invert() got unknown options {unknown}; allowed: {', '.join(allowed)}")
    return dataclasses.replace(options or InvertOptions(), **overrides)
