"""Root finders on the input Jacobian (nnspaces.inversion.roots): Jacobians against autograd,
Gauss-Newton's minimum-norm steps and quadratic convergence, the stall rule, the classes each
step evaluates, and the Levenberg-Marquardt polish after a first-order solver."""

import pytest
import torch
from helpers import selu_net
from test_solvers import frozen_net, reachable, run_newton
from torch import nn

from nnspaces.inversion import invert
from nnspaces.inversion.roots import (
    HANDOFF,
    POLISH_STEPS,
    ROOT_STALL_DROP,
    ROOT_STALL_WINDOW,
    _Stalls,
    jacobian,
    levenberg_marquardt,
    newton,
    polish,
)


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
    # once stalled, always stalled: class 1 falling fast again does not bring it back
    for step in range(2 * W):
        now = torch.tensor([0.98 ** (3 * W + step), slow * 0.5 ** (step + 1)], dtype=torch.float64)
        assert stalls(now).tolist() == [False, True]


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
