"""The inversion methods: one frozen description each, in one table.

A method is a solver with its settings: which start image it uses by default, which preset
(:data:`~nnspaces.inversion.solvers.PRESETS`) drives it, whether it iterates, whether it takes
priors, and which models it applies to. :func:`~nnspaces.inversion.invert`, the widgets, the
comparison and the benchmark all ask this table. The paper's composite names (``avg-img``,
``min-img+training``, ...) are aliases: a method with its start image fixed.

==========  =====================================================================================
method      what it does
==========  =====================================================================================
start       the start image itself, no optimisation (the paper's plain rows)
training    the paper's "+training": SGD on the image against the MSE, lr 1e-4, 100 steps
exact       SELU stacks only: walk backward through the layers' vector spaces, each pre-image
            closest to the start image (the reference)
newton      minimum-norm Gauss-Newton root finding with the input Jacobian and a line search
lm          Levenberg-Marquardt root finding (the follow-up paper's solver), adaptive damping
lm-box      the same inside [0, 1]: pixels held at a bound, trials clipped to the box
descent     Adam on the relative squared output error (plus optional priors), decaying step;
            without priors, a class within 1e-2 is finished by Levenberg-Marquardt steps
box         the same, projected onto pixels in [0, 1] after every step (finished by lm-box)
==========  =====================================================================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ..models import selu_stack_layers
from .solvers import PRESETS
from .targets import PAPER_STARTS


def _any_model(model: nn.Module) -> None:
    """Every differentiable classifier qualifies."""


@dataclass(frozen=True)
class Method:
    """One inversion method.

    ``solver``: the code that runs it (``none``, ``training``, ``exact``, ``newton``, ``lm``,
    ``descent``, ``box``). ``start``: its start image (the reference for ``exact``) unless
    the caller gives one; ``fixed_start``: an alias that names its start, which the caller
    may not change. ``preset``: key of ``PRESETS`` for iterative methods, else None.
    ``polish``: without priors, Levenberg-Marquardt finishes the classes the first-order
    solver brought within :data:`~nnspaces.inversion.roots.HANDOFF`.
    ``requires(model)`` raises a ValueError saying why the method does not apply.
    """

    name: str
    solver: str
    description: str
    start: str = "avg-img"
    preset: str | None = None
    takes_priors: bool = False
    box: bool = False
    polish: bool = False
    fixed_start: bool = False
    requires: Callable[[nn.Module], object] = _any_model

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


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("start", "none", "the start image itself, no optimisation"),
        Method(
            "training",
            "training",
            "the paper's +training: SGD on the image against the MSE",
            preset="original",
        ),
        Method(
            "exact",
            "exact",
            "exact pre-image from the layers' vector spaces, closest to the start image",
            requires=selu_stack_layers,
        ),
        Method(
            "newton", "newton", "Gauss-Newton root finding on the input Jacobian", preset="newton"
        ),
        Method("lm", "lm", "Levenberg-Marquardt root finding, adaptive damping", preset="lm"),
        Method("lm-box", "lm", "Levenberg-Marquardt inside [0, 1]", preset="lm", box=True),
        Method(
            "descent",
            "descent",
            "Adam on the relative output error, decaying step, finished by Levenberg-Marquardt",
            preset="descent",
            takes_priors=True,
            polish=True,
        ),
        Method(
            "box",
            "box",
            "Adam projected onto pixels in [0, 1], finished by Levenberg-Marquardt in the box",
            preset="box",
            takes_priors=True,
            box=True,
            polish=True,
        ),
    )
}

#: The paper's composite names: ``<start>`` is ``start`` from that image, ``<start>+training``
#: is ``training`` from it.
ALIASES: dict[str, tuple[str, str]] = {
    **{s: ("start", s) for s in PAPER_STARTS},
    **{f"{s}+training": ("training", s) for s in PAPER_STARTS},
}

#: What the comparison, the benchmark and the explorer run, in this order: the paper's six,
#: then this library's, and the follow-up paper's Levenberg-Marquardt.
COMPARED: tuple[str, ...] = (*ALIASES, "exact", "newton", "lm", "lm-box", "descent", "box")


def method_names() -> tuple[str, ...]:
    """Every name :func:`get_method` accepts: the methods, then the aliases."""
    return (*METHODS, *ALIASES)


def get_method(name: str) -> Method:
    """The method called ``name`` (an alias comes back with its start fixed), or a clear
    ValueError naming the allowed names."""
    if isinstance(name, str) and name in METHODS:
        return METHODS[name]
    if isinstance(name, str) and name in ALIASES:
        base, start = ALIASES[name]
        return dataclasses.replace(METHODS[base], name=name, start=start, fixed_start=True)
    raise ValueError(f"unknown method {name!r}; allowed: {', '.join(method_names())}")


def applicable(model: nn.Module, names: tuple[str, ...] = COMPARED) -> list[str]:
    """The methods among ``names`` that apply to ``model``."""
    return [n for n in names if get_method(n).applies_to(model)]


#: Solver steps in quick runs (smoke tests): first-order solvers take at most
#: ``QUICK_STEPS``, root finders (each step costs one backward pass per output) at most
#: ``QUICK_ROOT_STEPS``; the paper's "+training" keeps its own 100.
QUICK_STEPS = 60
QUICK_ROOT_STEPS = 8


def quick_steps(name: str) -> int | None:
    """The steps method ``name`` takes in a quick run; None for methods that do not iterate."""
    m = get_method(name)
    if not m.iterative:
        return None
    steps = PRESETS[m.preset].steps
    if m.solver == "training":
        return steps
    return min(steps, QUICK_ROOT_STEPS if m.solver in ("newton", "lm") else QUICK_STEPS)
