"""First-order solvers: move images until the network's outputs reach their targets.

Batched over classes (in eval mode the images do not interact), on the device of the model
they get. :func:`first_order`: SGD or Adam on the images, with a geometrically decaying
step; the paper's "+training" (SGD on the per-class MSE) and this library's ``descent``
(Adam on the relative squared error plus weighted priors) and ``box`` (the same, projected
onto pixels in [0, 1] after every step). The root finders on the input Jacobian (``newton``,
``lm`` and the polish that finishes ``descent`` and ``box``) are in :mod:`.roots`.

Every iterative solver's settings are :class:`Preset` values, named in :data:`PRESETS`.
What they solve is given as raw-score targets ``t`` ``(C, K)`` or as an equations object
(:mod:`.equations`: e.g. one equation per class on its log-odds for probability targets).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..progress import finish, progress_bar
from .equations import LogOddsEquations, ScoreEquations
from .priors import PriorTerms

#: ``callback(step, median_relative_error)``; returning False stops the solver.
Callback = Callable[[int, float], "bool | None"]
#: What a solver solves: raw-score targets ``(C, K)``, or equations (:mod:`.equations`).
Equations = torch.Tensor | ScoreEquations | LogOddsEquations


def as_equations(t: Equations) -> ScoreEquations | LogOddsEquations:
    """Raw-score targets as :class:`~.equations.ScoreEquations`; equations as they are."""
    return ScoreEquations(t) if isinstance(t, torch.Tensor) else t


@dataclass(frozen=True)
class Preset:
    """Settings of an iterative solver: optimiser, initial step size, number of steps, and
    the step size it decays to (geometrically; ``None`` keeps it constant)."""

    optimizer: str  # "sgd", "adam", "gauss-newton" or "levenberg-marquardt"
    lr: float
    steps: int
    lr_final: float | None = None


#: ``original`` is the authors' "+training"; the others are this library's defaults.
PRESETS: dict[str, Preset] = {
    "original": Preset("sgd", 1e-4, 100),
    # the SELU network's slowest class (min/max targets, fcnn5) needs 66
    "newton": Preset("gauss-newton", 1.0, 80),
    # lr is unused: the damping adapts; each step costs K backward passes (.roots)
    "lm": Preset("levenberg-marquardt", 1.0, 30),
    # measured on resnet18 (embedded data, min/max targets; bench/inversion.py): smaller
    # steps leave some classes in a poor local minimum; projected steps this large push
    # pixels to 0 or 1 and still reach every class to ~3e-7
    "descent": Preset("adam", 0.3, 1000, 1e-5),
    "box": Preset("adam", 3.0, 1000, 1e-4),
    # gentle steps from the start image: with a prior, images that still look like digits
    "natural": Preset("adam", 0.1, 300, 1e-2),
}

#: Without priors, a class whose objective (the squared relative error) fell by less than
#: ``STALL_DROP`` over the last ``STALL_WINDOW`` steps has stalled and leaves the batch. The
#: ViT's min/max targets are out of reach: its ``descent`` errors move by under 1% after step
#: 100 and ran on to step 1,000.
STALL_WINDOW = 100
STALL_DROP = 0.01


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
    t: Equations,
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
    each class gets exactly the gradient of its own run (raw-score targets only).
    ``loss="rel"``: the squared relative residual ``||r||^2 / ||t||^2`` (for raw scores the
    relative squared error) plus weighted priors. ``box``: project onto [0, 1] after every
    step. A class without prior weights leaves the batch once it is within ``stop_tol`` and,
    with ``loss="rel"``, once it has stalled (:data:`STALL_DROP` over :data:`STALL_WINDOW`).
    """
    eq = as_equations(t)
    if loss == "mse" and not isinstance(eq, ScoreEquations):
        raise ValueError("the paper's MSE loss needs raw-score targets")
    x = start.clone()
    if box:
        x.clamp_(0, 1)
    x.requires_grad_(True)
    opt = torch.optim.SGD([x], lr=lr) if preset.optimizer == "sgd" else torch.optim.Adam([x], lr=lr)

    def objective(x: torch.Tensor, rows) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-class objective and relative residual ``(R,)`` (detached) of the batch's
        ``rows`` (images ``x``)."""
        out = model(x)
        r = eq.residual(out, rows)
        rel_sq = (r**2).sum(1) / (eq.norm(rows).to(r.dtype) ** 2).clamp_min(1e-30)
        if loss == "mse":
            return mse_matched(out, eq.t[rows]), rel_sq.detach().sqrt()
        return priors.add(rel_sq, x, rows), rel_sq.detach().sqrt()

    C = len(x)
    best_obj = torch.full((C,), math.inf, dtype=torch.float64, device=x.device)
    best_x = x.detach().clone()
    # the classes are independent: one without prior weights leaves the batch within stop_tol
    # (its image frozen: Adam's momentum would otherwise keep moving it)
    active = torch.ones(C, dtype=torch.bool, device=x.device)
    history: list[tuple[int, float]] = []
    rel_all = torch.full((C,), math.inf, dtype=torch.float64, device=x.device)
    window_start = best_obj.clone()
    step = 0
    with priors:
        bar = progress_bar(steps, desc=desc, progress=progress, leave=False)
        for step in range(steps):
            bar.update(1)
            for group in opt.param_groups:
                group["lr"] = _lr_at(preset, lr, step, steps)
            idx = active.nonzero().squeeze(1)
            opt.zero_grad(set_to_none=True)
            per_class, rel = objective(x[idx], idx)
            obj = per_class.detach().double()
            better = obj < best_obj[idx]
            best_obj[idx] = torch.where(better, obj, best_obj[idx])
            best_x[idx[better]] = x.detach()[idx[better]]
            rel_all[idx] = rel.double()
            per_class.sum().backward()
            frozen_rows = x.detach()[~active].clone()
            opt.step()
            with torch.no_grad():
                x[~active] = frozen_rows
                if box:
                    x.clamp_(0, 1)
            if step % callback_every == 0 and report_step(step, rel_all, history, bar, callback):
                break
            active &= ~(priors.free & (rel_all <= stop_tol))
            if loss == "rel" and (step + 1) % STALL_WINDOW == 0:
                active &= ~(priors.free & (best_obj > (1 - STALL_DROP) * window_start))
                window_start = best_obj.clone()
            if not active.any():
                break
        finish(bar)  # stopped early at the tolerance: done, not failed
        # the last update is not yet scored: score it and keep it where it is better
        with torch.no_grad():
            obj = objective(x, slice(None))[0].double()
            better = obj < best_obj
            best_x[better] = x.detach()[better]
    if loss == "mse":
        # the paper's "+training" keeps its last iterate, whatever happened on the way
        best_x = x.detach()
    return best_x, step + 1, history


def report_step(
    step: int, rel: torch.Tensor, history: list, bar, callback: Callback | None
) -> bool:
    """Record the median relative error, show it on the progress bar, call ``callback``;
    True when the callback asks to stop."""
    med = _median(rel)
    history.append((step, med))
    bar.set_postfix(rel=f"{med:.2e}")
    return callback is not None and callback(step, med) is False


def _median(v: torch.Tensor) -> float:
    """The usual median (mean of the two middle values), unlike ``torch.median``."""
    return float(np.median(v.detach().double().cpu().numpy()))
