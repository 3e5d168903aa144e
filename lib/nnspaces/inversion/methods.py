"""The inversion methods: one registry entry each, which both describes a method and runs it.

A method is a solver with its settings: how it solves (``solve``, :mod:`.solve`), which start
image it uses by default, which preset (:data:`~nnspaces.inversion.solvers.PRESETS`) drives
it, what it can solve, and which models it applies to. :func:`~nnspaces.inversion.invert`
looks the name up and calls the entry's ``solve``; the widgets, the comparison and the
benchmark ask the entries' flags through :func:`method_names` (``method_names(residual=
"log-odds")``, ``method_names(root_finder=True)``), never a list of names. A new method is
one :func:`register_method` call. The paper's composite names (``avg-img``,
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

from torch import nn

from ..models import selu_stack_layers
from .entry import FLAGS, Method
from .equations import RESIDUALS
from .solve import (
    solve_descent,
    solve_exact,
    solve_lm,
    solve_newton,
    solve_start,
    solve_training,
)
from .solvers import PRESETS
from .targets import PAPER_STARTS, check_name

#: The registered methods by name, in registration order (:func:`register_method`).
METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add ``method`` to :data:`METHODS`: :func:`~nnspaces.inversion.invert` runs it by name
    and :func:`method_names` lists it. A name already taken (a method or an alias) is a
    ValueError; so is an entry that is no :class:`Method` (a Method without ``solve`` cannot be
    made). Returns the entry."""
    if not isinstance(method, Method):
        raise ValueError(f"register_method() takes a Method, not {method!r}")
    if method.name in METHODS or method.name in ALIASES:
        raise ValueError(f"method {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


def unregister_method(name: str) -> Method:
    """Remove the method ``name`` from :data:`METHODS` (a ValueError names the registered
    ones); returns its entry."""
    check_name("registered method", name, tuple(METHODS))
    return METHODS.pop(name)


#: The paper's composite names: ``<start>`` is ``start`` from that image, ``<start>+training``
#: is ``training`` from it.
ALIASES: dict[str, tuple[str, str]] = {
    **{s: ("start", s) for s in PAPER_STARTS},
    **{f"{s}+training": ("training", s) for s in PAPER_STARTS},
}

_ROOTS = dict(root_finder=True, float64=True, residuals=RESIDUALS)
for _m in (
    Method(
        "start",
        "none",
        "the start image itself, no optimisation",
        solve=solve_start,
        paper=True,
    ),
    Method(
        "training",
        "training",
        "the paper's +training: SGD on the image against the MSE",
        solve=solve_training,
        preset="original",
        paper=True,
    ),
    Method(
        "exact",
        "exact",
        "exact pre-image from the layers' vector spaces, closest to the start image",
        solve=solve_exact,
        float64=True,
        requires=selu_stack_layers,
    ),
    Method(
        "newton",
        "newton",
        "Gauss-Newton root finding on the input Jacobian",
        solve=solve_newton,
        preset="newton",
        **_ROOTS,
    ),
    Method(
        "lm",
        "lm",
        "Levenberg-Marquardt root finding, adaptive damping",
        solve=solve_lm,
        preset="lm",
        **_ROOTS,
    ),
    Method(
        "lm-box",
        "lm",
        "Levenberg-Marquardt inside [0, 1]",
        solve=solve_lm,
        preset="lm",
        box=True,
        **_ROOTS,
    ),
    Method(
        "descent",
        "descent",
        "Adam on the relative output error, decaying step, finished by Levenberg-Marquardt",
        solve=solve_descent,
        preset="descent",
        takes_priors=True,
        polish=True,
        residuals=RESIDUALS,
    ),
    Method(
        "box",
        "box",
        "Adam projected onto pixels in [0, 1], finished by Levenberg-Marquardt in the box",
        solve=solve_descent,
        preset="box",
        takes_priors=True,
        box=True,
        polish=True,
        residuals=RESIDUALS,
    ),
):
    register_method(_m)

#: What the comparison, the benchmark and the explorer run, in this order: the paper's six,
#: then this library's, and the follow-up paper's Levenberg-Marquardt.
COMPARED: tuple[str, ...] = (*ALIASES, "exact", "newton", "lm", "lm-box", "descent", "box")


def method_names(
    *, residual: str | None = None, aliases: bool = True, **flags: bool
) -> tuple[str, ...]:
    """The names :func:`get_method` accepts (the methods in registration order, then the
    aliases unless ``aliases=False``) whose entries have every one of ``flags`` (keys of
    :data:`FLAGS`, e.g. ``iterative=True``, ``paper=False``) and, given ``residual``, solve
    that residual (``"log-odds"``: one equation per class on its log-odds).

    With no arguments: every name :func:`get_method` accepts."""
    for k, v in flags.items():
        check_name("method flag", k, FLAGS)
        if not isinstance(v, bool):
            raise ValueError(f"method flag {k}={v!r} must be True or False")
    if residual is not None:
        check_name("residual", residual, RESIDUALS)
    names = (*METHODS, *ALIASES) if aliases else tuple(METHODS)

    def wanted(m: Method) -> bool:
        if residual is not None and residual not in m.residuals:
            return False
        return all(getattr(m, k) == v for k, v in flags.items())

    return tuple(n for n in names if wanted(get_method(n)))


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
    if m.paper:
        return steps
    return min(steps, QUICK_ROOT_STEPS if m.root_finder else QUICK_STEPS)
