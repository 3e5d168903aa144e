"""Iterative solvers: move images until the network's outputs reach their targets.

All are batched over classes (in eval mode the images do not interact) and run on the
device of the model they get:

* :func:`first_order`: SGD or Adam on the images, with a geometrically decaying step; the
  paper's "+training" (SGD on the per-class MSE) and this library's ``descent`` (Adam on the
  relative squared error plus weighted priors) and ``box`` (the same, projected onto
  pixels in [0, 1] after every step).
* :func:`newton`: minimum-norm Gauss-Newton root finding ``x += J^+ (t - f(x))`` with the
  input Jacobian and an Armijo line search.

Their settings are :class:`Preset` values, named in :data:`PRESETS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..progress import finish, progress_bar
from .priors import PriorTerms

#: ``callback(step, median_relative_error)``; returning False stops the solver.
Callback = Callable[[int, float], "bool | None"]


@dataclass(frozen=True)
class Preset:
    """Settings of an iterative solver: optimiser, initial step size, number of steps, and
    the step size it decays to (geometrically; ``None`` keeps it constant)."""

    optimizer: str  # "sgd", "adam" or "gauss-newton"
    lr: float
    steps: int
    lr_final: float | None = None


#: ``original`` is the authors' "+training"; the others are this library's defaults.
PRESETS: dict[str, Preset] = {
    "original": Preset("sgd", 1e-4, 100),
    "newton": Preset("gauss-newton", 1.0, 60),
    # measured on resnet18 (embedded data, min/max targets; bench/inversion.py): smaller
    # steps leave some classes in a poor local minimum; projected steps this large push
    # pixels to 0 or 1 and still reach every class to ~3e-7
    "descent": Preset("adam", 0.3, 1000, 1e-5),
    "box": Preset("adam", 3.0, 1000, 1e-4),
    # gentle steps from the start image: with a prior, images that still look like digits
    "natural": Preset("adam", 0.1, 300, 1e-2),
}


def mse_matched(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-row mean squared error ``(C,)``; shapes must match exactly (no broadcasting)."""
    if out.shape != target.shape:
        raise ValueError(f"output shape {tuple(out.shape)} != target shape {tuple(target.shape)}")
    return ((out - target) ** 2).mean(1)


def relative_sq_error(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    if out.shape != t.shape:
        raise ValueError(f"output shape {tuple(out.shape)} != target shape {tuple(t.shape)}")
    return ((out - t) ** 2).sum(1) / (t**2).sum(1).clamp_min(1e-30)


def _lr_at(preset: Preset, lr: float, step: int, steps: int) -> float:
    if preset.lr_final is None or steps <= 1:
        return lr
    return lr * (preset.lr_final / preset.lr) ** (step / (steps - 1))


def first_order(
    model: nn.Module,
    start: torch.Tensor,
    t: torch.Tensor,
    *,
    preset: Preset,
    steps: int,
    lr: float,
    loss: str,
    priors: PriorTerms,
    box: bool,
    callback: Callback | None,
    callback_every: int,
    progress: bool | None,
    desc: str,
    stop_tol: float,
) -> tuple[torch.Tensor, int, list]:
    """SGD / Adam on the images, batched over classes (classes are independent: eval mode).

    ``loss="mse"``: the paper's per-class MSE (mean over outputs), summed over classes, so
    each class gets exactly the gradient of its own run. ``loss="rel"``: relative squared
    error plus weighted priors. ``box``: project onto [0, 1] after every step.
    """
    x = start.clone()
    if box:
        x.clamp_(0, 1)
    x.requires_grad_(True)
    opt = torch.optim.SGD([x], lr=lr) if preset.optimizer == "sgd" else torch.optim.Adam([x], lr=lr)

    def objective(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-class objective ``(C,)`` and relative output error ``(C,)`` (detached)."""
        out = model(x)
        rel_sq = relative_sq_error(out, t)
        if loss == "mse":
            return mse_matched(out, t), rel_sq.detach().sqrt()
        return priors.add(rel_sq, x), rel_sq.detach().sqrt()

    best_obj = torch.full((len(x),), math.inf, dtype=torch.float64, device=x.device)
    best_x = x.detach().clone()
    history: list[tuple[int, float]] = []
    step = 0
    with priors:
        bar = progress_bar(steps, desc=desc, progress=progress, leave=False)
        for step in range(steps):
            bar.update(1)
            for group in opt.param_groups:
                group["lr"] = _lr_at(preset, lr, step, steps)
            opt.zero_grad(set_to_none=True)
            per_class, rel = objective(x)
            obj = per_class.detach().double()
            better = obj < best_obj
            best_obj = torch.where(better, obj, best_obj)
            best_x[better] = x.detach()[better]
            per_class.sum().backward()
            opt.step()
            if box:
                with torch.no_grad():
                    x.clamp_(0, 1)
            if step % callback_every == 0 and _report(step, rel, history, bar, callback):
                break
            if not priors.weights and float(rel.max()) <= stop_tol:
                break
        finish(bar)  # stopped early at the tolerance: done, not failed
        # the last update is not yet scored: score it and keep it where it is better
        with torch.no_grad():
            obj = objective(x)[0].double()
            better = obj < best_obj
            best_x[better] = x.detach()[better]
    if loss == "mse":
        # the paper's "+training" keeps its last iterate, whatever happened on the way
        best_x = x.detach()
    return best_x, step + 1, history


def jacobian(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs ``(C, K)`` and input Jacobians ``(C, K, n)`` of independent images ``x``.

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
    t: torch.Tensor,
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
    ``max_halvings`` times; a class whose step cannot improve stays where it is). On smooth
    SELU networks this converges quadratically; on piecewise-linear (ReLU) networks steps
    cross region boundaries and the line search shortens them, so it may stall.
    """
    C = len(start)
    x = start.detach().clone()
    tn = torch.linalg.vector_norm(t, dim=1).clamp_min(1e-30)
    history: list[tuple[int, float]] = []
    step = 0
    eye = torch.eye(t.shape[1], dtype=x.dtype, device=x.device)
    with torch.no_grad():
        r = t - model(x)
    bar = progress_bar(steps, desc="newton", progress=progress, leave=False)
    for step in range(steps):
        bar.update(1)
        rn = torch.linalg.vector_norm(r, dim=1)
        rel = rn / tn
        if step % callback_every == 0 and _report(step, rel, history, bar, callback):
            break
        done = rel <= stop_tol
        if done.all():
            break
        with torch.enable_grad():
            _, J = jacobian(model, x)
        A = J @ J.transpose(1, 2)
        scale = A.diagonal(dim1=1, dim2=2).mean(1)
        # a class with a zero Jacobian (every ReLU dead) gets a zero step and stays put
        A = A + (1e-10 * scale + (scale == 0).to(A.dtype))[:, None, None] * eye
        dx = (J.transpose(1, 2) @ torch.linalg.solve(A, r.unsqueeze(2))).squeeze(2)
        dx = dx.view_as(x)
        del J, A
        alpha = torch.ones(C, dtype=x.dtype, device=x.device)
        accepted = done.clone()
        with torch.no_grad():
            for _ in range(max_halvings):
                trial = x + alpha.view(-1, *([1] * (x.dim() - 1))) * dx
                tr = t - model(trial)
                good = ~accepted & (torch.linalg.vector_norm(tr, dim=1) <= (1 - 1e-4 * alpha) * rn)
                x[good], r[good] = trial[good], tr[good]
                accepted |= good
                if accepted.all():
                    break
                alpha = torch.where(accepted, alpha, alpha * 0.5)
    finish(bar)  # stopped early at the tolerance: done, not failed
    return x, step + 1, history


def _report(step: int, rel: torch.Tensor, history: list, bar, callback: Callback | None) -> bool:
    """Record the median relative error, show it on the progress bar, call ``callback``;
    True when the callback asks to stop."""
    med = _median(rel)
    history.append((step, med))
    bar.set_postfix(rel=f"{med:.2e}")
    return callback is not None and callback(step, med) is False


def _median(v: torch.Tensor) -> float:
    """The usual median (mean of the two middle values), unlike ``torch.median``."""
    return float(np.median(v.detach().double().cpu().numpy()))
