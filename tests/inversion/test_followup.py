"""The follow-up paper's inversion: probability targets, Levenberg-Marquardt, the backward
walk with random null-space vectors at every layer, and the diversity of what it draws."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import selu_net
from torch import nn

from nnspaces.inversion import (
    PROB_LEVEL,
    invert,
    log_odds,
    log_odds_goal,
    probability_targets,
    start_images,
)
from nnspaces.inversion.equations import LogOddsEquations
from nnspaces.inversion.nullspace import diversity, null_space_samples
from nnspaces.inversion.targets import PROB_MARGIN


def _data(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 16, generator=g, dtype=torch.float64)
    y = torch.arange(n) % 3
    return x, y


def test_probability_targets_raise_only_the_class_score_to_the_level():
    z = torch.tensor([[1.0, 2.0, 0.5], [0.0, 9.0, 0.0]], dtype=torch.float64)
    t = probability_targets(z, [0, 1], level=0.9)
    # row 0: only output 0 changed, and softmax gives just above 0.9
    assert torch.equal(t[0, 1:], z[0, 1:])
    p = torch.softmax(t, 1)
    assert 0.9 < p[0, 0] < 0.91
    logit = math.log(p[0, 0] / (1 - p[0, 0]))
    assert logit == pytest.approx(math.log(9) + PROB_MARGIN, abs=1e-12)
    # row 1 is above the level already: unchanged (not lowered to it)
    assert torch.equal(t[1], z[1])
    with pytest.raises(ValueError, match="level=1.5 must be a probability"):
        probability_targets(z, [0, 1], level=1.5)


def test_avg_all_starts_every_class_from_the_mean_of_all_images():
    x, y = _data()
    s = start_images("avg-all", x, y, classes=[0, 2])
    assert s.shape == (2, 16)
    assert torch.allclose(s[0], x.mean(0)) and torch.equal(s[0], s[1])


@pytest.mark.parametrize("method", ["lm", "lm-box", "newton"])
def test_probability_targets_are_reached(method):
    model = selu_net((16, 12, 3), dtype=torch.float32)
    with torch.no_grad():
        model[-1].weight *= 60  # so that images inside [0, 1] can reach p >= 0.9 too
    x, y = _data()
    r = invert(
        model, "probability", method=method, start="avg-all", data=(x.float(), y), progress=False
    )
    assert (r.prob >= PROB_LEVEL).all(), r.table()
    assert r.success.all()
    if method == "lm-box":
        assert ((r.image >= 0) & (r.image <= 1)).all()


def test_probability_success_is_the_level_not_the_score_error():
    model = selu_net((16, 3), dtype=torch.float32)
    x, y = _data()
    r = invert(
        model,
        "probability",
        method="start",
        start="avg-all",
        data=(x.float(), y),
        level=0.99,
        progress=False,
    )
    low = r.prob < 0.99
    assert low.any()
    assert not r.success[low].any()
    assert all("< level 0.99" in r.reason[i] for i in np.flatnonzero(low))
    with pytest.raises(ValueError, match="probability targets are made from the start image"):
        invert(model, "probability", method="descent", start="min-img", data=(x.float(), y))


def test_levenberg_marquardt_reaches_min_max_targets_on_a_selu_stack():
    model = selu_net((16, 8, 3), dtype=torch.float32)
    x, y = _data()
    r = invert(model, "percentile", method="lm", data=(x.float(), y), progress=False)
    assert r.success.all(), r.table()
    # it stops once every class is within half the tolerance, not at the step limit
    assert (r.rel_error <= 0.5e-4).all() and r.steps < r.settings["steps"]


def test_first_order_leaves_a_finished_class_where_it_finished():
    model = selu_net((16, 3), dtype=torch.float32)
    x, y = _data()
    start = start_images("avg-img", x.float(), y)
    with torch.no_grad():
        t = model(start).double()
    t[1] += 0.3  # class 0 and 2 start on target; only class 1 must move
    r = invert(model, t, method="descent", start=start, progress=False)
    assert r.success.all(), r.table()
    assert torch.equal(r.image[0], start[0]) and torch.equal(r.image[2], start[2])
    assert not torch.equal(r.image[1], start[1])


def test_random_backward_walk_draws_different_exact_preimages():
    # every layer widens the space backward (16 -> 12 -> 6): a null space at each
    model = selu_net((16, 12, 6), dtype=torch.float64)
    ref = torch.full((1, 16), 0.5, dtype=torch.float64)
    with torch.no_grad():
        target = model(torch.rand(1, 16, dtype=torch.float64))[0]
    X, ok, reasons = null_space_samples(model, target, ref, 6, layers="all", scale=0.3)
    assert ok.all(), reasons
    with torch.no_grad():
        out = model(X)
    assert torch.allclose(out, target.expand_as(out), atol=1e-9)
    d = diversity(X)
    assert d["n"] == 6 and d["min_rms_difference"] > 1e-3
    # the first-layer-only draw keeps the hidden layer fixed: a different set of images
    X1, ok1, _ = null_space_samples(model, target, ref, 6, layers="first", scale=0.3)
    assert ok1.all()
    with torch.no_grad():
        h_all = model[:2](X)  # first Linear + SELU
        h_first = model[:2](X1)
    assert torch.allclose(h_first, h_first[:1].expand_as(h_first), atol=1e-9)
    assert not torch.allclose(h_all, h_all[:1].expand_as(h_all), atol=1e-6)
    with pytest.raises(ValueError, match="layers='some'; allowed: first, all"):
        null_space_samples(model, target, ref, 2, layers="some")


def test_diversity_by_hand_and_failed_rows_left_out():
    X = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [math.nan, 0.0]])
    d = diversity(X)
    pairs = [2 / math.sqrt(2), 4 / math.sqrt(2), math.sqrt(20) / math.sqrt(2)]
    assert d["n"] == 3
    assert d["mean_rms_difference"] == pytest.approx(np.mean(pairs))
    assert d["min_rms_difference"] == pytest.approx(min(pairs))
    assert math.isnan(diversity(X[:1])["mean_rms_difference"])


# --------------------------------------------------------------------------- log-odds residual


def test_log_odds_is_the_logit_of_the_softmax_probability():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(5, 4, generator=g, dtype=torch.float64) * 3
    classes = torch.tensor([0, 3, 1, 1, 2])
    lo = log_odds(z, classes)
    p = torch.softmax(z, 1)[torch.arange(5), classes]
    assert torch.allclose(torch.sigmoid(lo), p, atol=1e-12)
    assert torch.allclose(lo, torch.log(p / (1 - p)), atol=1e-9)
    goal = log_odds_goal(0.9)
    assert goal == pytest.approx(math.log(9) + PROB_MARGIN, abs=1e-12)
    assert torch.sigmoid(torch.tensor(goal)) > 0.9
    with pytest.raises(ValueError, match="level=1 must be a probability"):
        log_odds_goal(1)


def test_log_odds_residual_is_the_shortfall_of_each_rows_own_class():
    z = torch.tensor([[4.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    eq = LogOddsEquations([0, 1, 2], log_odds_goal(0.9))
    r = eq.residual(z, slice(None))
    assert r.shape == (3, 1)
    g = log_odds(z, torch.tensor([0, 1, 2]))
    # row 0 is above the goal (p 0.96): nothing left to do; the others fall short by goal - g
    assert r[0, 0] == 0 and torch.sigmoid(g[0]) > 0.9
    assert torch.allclose(r[1:, 0], eq.goal - g[1:])
    assert (r[1:, 0] > 0).all()
    # rows of the batch keep their own classes: rows [2, 1] are classes 2 and 1
    assert torch.allclose(eq.residual(z[[2, 1]], torch.tensor([2, 1])), r[[2, 1]])
    assert torch.allclose(eq.norm(torch.tensor([2, 1])), torch.full((2,), abs(eq.goal)).float())


def _layernorm_head(seed=0):
    """A classifier whose logits pass a LayerNorm, as a ViT's do: its reachable logits are
    bounded, so raising one score with the others fixed can leave them."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(16, 8), nn.Tanh(), nn.LayerNorm(8, elementwise_affine=False), nn.Linear(8, 3)
    ).eval()
    with torch.no_grad():
        model[-1].weight *= 3
    return model


@pytest.mark.parametrize("method", ["lm", "lm-box", "newton", "descent", "box"])
def test_log_odds_residual_reaches_the_level_where_the_score_targets_cannot(method):
    model = _layernorm_head()
    x, y = _data()
    x = x.float()
    common = dict(start="avg-all", data=(x, y), progress=False)
    scores = invert(model, "probability", method=method, **common)
    r = invert(model, "probability", method=method, residual="log-odds", **common)
    assert r.success.all() and (r.prob >= PROB_LEVEL).all(), r.table()
    assert r.settings["residual"] == "log-odds"
    # the raw-score targets of a class are out of reach: a large error, below the level
    assert not scores.success.all()
    assert scores.rel_error[~scores.success].min() > 1e-2
    # success is judged on the probability, not on the (unreached) raw-score targets
    assert (r.rel_error > 1e-2).any()
    if method.endswith("box"):
        assert ((r.image >= 0) & (r.image <= 1)).all()
    # a higher level is a higher goal: every class reaches it too
    high = invert(model, "probability", method=method, residual="log-odds", level=0.95, **common)
    assert (high.prob >= 0.95).all() and not (r.prob >= 0.95).all()


def test_log_odds_residual_only_for_probability_targets_and_root_or_descent_solvers():
    model = _layernorm_head()
    x, y = _data()
    with pytest.raises(ValueError, match="residual='log-odds' solves probability targets"):
        invert(model, "min-max", method="lm", residual="log-odds", data=(x.float(), y))
    with pytest.raises(ValueError, match="method 'training'"):
        invert(
            model,
            "probability",
            method="training",
            start="avg-all",
            residual="log-odds",
            data=(x.float(), y),
        )
    with pytest.raises(ValueError, match="unknown residual 'odds'"):
        invert(model, "probability", method="lm", residual="odds", data=(x.float(), y))
