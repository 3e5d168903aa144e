"""Natural pre-images that generalise: optimised under random moves and over several networks.

An image that reaches one network's target on one exact pixel grid is often a small push of
its start image that only this network reads (an adversarial perturbation). Feature
visualisation gets legible images by "transformation robustness": the output is asked of the
image under random shifts, rotations and scalings (:mod:`nnspaces.augment`), so only what
survives moving it counts. Here:

- :class:`Jittered` wraps a network: its output is the mean over ``copies`` random moves of
  the input (fresh draws at every call);
- :class:`Ensemble` averages the log-probabilities of several networks (a probability target
  then asks all of them; raw scores of different networks do not add up, so only
  ``probability`` targets take an ensemble);
- :func:`robust_preimages` runs the box-constrained search on the wrapped network (with the
  priors it already has), then polishes the images on the network itself until they reach its
  own target. Nothing here may see a judge (:func:`nnspaces.models.refuse_judge`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..augment import Moves, random_moves
from ..data import Dataset
from ..models import n_outputs_of, network_name, refuse_judge
from .api import InversionResult, ScoreStats, invert, make_targets, score_stats
from .targets import check_name

#: The moves of the robust search (smaller than a judge's training moves) and how many copies
#: of each image a step averages over.
MOVES = Moves(shift=1.5, angle=8.0, scale=0.08)
COPIES = 6
#: The search's box steps and the polish's, per phase, and the search's (gentle) step size:
#: from a class average, steps of 0.1 or more move every pixel the same small amount at once
#: and leave a faint pattern a judge reads as another digit.
ROBUST_STEPS = {"search": 100, "polish": 200}
ROBUST_LR = 0.05
#: The ingredients :func:`robust_preimages` combines, and the ladder lesson 5 climbs: none,
#: each alone, all together.
INGREDIENTS = ("jitter", "ensemble", "prior")
ROBUST_LADDER: dict[str, tuple[str, ...]] = {
    "none": (),
    "jitter": ("jitter",),
    "prior": ("prior",),
    "ensemble": ("ensemble",),
    "all": ("jitter", "prior", "ensemble"),
}
#: Smoke runs' steps.
QUICK_ROBUST_STEPS = {"search": 10, "polish": 20}
#: The prior the search holds images near real digits with, and its weight.
ROBUST_PRIOR = {"l2-avg": 0.3}
#: The probability the search on the wrapped network asks for: above the level the network
#: itself must reach, so that the polish has little left to do.
SEARCH_LEVEL = 0.97


class Jittered(nn.Module):
    """``model``'s output averaged over ``copies`` random moves of each input image. The
    draws change at every call and repeat from ``seed`` (a fresh copy starts over)."""

    def __init__(self, model: nn.Module, moves: Moves = MOVES, copies: int = COPIES, seed: int = 0):
        super().__init__()
        refuse_judge(model, "Jittered")
        if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
            raise ValueError(f"copies={copies!r} must be an integer >= 1")
        self.model, self.moves, self.copies, self.seed, self.calls = model, moves, copies, seed, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.calls)
        self.calls += 1
        moved = random_moves(x.repeat_interleave(self.copies, 0), self.moves, gen)
        return self.model(moved).unflatten(0, (len(x), self.copies)).mean(1)


class Ensemble(nn.Module):
    """The mean log-probabilities of ``models`` (each one's log-softmax): as logits, their
    softmax asks every member at once."""

    def __init__(self, models: Sequence[nn.Module]):
        super().__init__()
        if not models:
            raise ValueError("an ensemble needs at least one network")
        for m in models:
            refuse_judge(m, "Ensemble")
        if len({n_outputs_of(m) for m in models}) != 1:
            raise ValueError("the ensemble's networks must have the same number of outputs")
        self.members = nn.ModuleList(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.log_softmax(m(x), 1) for m in self.members]).mean(0)


@dataclass
class RobustRun:
    """One :func:`robust_preimages` run: the ingredients, the search's result (on the
    wrapped network) and the final images' (on the network itself)."""

    ingredients: tuple[str, ...]
    search: InversionResult | None
    result: InversionResult
    seconds: float


def robust_preimages(
    model: nn.Module,
    targets: str,
    *,
    data: Dataset,
    ingredients: Sequence[str] = ("jitter", "prior"),
    start: str = "avg-img",
    ensemble: Mapping[str, nn.Module] | None = None,
    stats: ScoreStats | None = None,
    network: str | None = None,
    steps: Mapping[str, int] | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> RobustRun:
    """Images from ``start`` (a name of :data:`~nnspaces.inversion.STARTS`: ``avg-img`` the
    class averages, ``avg-all`` the average of every training image) that reach ``model``'s
    ``targets`` (``"probability"``: p(c) >= 0.9; else raw-score targets, e.g. ``"min-max"``,
    to a relative error of 1e-2), with every pixel in [0, 1].

    ``ingredients`` (of :data:`INGREDIENTS`; none: the plain box search): ``jitter`` searches
    on :class:`Jittered`; ``ensemble`` (probability targets only) also asks the networks of
    ``ensemble`` (:class:`Ensemble`); ``prior`` adds :data:`ROBUST_PRIOR`. Then the images
    are polished on ``model`` alone (box steps, no prior) until they reach its target; its
    result is ``result``."""
    t0 = time.perf_counter()
    refuse_judge(model, "robust_preimages")
    ingredients = tuple(ingredients)
    for name in ingredients:
        check_name("ingredient", name, INGREDIENTS)
    by_prob = targets == "probability"
    if "ensemble" in ingredients and not by_prob:
        raise ValueError(
            "the ensemble ingredient needs probability targets (raw scores of "
            "different networks do not add up)"
        )
    if "ensemble" in ingredients and not ensemble:
        raise ValueError("the ensemble ingredient needs the other networks (ensemble=...)")
    steps = ROBUST_STEPS | dict(steps or {})
    network = network or network_name(model)
    if stats is None and not by_prob:
        stats = score_stats(model, data.x_train, data.y_train, device=device)
    goal = {"residual": "log-odds"} if by_prob else {"tol": 1e-2}
    t = targets if by_prob else make_targets(stats, targets)
    common = dict(data=data, network=network, device=device, seed=seed, progress=False)
    surrogate: nn.Module = model
    if "ensemble" in ingredients:
        surrogate = Ensemble([model, *ensemble.values()])
    if "jitter" in ingredients:
        surrogate = Jittered(surrogate, seed=seed)
    priors = dict(ROBUST_PRIOR) if "prior" in ingredients else None
    search = invert(
        surrogate, t, method="box", start=start, priors=priors, steps=steps["search"],
        lr=ROBUST_LR, specialise=False, polish=False, stats=stats,
        **({"level": SEARCH_LEVEL} if by_prob else {}), **goal, **common,
    )  # fmt: skip
    result = invert(
        model, t, method="box", start=search.image, steps=steps["polish"], lr=ROBUST_LR,
        stats=stats,
        **goal, **common,
    )  # fmt: skip
    result.settings |= {"ingredients": list(ingredients), "search_steps": search.steps}
    return RobustRun(ingredients, search, result, time.perf_counter() - t0)
