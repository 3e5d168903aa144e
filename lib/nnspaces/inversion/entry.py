"""One entry of the method registry (:mod:`.methods`) and its contract with
:func:`~nnspaces.inversion.invert`: a :class:`Method` says what a method can do and how it
solves; its ``solve`` gets one :class:`Problem` (the targets, the start images, the call's
settings) and returns a :class:`Solution` (the images it found), which ``invert`` measures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .equations import RESIDUALS
from .options import InvertOptions
from .solvers import PRESETS, Callback
from .targets import STARTS, check_name


def _any_model(model: nn.Module) -> None:
    """Every differentiable classifier qualifies."""


#: The yes/no properties of a method that :func:`method_names` filters on.
FLAGS = (
    "iterative",
    "takes_priors",
    "box",
    "polish",
    "fixed_start",
    "root_finder",
    "float64",
    "paper",
)


@dataclass(frozen=True)
class Method:
    """One inversion method: how it solves, what it can solve, where it applies.

    ``solver``: the name of the solver it runs (a label for tables and reports; code asks the
    flags below). ``solve(problem) -> Solution`` (:mod:`.solve`): runs the method; required.
    ``start``: its start image (the reference for ``exact``) unless the caller gives one;
    ``fixed_start``: an alias that names its start, which the caller may not change.
    ``preset``: key of ``PRESETS`` for iterative methods, else None (``iterative``).
    ``takes_priors``: weighs priors (:mod:`.priors`) into its objective. ``box``: keeps pixels
    in [0, 1] (and its result is judged so). ``polish``: without priors, Levenberg-Marquardt
    finishes the classes the first-order solver brought within
    :data:`~nnspaces.inversion.roots.HANDOFF`. ``root_finder``: solves the equations with the
    input Jacobian (each step costs one backward pass per output). ``float64``: works in
    float64 where the network allows it (SELU stacks), else float32. ``paper``: one of the
    original paper's methods (its rows are replicated as they are: quick runs keep their
    steps). ``residuals``: the equations (:data:`~nnspaces.inversion.equations.RESIDUALS`)
    it solves for probability targets. ``requires(model)`` raises a ValueError saying why the
    method does not apply.
    """

    name: str
    solver: str
    description: str
    solve: Callable[[Problem], Solution] | None = None
    start: str = "avg-img"
    preset: str | None = None
    takes_priors: bool = False
    box: bool = False
    polish: bool = False
    fixed_start: bool = False
    root_finder: bool = False
    float64: bool = False
    paper: bool = False
    residuals: tuple[str, ...] = ("scores",)
    requires: Callable[[nn.Module], object] = _any_model

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"method name {self.name!r} must be a non-empty string")
        if not callable(self.solve):
            raise ValueError(
                f"method {self.name!r} has no solve: give solve=f, f(problem) -> Solution "
                f"(got {self.solve!r})"
            )
        if not callable(self.requires):
            raise ValueError(f"method {self.name!r}: requires={self.requires!r} is not callable")
        check_name("start", self.start, STARTS)
        if self.preset is not None:
            check_name("preset", self.preset, tuple(PRESETS))
        for flag in FLAGS[1:]:
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"method {self.name!r}: {flag}={getattr(self, flag)!r} is no bool")
        if not isinstance(self.residuals, tuple) or not self.residuals:
            raise ValueError(f"method {self.name!r}: residuals={self.residuals!r} is no tuple")
        for r in self.residuals:
            check_name("residual", r, RESIDUALS)

    @property
    def iterative(self) -> bool:
        return self.preset is not None

    def applies_to(self, model: nn.Module) -> bool:
        """Whether this method can invert ``model``."""
        try:
            self.requires(model)
        except ValueError:
            return False
        return True


@dataclass
class Problem:
    """What a method's ``solve`` gets from :func:`~nnspaces.inversion.invert`.

    ``model``: the caller's network (leave it as it is: solve on a copy, see
    :class:`~nnspaces.inversion.solve.Workspace`). ``method``: the registry entry (an alias
    has its start fixed).
    ``start``: start images ``(C, *input_shape)``; ``targets``: raw-score targets ``(C, K)``
    float64 (both on the CPU; for probability targets, the scores that reach the level).
    ``classes``: the C class indices. ``options``: the call's validated settings.
    ``priors``: ``{name: weight}`` (checked; empty unless the method takes priors).
    ``data``: the training images and labels ``(x, y)``, or None. ``settings``: the result's
    settings record; a solve adds what it chose (dtype, steps, ...).
    """

    model: nn.Module
    method: Method
    start: torch.Tensor
    targets: torch.Tensor
    classes: list[int]
    options: InvertOptions
    priors: Mapping[str, float | Sequence[float]]
    data: tuple[torch.Tensor, torch.Tensor] | None
    device: torch.device
    seed: int
    callback: Callback | None
    progress: bool | None
    settings: dict

    @property
    def by_log_odds(self) -> bool:
        """Whether the call asks for one log-odds equation per class (``residual``)."""
        return self.options.residual == "log-odds"


@dataclass
class Solution:
    """What a solve found: ``images`` ``(C, *input_shape)`` on the CPU; ``steps`` taken and
    the ``history`` of ``(step, median relative error)``; ``ok`` / ``reasons`` ``(C,)`` where
    the method itself judges each class (``exact``: why a pre-image does not exist)."""

    images: torch.Tensor
    steps: int = 0
    history: list[tuple[int, float]] = field(default_factory=list)
    ok: np.ndarray | None = None
    reasons: Sequence[str] | None = None
