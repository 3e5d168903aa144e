"""What the root-finding and descent solvers solve: the equations ``residual(f(x)) = 0``.

The paper's targets are raw scores: K equations per class, ``r = t - f(x)``
(:class:`ScoreEquations`). A probability target ``p(c) >= level`` becomes raw scores too
(:func:`~nnspaces.inversion.targets.probability_targets`: the start image's other scores kept,
score ``c`` raised), which asks the network for K exact values when one inequality is all
that matters. :class:`LogOddsEquations` asks for that inequality alone, one equation per
class on the class's log-odds ``g_c = z_c - logsumexp_{j != c} z_j`` (``p_c = sigmoid(g_c)``):

    r_c(x) = max(0, goal - g_c(f(x))),   goal = log(level / (1 - level)) + PROB_MARGIN

zero exactly when ``p_c >= sigmoid(goal)``, a little above ``level``. The other scores are
free: the network may reach the probability by lowering them as well as by raising ``z_c``.

Solvers ask an equations object for the residual of some rows of the batch (``rows``, indices
into the classes: solvers drop finished classes from the batch) and for the norm that makes it
relative; :data:`RESIDUALS` names the two kinds (:class:`~nnspaces.inversion.InvertOptions`'
``residual``).
"""

from __future__ import annotations

import math

import torch

from .targets import PROB_MARGIN, check_level

#: ``scores``: K equations per class on the raw scores; ``log-odds``: one per class on its
#: log-odds (probability targets only).
RESIDUALS = ("scores", "log-odds")


def log_odds(out: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Log-odds ``z_c - logsumexp_{j != c} z_j`` ``(C,)`` of class ``classes[i]`` in row
    ``i`` of the raw scores ``out`` ``(C, K)``: ``sigmoid`` of it is the softmax probability."""
    classes = classes.to(out.device).long()
    own = out.gather(1, classes[:, None]).squeeze(1)
    mask = torch.zeros_like(out, dtype=torch.bool).scatter_(1, classes[:, None], True)
    return own - torch.logsumexp(out.masked_fill(mask, -math.inf), 1)


def log_odds_goal(level: float) -> float:
    """The log-odds a probability target aims at: ``log(level / (1 - level)) + PROB_MARGIN``."""
    level = check_level(level)
    return math.log(level / (1 - level)) + PROB_MARGIN


class ScoreEquations:
    """K equations per class: ``r = t - f(x)`` for raw-score targets ``t`` ``(C, K)``."""

    def __init__(self, t: torch.Tensor):
        self.t = t

    def __len__(self) -> int:
        return len(self.t)

    def residual(self, out: torch.Tensor, rows: torch.Tensor | slice) -> torch.Tensor:
        """``t - out`` for the ``rows`` of the batch that ``out`` ``(R, K)`` holds."""
        t = self.t[rows]
        if out.shape != t.shape:
            raise ValueError(f"output shape {tuple(out.shape)} != target shape {tuple(t.shape)}")
        return t - out

    def norm(self, rows: torch.Tensor | slice) -> torch.Tensor:
        """``||t||`` per row (the relative error's denominator)."""
        return torch.linalg.vector_norm(self.t[rows], dim=1).clamp_min(1e-30)


class LogOddsEquations:
    """One equation per class: ``r = max(0, goal - log_odds(f(x), c))`` ``(C, 1)``, zero
    once class ``c``'s probability reaches ``sigmoid(goal)`` (:func:`log_odds_goal`)."""

    def __init__(self, classes, goal: float, *, device: str | torch.device = "cpu"):
        self.classes = torch.as_tensor(list(classes), dtype=torch.long, device=device)
        if not math.isfinite(goal) or goal == 0:
            raise ValueError(f"goal={goal!r} must be a finite, nonzero log-odds")
        self.goal = float(goal)

    def __len__(self) -> int:
        return len(self.classes)

    def residual(self, out: torch.Tensor, rows: torch.Tensor | slice) -> torch.Tensor:
        classes = self.classes[rows]
        if out.dim() != 2 or len(out) != len(classes):
            raise ValueError(f"output shape {tuple(out.shape)} for {len(classes)} classes")
        return (self.goal - log_odds(out, classes)).clamp_min(0).unsqueeze(1)

    def norm(self, rows: torch.Tensor | slice) -> torch.Tensor:
        """``|goal|`` per row: the residual relative to the log-odds asked for."""
        n = len(self.classes[rows])
        return torch.full((n,), abs(self.goal), device=self.classes.device)
