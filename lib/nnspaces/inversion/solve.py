"""How each method solves: the ``solve`` callables of the method registry (:mod:`.methods`).

:func:`~nnspaces.inversion.invert` validates a call, makes the targets and the start image,
and hands them to the method's ``solve`` as one :class:`Problem`; the solve returns a
:class:`Solution` (the images it found, on the CPU), which ``invert`` measures. A new method
is a function ``solve(problem) -> Solution`` in a registry entry; :class:`Workspace` gives an
iterative one what the built-in solvers share (the network's working copy in its dtype, on
its device, specialised for the input size; the start and the equations there; the preset's
steps and step size; the stopping tolerance).

==============================  ===============================================================
solve                           what it runs
==============================  ===============================================================
:func:`solve_start`             nothing: the start image is the answer
:func:`solve_exact`             :func:`~nnspaces.inversion.exact.exact_images` (SELU stacks)
:func:`solve_training`          :func:`~nnspaces.inversion.solvers.first_order` on the MSE
:func:`solve_newton`            :func:`~nnspaces.inversion.roots.newton`
:func:`solve_lm`                :func:`~nnspaces.inversion.roots.levenberg_marquardt`
:func:`solve_descent`           ``first_order`` on the relative error plus priors, finished
                                by :func:`~nnspaces.inversion.roots.polish` (method ``polish``)
==============================  ===============================================================
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ..models import frozen, full_float32, is_selu_stack, model_as
from .entry import Problem, Solution
from .equations import LogOddsEquations, log_odds_goal
from .exact import exact_images, selu_inverter
from .priors import PriorTerms
from .roots import HANDOFF, levenberg_marquardt, newton, polish
from .solvers import PRESETS, Equations, Preset, first_order
from .specialise import bn_affine, specialised
from .targets import class_averages


class Workspace:
    """What the iterative solves share, made from a :class:`Problem`: a method with the
    ``float64`` flag works in float64 on SELU stacks, every other in float32.

    ``model``: the working copy (dtype, device; specialised for the input size unless
    ``options.specialise`` is False or a folded BatchNorm could not be undone for the ``bn``
    prior); ``folded``: the BatchNorms folded into it, or None. ``start``: the start images
    there; ``equations``: the raw-score targets there, or one log-odds equation per class.
    ``preset``, ``steps``, ``lr``: the method's preset with the call's overrides.
    ``stop_tol``: half the tolerance (float32 against the float64 measurement: a margin of
    2). Records its choices in ``problem.settings``.
    """

    def __init__(self, p: Problem) -> None:
        opts = p.options
        self.preset: Preset = PRESETS[opts.preset or p.method.preset]
        self.steps: int = opts.steps or self.preset.steps
        self.lr: float = opts.lr or self.preset.lr
        float64 = p.method.float64 and is_selu_stack(p.model)
        self.dtype = torch.float64 if float64 else torch.float32
        work = model_as(p.model, self.dtype, p.device)
        self.folded = None
        if opts.specialise:
            fast = specialised(work, tuple(p.start.shape[1:]))
            # the bn prior needs every folded BatchNorm's scale to undo it (none is zero)
            if "bn" not in p.priors or all(
                (bn_affine(bn)[0] != 0).all() for bn in fast.bn_of.values()
            ):
                work, self.folded = fast.model, fast.bn_of
                p.settings["specialised"] = fast.summary()
        self.model: nn.Module = work
        self.start = p.start.to(p.device, self.dtype)
        self.equations: Equations = p.targets.to(p.device, self.dtype)
        if p.by_log_odds:  # one equation per class on its log-odds, instead of the K scores
            self.equations = LogOddsEquations(p.classes, log_odds_goal(opts.level), device=p.device)
        p.settings |= {
            "steps": self.steps,
            "lr": self.lr,
            "optimizer": self.preset.optimizer,
            "lr_final": self.preset.lr_final,
            "dtype": str(self.dtype).removeprefix("torch."),
        }
        self.stop_tol = opts.tol / 2
        self.loop = dict(
            callback=p.callback, callback_every=opts.callback_every, progress=p.progress
        )

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Gradients for the images only, in full float32 (no TF32): wrap the solver."""
        with frozen(self.model), full_float32():
            yield

    def solution(self, x: torch.Tensor, steps: int, history: list) -> Solution:
        return Solution(x.cpu(), steps=steps, history=history)


def solve_start(p: Problem) -> Solution:
    """The start image itself (the paper's plain rows)."""
    return Solution(p.start)


def solve_exact(p: Problem) -> Solution:
    """Exact pre-images through the SELU stack's layers, closest to the start image."""
    opts = p.options
    img, ok, reasons, path = exact_images(
        selu_inverter(p.model),
        p.targets,
        p.start,
        margin=opts.margin,
        hidden=opts.hidden,
        tol=opts.tol,
    )
    p.settings |= {"margin": opts.margin, "dtype": "float64", "hidden": path}
    return Solution(img, ok=ok, reasons=reasons)


def solve_newton(p: Problem) -> Solution:
    """Gauss-Newton root finding; in float64 it goes on to 1e-12 (quadratic convergence)."""
    w = Workspace(p)
    stop_tol = 1e-12 if w.dtype == torch.float64 else w.stop_tol
    with w.running():
        x, done, hist = newton(
            w.model, w.start, w.equations, steps=w.steps, stop_tol=stop_tol, **w.loop
        )
    return w.solution(x, done, hist)


def solve_lm(p: Problem) -> Solution:
    """Levenberg-Marquardt root finding (inside [0, 1] for a ``box`` method)."""
    w = Workspace(p)
    with w.running():
        x, done, hist = levenberg_marquardt(
            w.model,
            w.start,
            w.equations,
            box=p.method.box,
            steps=w.steps,
            stop_tol=w.stop_tol,
            **w.loop,
        )
    return w.solution(x, done, hist)


def solve_training(p: Problem) -> Solution:
    """The paper's +training: SGD on the per-class MSE, keeping its last iterate."""
    return _first_order(p, loss="mse")


def solve_descent(p: Problem) -> Solution:
    """Adam on the relative squared error plus weighted priors (projected onto [0, 1] for a
    ``box`` method); without priors, a ``polish`` method hands the classes within
    :data:`~nnspaces.inversion.roots.HANDOFF` to Levenberg-Marquardt."""
    return _first_order(p, loss="rel")


def _first_order(p: Problem, *, loss: str) -> Solution:
    m = p.method
    w = Workspace(p)
    averages = class_averages(*p.data, p.classes) if "l2-avg" in p.priors else None
    handoff = m.polish and p.options.polish and not p.priors
    with w.running():
        terms = PriorTerms(
            w.model,
            p.priors,
            averages.to(p.device, w.dtype) if averages is not None else None,
            device=p.device,
            folded=w.folded,
        )
        x, done, hist = first_order(
            w.model,
            w.start,
            w.equations,
            preset=w.preset,
            lr=w.lr,
            loss=loss,
            priors=terms,
            box=m.box,
            desc=m.name,
            steps=w.steps,
            stop_tol=max(HANDOFF, w.stop_tol) if handoff else w.stop_tol,
            **w.loop,
        )
        if handoff:
            x, more, n_cls = polish(
                w.model,
                x,
                w.equations,
                box=m.box,
                steps_before=done,
                history=hist,
                stop_tol=w.stop_tol,
                **w.loop,
            )
            p.settings["polish"] = {"handoff": HANDOFF, "classes": n_cls, "steps": more}
            done += more
    return w.solution(x, done, hist)
