"""Iterative solvers (nnspaces.inversion.solvers) against hand-written loops and closed forms
on small float64 networks."""

import numpy as np
import pytest
import torch
from torch import nn

from nnspaces import paper
from nnspaces.inversion import invert
from nnspaces.inversion.priors import PriorTerms
from nnspaces.inversion.roots import newton
from nnspaces.inversion.solvers import (
    PRESETS,
    STALL_WINDOW,
    Preset,
    first_order,
    mse_matched,
    relative_sq_error,
)


def frozen_net(*layers, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(*layers).double().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def reachable(model, n, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, model[0].in_features), generator=g, dtype=torch.float64)
    with torch.no_grad():
        return model(x), x


def run_first_order(model, start, t, preset, *, loss, box=False, priors=None, **kw):
    args = dict(
        preset=preset,
        steps=preset.steps,
        lr=preset.lr,
        loss=loss,
        priors=priors or PriorTerms(model, {}, None),
        box=box,
        callback=None,
        callback_every=1,
        progress=False,
        desc="test",
        stop_tol=0.0,
    )
    return first_order(model, start, t, **(args | kw))


def run_newton(model, start, t, *, steps=20, **kw):
    args = dict(steps=steps, callback=None, callback_every=1, progress=False, stop_tol=1e-12)
    return newton(model, start, t, **(args | kw))


# ----------------------------------------------------------------------------- presets, losses


def test_presets():
    assert set(PRESETS) == {"original", "newton", "lm", "descent", "box", "natural"}
    # the authors' "+training": plain SGD at a constant 1e-4 for 100 steps
    orig = PRESETS["original"]
    assert (orig.optimizer, orig.lr, orig.steps, orig.lr_final) == (
        paper.PLUS_TRAINING["optimizer"],
        paper.PLUS_TRAINING["lr"],
        paper.PLUS_TRAINING["steps"],
        None,
    )
    assert PRESETS["newton"].optimizer == "gauss-newton"
    for name in ("descent", "box", "natural"):
        p = PRESETS[name]
        assert p.optimizer == "adam" and p.lr_final is not None and p.lr_final < p.lr


def test_mse_matched_and_relative_error_hand_values():
    out = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    t = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    # row 0: (0 + 4) / 2; row 1: (9 + 16) / 2
    assert torch.equal(mse_matched(out, t), torch.tensor([2.0, 12.5]))
    # row 0: 4 / 1; row 1: 25 / 25
    assert torch.equal(relative_sq_error(out, t), torch.tensor([4.0, 1.0]))
    # a zero target does not divide by zero
    assert torch.isfinite(relative_sq_error(out, torch.zeros(2, 2))).all()
    for f in (mse_matched, relative_sq_error):
        with pytest.raises(ValueError, match=r"output shape \(2, 2\) != target shape \(1, 2\)"):
            f(out, t[:1])  # no silent broadcasting


# ----------------------------------------------------------------------------- first-order


@pytest.mark.parametrize(
    "preset",
    [Preset("sgd", 0.1, 4), Preset("sgd", 0.1, 3, 1e-3), Preset("sgd", 10.0, 6)],
    ids=["constant", "decaying", "diverging"],
)
def test_training_is_plain_sgd_on_each_class_mse(preset):
    # f(x) = W x + b: the gradient of mean_j (f_j - t_j)^2 is (2 / K) W^T (f - t)
    model = frozen_net(nn.Linear(4, 3))
    W, b = model[0].weight, model[0].bias
    x0 = torch.rand(2, 4, dtype=torch.float64)
    t = torch.randn(2, 3, dtype=torch.float64)
    x, steps, _ = run_first_order(model, x0, t, preset, loss="mse")
    expected = x0.clone()
    for k in range(preset.steps):
        # geometric decay from lr to lr_final over the steps
        lr = preset.lr if preset.lr_final is None else preset.lr * (1e-2) ** (k / 2)
        expected = expected - lr * (2 / 3) * (expected @ W.T + b - t) @ W
    assert steps == preset.steps
    assert torch.allclose(x, expected, rtol=1e-10, atol=1e-12)
    if preset.lr == 10.0:  # the last iterate is kept even though it got worse
        start_err = relative_sq_error(model(x0), t)
        assert (relative_sq_error(model(x), t) > start_err).all()


def test_descent_keeps_each_class_best_iterate():
    # Adam with a far too large step jumps around; the solver returns, per class, the
    # iterate with the lowest objective, not the last one
    model = frozen_net(nn.Linear(5, 3))
    x0 = torch.rand(2, 5, dtype=torch.float64)
    t = torch.randn(2, 3, dtype=torch.float64)
    preset = Preset("adam", 5.0, 20)
    x, _, _ = run_first_order(model, x0, t, preset, loss="rel")
    xs = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([xs], lr=5.0)
    objs, its = [], []
    for _ in range(20):
        opt.zero_grad()
        obj = relative_sq_error(model(xs), t)
        objs.append(obj.detach())
        its.append(xs.detach().clone())
        obj.sum().backward()
        opt.step()
    objs.append(relative_sq_error(model(xs), t).detach())
    its.append(xs.detach().clone())
    best = torch.stack(objs).argmin(0)
    assert (best < 20).all()  # the last iterate is not the best one here
    expected = torch.stack([its[int(best[i])][i] for i in range(2)])
    assert torch.allclose(x, expected, atol=1e-12)


def test_box_projects_every_step():
    model = frozen_net(nn.Linear(6, 2))
    x0 = torch.rand(3, 6, dtype=torch.float64) * 4 - 2  # well outside [0, 1]
    t = torch.randn(3, 2, dtype=torch.float64) * 10
    preset = Preset("adam", 1.0, 30)
    x, _, _ = run_first_order(model, x0, t, preset, loss="rel", box=True)
    assert x.min() >= 0 and x.max() <= 1
    free, _, _ = run_first_order(model, x0, t, preset, loss="rel", box=False)
    assert free.min() < 0 or free.max() > 1  # the targets pull outside the box


def small_relu_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 3)
    ).eval()


@pytest.mark.parametrize("scale", [1.0, 50.0])  # reachable, and far out of reach
def test_box_never_leaves_the_unit_box(scale):
    model = small_relu_cnn()
    with torch.no_grad():
        t = model(torch.rand(3, 1, 8, 8)) * scale
    start = torch.rand(3, 1, 8, 8) * 3 - 1  # starts outside the box on purpose
    r = invert(model, t, method="box", start=start, steps=200, progress=False)
    assert r.image.min() >= 0 and r.image.max() <= 1
    assert (r.outside == 0).all()
    if scale == 1.0:
        assert np.median(r.rel_error) < 0.05
    else:
        assert not r.success.any() and all("relative error" in s for s in r.reason)


def test_priors_enter_the_objective():
    # with a dominant l2-avg weight the images settle on the averages, row by row
    model = frozen_net(nn.Linear(4, 2))
    x0 = torch.zeros(2, 4, dtype=torch.float64)
    t = torch.ones(2, 2, dtype=torch.float64)
    avg = torch.tensor([[1.0, 2.0, 3.0, 4.0], [-1.0, 0.0, 1.0, 0.5]], dtype=torch.float64)
    terms = PriorTerms(model, {"l2-avg": 1e4}, avg)
    x, _, _ = run_first_order(
        model, x0, t, Preset("adam", 0.5, 200, 1e-3), loss="rel", priors=terms
    )
    assert torch.allclose(x, avg, atol=0.01)


def test_a_batch_of_runs_with_their_own_weights_matches_the_runs_alone():
    # rows with different l2-avg weights in one batch move as each would in its own run;
    # a row without weight leaves the batch at the tolerance while the others go on
    model = frozen_net(nn.Linear(4, 2))
    x0 = torch.zeros(2, 4, dtype=torch.float64)
    t = torch.tensor([[1.0, -1.0], [0.5, 2.0]], dtype=torch.float64)
    avg = torch.tensor([[1.0, 2.0, 3.0, 4.0], [-1.0, 0.0, 1.0, 0.5]], dtype=torch.float64)
    preset = Preset("adam", 0.05, 400)
    runs = [
        run_first_order(
            model, x0, t, preset, loss="rel", priors=PriorTerms(model, pri, avg), stop_tol=1e-4
        )
        for pri in ({}, {"l2-avg": 0.3}, {"l2-avg": 3.0})
    ]
    alone = [x for x, _, _ in runs]
    assert runs[0][1] < preset.steps  # without a prior the run stops at the tolerance
    weights = {"l2-avg": [0.0, 0.0, 0.3, 0.3, 3.0, 3.0]}
    batch, steps, _ = run_first_order(
        model,
        x0.repeat(3, 1),
        t.repeat(3, 1),
        preset,
        loss="rel",
        priors=PriorTerms(model, weights, avg.repeat(3, 1)),
        stop_tol=1e-4,
    )
    assert steps == preset.steps  # the weighted rows ran to the end
    assert torch.allclose(batch, torch.cat(alone), atol=1e-10)
    with torch.no_grad():
        reached = torch.linalg.vector_norm(model(batch[:2]) - t, dim=1) / t.norm(dim=1)
    assert (reached <= 1e-4).all()  # the free rows stopped there (as alone)
    assert not torch.allclose(alone[1], alone[2], atol=1e-3)  # the weights matter


def test_callback_gets_the_median_and_can_stop():
    model = frozen_net(nn.Linear(4, 3))
    x0 = torch.rand(4, 4, dtype=torch.float64)
    t = torch.randn(4, 3, dtype=torch.float64)
    rel = (
        torch.linalg.vector_norm(model(x0) - t, dim=1) / torch.linalg.vector_norm(t, dim=1)
    ).numpy()
    middle = np.sort(rel)[1:3].mean()  # four classes: the mean of the two middle values
    seen = []

    def stop_at_ten(step, med):
        seen.append((step, med))
        return step < 10

    _, steps, hist = run_first_order(
        model, x0, t, Preset("sgd", 1e-3, 50), loss="mse", callback=stop_at_ten, callback_every=5
    )
    assert [s for s, _ in seen] == [0, 5, 10] and steps == 11
    assert seen[0][1] == pytest.approx(middle, rel=1e-12)
    assert hist == seen
    _, steps, hist = run_newton(model, x0, t, callback=lambda s, m: False)
    assert steps == 1 and hist[0][1] == pytest.approx(middle, rel=1e-12)


def test_first_order_stops_once_every_class_is_reached():
    model = frozen_net(nn.Linear(4, 2))
    x0 = torch.rand(2, 4, dtype=torch.float64)
    with torch.no_grad():
        t = model(x0)  # reached at the start
    _, steps, _ = run_first_order(model, x0, t, Preset("adam", 0.1, 100), loss="rel", stop_tol=1e-7)
    assert steps == 1


# ----------------------------------------------------------------------------- stalls


def test_a_stalled_class_leaves_the_batch_without_priors():
    # a 2 -> 3 linear map: a target off its range plane is out of reach, and Adam settles on
    # the least-squares image; a reachable class converges steadily and is not stalled
    model = frozen_net(nn.Linear(2, 3), seed=5)
    g = torch.Generator().manual_seed(6)
    x0 = torch.rand(2, 2, generator=g, dtype=torch.float64)
    with torch.no_grad():
        reachable_t = model(torch.tensor([[3.0, -2.0]], dtype=torch.float64))
    normal = torch.linalg.svd(model[0].weight, full_matrices=True).U[:, 2]  # off the plane
    t = torch.cat([reachable_t, reachable_t + 5 * normal.view(1, 3)])
    preset = Preset("adam", 0.05, 3000)
    _, alone, _ = run_first_order(model, x0[1:], t[1:], preset, loss="rel", stop_tol=1e-6)
    assert alone < preset.steps and alone % STALL_WINDOW == 0  # stopped at a window's end
    x, steps, _ = run_first_order(model, x0, t, preset, loss="rel", stop_tol=1e-6)
    assert steps < preset.steps
    with torch.no_grad():
        rel = (torch.linalg.vector_norm(model(x) - t, dim=1) / t.norm(dim=1)).numpy()
    assert rel[0] <= 1e-6  # the reachable class finished
    # the stalled one sits at the least-squares residual: the distance to the plane
    assert rel[1] == pytest.approx(5 / t[1].norm().item(), rel=1e-3)
    # with a prior, or with the paper's MSE, every step runs
    avg = torch.zeros(2, 2, dtype=torch.float64)
    terms = PriorTerms(model, {"l2-avg": 1e-9}, avg)
    _, steps, _ = run_first_order(model, x0, t, preset, loss="rel", priors=terms, stop_tol=1e-6)
    assert steps == preset.steps
    _, steps, _ = run_first_order(model, x0, t, Preset("sgd", 1e-3, 300), loss="mse", stop_tol=1e-6)
    assert steps == 300
