"""Root finders on the input Jacobian: Gauss-Newton and Levenberg-Marquardt.

Batched over classes (in eval mode the images do not interact), on the device of the model
they get:

* :func:`newton`: minimum-norm Gauss-Newton root finding ``x += J^+ (t - f(x))`` with the
  input Jacobian and an Armijo line search.
* :func:`levenberg_marquardt`: the follow-up paper's damped version of it, unconstrained or
  inside [0, 1].
* :func:`polish`: Levenberg-Marquardt steps that finish what a first-order solver
  (:mod:`.solvers`) brought within :data:`HANDOFF` (``descent`` and ``box`` end this way).

Input Jacobians come from K backward passes over the batch (:func:`jacobian`): on ResNet18
that is several times faster than ``torch.func.vmap`` over ``vjp``, which wins only on the
small SELU stacks. A class whose residual has stalled stops (:data:`ROOT_STALL_WINDOW`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..progress import finish, progress_bar
from .solvers import Callback, Equations, as_equations, report_step

#: A class that Adam brought within this relative error leaves its batch and is finished by
#: at most ``POLISH_STEPS`` Levenberg-Marquardt steps (:func:`polish`). Measured on the trained
#: ResNet18 (ten classes, min/max targets, 2 CPU cores): Adam needs 47 steps to bring every
#: class within 1e-2 and about 100 more to reach 5e-5; from 1e-2 Levenberg-Marquardt takes 3
#: (inside the box, where held pixels slow it, ``lm-box`` takes up to the ten).
HANDOFF = 1e-2
POLISH_STEPS = 10

#: The root finders' rule: a class whose residual norm fell by less than ``ROOT_STALL_DROP``
#: over the last ``ROOT_STALL_WINDOW`` steps has stalled and stops. Measured (every class's
#: error at every step, the four trained networks, min/max and probability targets): the
#: classes that reach their targets fall by 5% or more over every 10 steps (the slowest,
#: ``newton`` on fcnn5); the ViT's stop falling after 10 to 25 of their 80 or 30 steps.
ROOT_STALL_WINDOW = 10
ROOT_STALL_DROP = 0.01


def jacobian(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs ``(C, K)`` and input Jacobians ``(C, K, n)`` of independent images ``x``
    (``model``: a network or any function of a batch that treats its rows independently).

    One forward pass and K backward passes (one per output row, summed over the batch: the
    images do not interact in eval mode). Nothing is kept between calls.
    """
    xg = x.detach().requires_grad_(True)
    out = model(xg)
    K = out.shape[1]
    rows = []
    for j in range(K):
        (g,) = torch.autograd.grad(out[:, j].sum(), xg, retain_graph=j < K - 1)
        rows.append(g.reshape(len(x), -1))
    return out.detach(), torch.stack(rows, 1)


def newton(
    model: nn.Module,
    start: torch.Tensor,
    t: Equations,
    *,
    steps: int,
    callback: Callback | None,
    callback_every: int,
    progress: bool | None,
    stop_tol: float,
    max_halvings: int = 12,
) -> tuple[torch.Tensor, int, list]:
    """Minimum-norm Gauss-Newton root finding, batched over classes.

    Each step solves ``J dx = t - f(x)`` for the smallest ``dx``, ``dx = J^T (J J^T)^{-1} r``
    (``J`` the ``(K, n)`` input Jacobian; a 1e-10 relative Tikhonov term only guards the
    ``K x K`` solve), then halves the step until the residual norm drops (Armijo, at most
    ``max_halvings`` times; a class whose step cannot improve stays where it is). The search
    starts at twice the step the class took last (at most the full step), and each trial
    runs only the classes still searching, as each Jacobian only the unfinished ones. On
    smooth SELU networks this converges quadratically; on piecewise-linear (ReLU) networks
    steps cross region boundaries and the line search shortens them, so it may stall: a class
    whose residual falls by less than :data:`ROOT_STALL_DROP` over :data:`ROOT_STALL_WINDOW`
    steps stops there.
    """
    C = len(start)
    x = start.detach().clone()
    eq, rows = as_equations(t), slice(None)
    tn = eq.norm(rows).to(x.dtype)
    with torch.no_grad():
        r = eq.residual(model(x), rows)
    eye = torch.eye(r.shape[1], dtype=x.dtype, device=x.device)
    first = torch.ones(C, dtype=x.dtype, device=x.device)  # each class's first trial step
    history: list[tuple[int, float]] = []
    stalled = _Stalls()
    step = 0
    bar = progress_bar(steps, desc="newton", progress=progress, leave=False)
    for step in range(steps):
        bar.update(1)
        rn = torch.linalg.vector_norm(r, dim=1)
        rel = rn / tn
        if step % callback_every == 0 and report_step(step, rel, history, bar, callback):
            break
        done = (rel <= stop_tol) | stalled(rn)
        if done.all():
            break
        todo = (~done).nonzero().squeeze(1)
        with torch.enable_grad():
            _, J = jacobian(lambda z, rows=todo: -eq.residual(model(z), rows), x[todo])
        A = J @ J.transpose(1, 2)
        scale = A.diagonal(dim1=1, dim2=2).mean(1)
        # a class with a zero Jacobian (every ReLU dead) gets a zero step and stays put
        A = A + (1e-10 * scale + (scale == 0).to(A.dtype))[:, None, None] * eye
        dx = torch.zeros_like(x)
        dx[todo] = (J.transpose(1, 2) @ torch.linalg.solve(A, r[todo].unsqueeze(2))).view_as(
            x[todo]
        )
        del J, A
        alpha = first.clone()
        accepted = done.clone()
        with torch.no_grad():
            for _ in range(max_halvings):
                p = (~accepted).nonzero().squeeze(1)  # only the classes still searching
                trial = x[p] + alpha[p].view(-1, *([1] * (x.dim() - 1))) * dx[p]
                tr = eq.residual(model(trial), p)
                good = torch.linalg.vector_norm(tr, dim=1) <= (1 - 1e-4 * alpha[p]) * rn[p]
                x[p[good]], r[p[good]] = trial[good], tr[good]
                accepted[p[good]] = True
                if accepted.all():
                    break
                alpha[p[~good]] *= 0.5
        # the next search starts at twice the step just taken (a full step at most)
        first = torch.where(accepted & ~done, (2 * alpha).clamp_max(1.0), torch.ones_like(alpha))
    finish(bar)  # stopped early at the tolerance: done, not failed
    return x, step + 1, history


def levenberg_marquardt(
    model: nn.Module,
    start: torch.Tensor,
    t: Equations,
    *,
    steps: int,
    box: bool,
    callback: Callback | None,
    callback_every: int,
    progress: bool,
    stop_tol: float,
    max_tries: int = 8,
    only: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int, list]:
    """Levenberg-Marquardt root finding (the follow-up paper's solver), batched over classes.

    Each step solves ``(J^T J + mu I) dx = J^T r`` in its small ``K x K`` form ``dx = J^T (J
    J^T + mu I)^{-1} r``; a step that lowers the residual norm is taken and ``mu`` shrinks
    (x1/10), one that does not is retried with ``mu`` x4 (at most ``max_tries`` times per
    step; a class that cannot improve stays where it is). ``mu`` starts at 1e-3 of the mean
    diagonal of ``J J^T``. With ``box`` the images stay in [0, 1]: pixels at a bound whose
    descent direction ``J^T r`` points outward are held (their Jacobian columns zeroed) and
    every trial is clipped to the box. A class stops once its relative error is <=
    ``stop_tol`` or it has stalled (as in :func:`newton`); ``only`` (a ``(C,)`` mask) leaves
    the other classes where they are.
    """
    x = (start.clamp(0, 1) if box else start).detach().clone()
    eq = as_equations(t)
    C, tn = len(x), eq.norm(slice(None)).to(x.dtype)
    with torch.no_grad():
        r = eq.residual(model(x), slice(None))
    eye = torch.eye(r.shape[1], dtype=x.dtype, device=x.device)
    mu = torch.full((C,), math.nan, dtype=x.dtype, device=x.device)  # damping per class
    history: list[tuple[int, float]] = []
    stalled = _Stalls()
    step = 0
    bar = progress_bar(steps, desc="lm", progress=progress, leave=False)
    for step in range(steps):
        bar.update(1)
        rn = torch.linalg.vector_norm(r, dim=1)
        if step % callback_every == 0 and report_step(step, rn / tn, history, bar, callback):
            break
        open_ = (rn / tn > stop_tol) & ~stalled(rn)
        active = (open_ if only is None else open_ & only).nonzero().squeeze(1)
        if len(active) == 0:
            break
        xa, ra = x[active], r[active]
        with torch.enable_grad():
            _, J = jacobian(lambda z, rows=active: -eq.residual(model(z), rows), xa)
        if box:
            g = (J.transpose(1, 2) @ ra.unsqueeze(2)).squeeze(2).view_as(xa)
            held = ((xa <= 0) & (g < 0)) | ((xa >= 1) & (g > 0))
            J = J * (~held).reshape(len(active), 1, -1).to(J.dtype)
        A = J @ J.transpose(1, 2)
        m = mu[active]
        m = torch.where(torch.isnan(m), 1e-3 * A.diagonal(dim1=1, dim2=2).mean(1), m)
        improved = torch.zeros(len(active), dtype=torch.bool, device=x.device)
        with torch.no_grad():
            for _ in range(max_tries):
                p = (~improved).nonzero().squeeze(1)  # only the classes still trying
                damped = A[p] + m[p].clamp_min(1e-30)[:, None, None] * eye
                dx = J[p].transpose(1, 2) @ torch.linalg.solve(damped, ra[p].unsqueeze(2))
                trial = xa[p] + dx.view_as(xa[p])
                if box:
                    trial = trial.clamp(0, 1)
                tr = eq.residual(model(trial), active[p])
                good = torch.linalg.vector_norm(tr, dim=1) < rn[active[p]]
                xa[p[good]], ra[p[good]] = trial[good], tr[good]
                improved[p[good]] = True
                m[p] = torch.where(good, m[p] / 10, m[p] * 4)
                if improved.all():
                    break
            x[active], r[active], mu[active] = xa, ra, m
        del J, A
    finish(bar)  # stopped early at the tolerance: done, not failed
    return x, step + 1, history


def polish(
    model: nn.Module,
    x: torch.Tensor,
    t: Equations,
    *,
    box: bool,
    steps_before: int,
    history: list,
    callback: Callback | None,
    callback_every: int,
    progress: bool | None,
    stop_tol: float,
) -> tuple[torch.Tensor, int, int]:
    """Levenberg-Marquardt steps (at most :data:`POLISH_STEPS`) for the classes of ``x``
    within :data:`HANDOFF` but not yet within ``stop_tol``; the others stay as they are.
    Continues ``history`` and the callback's step count after ``steps_before`` first-order
    steps. Returns the images, the steps taken and how many classes were polished."""
    eq = as_equations(t)
    with torch.no_grad():
        rel = torch.linalg.vector_norm(eq.residual(model(x), slice(None)), dim=1)
    rel = rel / eq.norm(slice(None)).to(rel.dtype)
    chosen = (rel <= HANDOFF) & (rel > stop_tol)
    if not chosen.any():
        return x, 0, 0

    def shifted(step: int, err: float):
        return callback(steps_before + step, err)

    x, n, hist = levenberg_marquardt(
        model,
        x,
        eq,
        steps=POLISH_STEPS,
        box=box,
        callback=shifted if callback is not None else None,
        callback_every=callback_every,
        progress=progress,
        stop_tol=stop_tol,
        only=chosen,
    )
    history.extend((steps_before + s, e) for s, e in hist)
    return x, n, int(chosen.sum())


class _Stalls:
    """The root finders' stall rule (:data:`ROOT_STALL_WINDOW`, :data:`ROOT_STALL_DROP`):
    called with every step's residual norms ``(C,)``, the mask of the classes that have
    stalled by then (once stalled, always stalled)."""

    def __init__(self) -> None:
        self.past: list[torch.Tensor] = []
        self.mask: torch.Tensor | None = None

    def __call__(self, rn: torch.Tensor) -> torch.Tensor:
        if self.mask is None:
            self.mask = torch.zeros(len(rn), dtype=torch.bool, device=rn.device)
        self.past.append(rn.clone())
        if len(self.past) > ROOT_STALL_WINDOW:
            before = self.past.pop(0)
            self.mask |= rn > (1 - ROOT_STALL_DROP) * before
        return self.mask
