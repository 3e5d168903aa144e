"""Iterative solvers (nnspaces.inversion.solvers) against hand-written loops and closed forms
on small float64 networks."""

import numpy as np
import pytest
import torch
from helpers import selu_net
from torch import nn

from nnspaces import paper
from nnspaces.inversion import invert
from nnspaces.inversion.priors import PriorTerms
from nnspaces.inversion.solvers import (
    HANDOFF,
    POLISH_STEPS,
    PRESETS,
    ROOT_STALL_DROP,
    ROOT_STALL_WINDOW,
    STALL_WINDOW,
    Preset,
    _Stalls,
    first_order,
    jacobian,
    levenberg_marquardt,
    mse_matched,
    newton,
    polish,
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


def test_jacobian_matches_autograd():
    model = frozen_net(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    x = torch.rand(2, 5, dtype=torch.float64)
    out, J = jacobian(model, x)
    assert J.shape == (2, 3, 5)
    assert torch.allclose(out, model(x))
    for i in range(2):
        ref = torch.autograd.functional.jacobian(model, x[i : i + 1])[0, :, 0, :]
        assert torch.allclose(J[i], ref, atol=1e-12)
    # image shapes are flattened: (C, 1, 5) images give (C, 3, 5) Jacobians
    flat = frozen_net(nn.Flatten(), *list(model))
    assert torch.allclose(jacobian(flat, x.view(2, 1, 5))[1], J)


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


# ----------------------------------------------------------------------------- Newton


def test_newton_finds_the_closest_preimage_of_a_linear_layer():
    # minimum-norm steps never leave start + row space: the limit is the pre-image closest
    # to the start, start + W^+ (t - b - W start)
    model = frozen_net(nn.Linear(5, 3))
    W, b = model[0].weight, model[0].bias
    x0 = torch.rand(2, 5, dtype=torch.float64)
    t = torch.randn(2, 3, dtype=torch.float64)
    x, steps, _ = run_newton(model, x0, t)
    expected = x0 + (t - b - x0 @ W.T) @ torch.linalg.pinv(W).T
    assert torch.allclose(x, expected, atol=1e-12)
    assert steps <= 3


def test_newton_converges_on_smooth_nets():
    model = selu_net((30, 16, 4))
    t, _ = reachable(model, 4)
    start = torch.full((4, 30), 0.5, dtype=torch.float64)
    r = invert(model, t, method="newton", start=start, network="selu-fcnn", progress=False)
    assert r.success.all() and r.rel_error.max() < 1e-10
    assert r.steps < 20  # quadratic convergence, not a slow crawl
    assert r.settings["dtype"] == "float64"

    torch.manual_seed(0)
    tanh = nn.Sequential(nn.Linear(30, 16), nn.Tanh(), nn.Linear(16, 4)).eval()
    with torch.no_grad():
        t = tanh(torch.rand(4, 30))
    r = invert(tanh, t, method="newton", start=torch.full((4, 30), 0.5), progress=False)
    assert r.rel_error.max() <= 5e-5  # float32 for non-SELU nets: stops within tol / 2
    assert r.settings["dtype"] == "float32"


def test_newton_leaves_a_class_with_zero_jacobian_where_it_is():
    model = frozen_net(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
        model[0].bias.zero_()
    start = torch.tensor([[-1.0, -1.0, 0.0], [1.0, 2.0, 0.0]], dtype=torch.float64)
    t = model(torch.tensor([[1.0, 1.0, 0.0], [1.5, 2.5, 0.0]], dtype=torch.float64))
    x, _, _ = run_newton(model, start, t)
    assert torch.equal(x[0], start[0])  # both ReLUs dead: no step can help
    assert torch.allclose(model(x[1:]), t[1:], atol=1e-10)


def test_stall_rule_by_hand():
    # class 0 falls by 2% a step, class 1 by 2% a step and then by 0.5% (0.05% per step)
    stalls, W = _Stalls(), ROOT_STALL_WINDOW
    flags = []
    for step in range(3 * W):
        slow = 0.98**W * 0.9995 ** (step - W) if step > W else 0.98**step
        flags.append(stalls(torch.tensor([0.98**step, slow], dtype=torch.float64)).tolist())
    assert all(not a for a, _ in flags)
    # the slow stretch starts at step W: its first full window of W steps ends at 2 W
    assert [b for _, b in flags].index(True) == 2 * W
    assert ROOT_STALL_DROP == 0.01 and 1 - 0.9995**W < ROOT_STALL_DROP < 1 - 0.98**W


@pytest.mark.parametrize("solver", ["newton", "lm"])
def test_root_finders_stop_a_class_that_has_stalled(solver):
    # tanh outputs stay below 1: the target 2 is out of reach, the residual creeps towards 1;
    # the reachable class converges, and the run ends long before its step limit
    model = frozen_net(nn.Linear(3, 1), nn.Tanh())
    start = torch.zeros(2, 3, dtype=torch.float64)
    t = torch.tensor([[0.5], [2.0]], dtype=torch.float64)
    args = dict(steps=500, callback=None, callback_every=1, progress=False, stop_tol=1e-10)
    if solver == "newton":
        x, steps, _ = newton(model, start, t, **args)
    else:
        x, steps, _ = levenberg_marquardt(model, start, t, box=False, **args)
    assert steps < 100
    with torch.no_grad():
        out = model(x)
    assert abs(out[0, 0] - 0.5) < 1e-9 and 0.99 < out[1, 0] <= 1.0


def test_newton_evaluates_only_the_classes_still_open():
    """Each Jacobian covers the unfinished classes only, and each trial of the line search only
    the classes that have not yet accepted a step (a spy records every forward pass)."""
    net = frozen_net(nn.Linear(12, 24), nn.ReLU(), nn.Linear(24, 3), seed=6)
    t, x_ref = reachable(net, 6, seed=7)
    start = x_ref + 0.3 * torch.randn(x_ref.shape, generator=torch.Generator().manual_seed(8))
    calls = []

    def spy(x):
        calls.append((len(x), x.requires_grad))
        return net(x)

    x, steps, _ = run_newton(spy, start, t, steps=30)
    rel = torch.linalg.vector_norm(net(x) - t, dim=1) / torch.linalg.vector_norm(t, dim=1)
    assert (rel <= 1e-12).all()  # piecewise linear: exact once in the right region
    jac = [i for i, (_, grad) in enumerate(calls) if grad]
    sizes = [calls[i][0] for i in jac]
    assert sizes[0] == 6 and sizes[-1] < 6 and sizes == sorted(sizes, reverse=True)
    for i, j in zip(jac, jac[1:] + [len(calls)], strict=True):
        trials = [n for n, _ in calls[i + 1 : j]]  # this step's line search
        assert trials[0] == calls[i][0] and trials == sorted(trials, reverse=True)


# ----------------------------------------------------------------------------- polish


def test_polish_finishes_only_the_classes_within_the_handoff():
    model = frozen_net(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3), seed=3)
    t, x_ref = reachable(model, 3, seed=4)
    g = torch.Generator().manual_seed(5)
    x = x_ref.clone()
    x[0] += 1e-3 * torch.randn(12, generator=g, dtype=torch.float64)  # near: within handoff
    x[1] = torch.rand(12, generator=g, dtype=torch.float64) * 4 - 2  # far from its target
    # x[2] stays at its pre-image: already solved

    def rel_of(x):
        with torch.no_grad():
            return (torch.linalg.vector_norm(model(x) - t, dim=1) / t.norm(dim=1)).numpy()

    before = rel_of(x)
    assert 1e-6 < before[0] <= HANDOFF < before[1] and before[2] < 1e-12
    history, calls = [(0, 0.5)], []
    out, n, n_cls = polish(
        model,
        x.clone(),
        t,
        box=False,
        steps_before=7,
        history=history,
        callback=lambda step, err: calls.append(step),
        callback_every=1,
        progress=False,
        stop_tol=1e-10,
    )
    after = rel_of(out)
    assert n_cls == 1 and 1 <= n <= POLISH_STEPS
    assert after[0] <= 1e-10
    assert torch.equal(out[1], x[1]) and torch.equal(out[2], x[2])  # the others untouched
    # the history and the callback go on from the first-order solver's steps
    assert history[0] == (0, 0.5) and [s for s, _ in history[1:]] == calls and calls[0] == 7


def test_polish_does_nothing_where_no_class_is_within_the_handoff():
    model = frozen_net(nn.Linear(4, 2))
    x0 = torch.zeros(2, 4, dtype=torch.float64)
    t = torch.tensor([[5.0, -5.0], [3.0, 4.0]], dtype=torch.float64)
    out, n, n_cls = polish(
        model,
        x0,
        t,
        box=False,
        steps_before=3,
        history=[],
        callback=None,
        callback_every=1,
        progress=False,
        stop_tol=1e-8,
    )
    assert (n, n_cls) == (0, 0) and torch.equal(out, x0)


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
