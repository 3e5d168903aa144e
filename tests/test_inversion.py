"""Inverse maps on small networks whose answers we can check: exact inversion of SELU stacks,
null-space samples, Newton and box solvers, targets and start images on a toy dataset, and
the errors for bad input."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from nnspaces.exact import SELU_LOWER, linear_preimage, selu_inverse, selu_inverter
from nnspaces.inversion import (
    ScoreStats,
    combine_best,
    cross_check,
    invert,
    make_targets,
    null_space_samples,
    start_images,
)


def selu_net(widths, *, selu_last=False, seed=0):
    """A random Linear/SELU stack in float64 (what ``exact`` inverts)."""
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2 or selu_last:
            layers.append(nn.SELU())
    return nn.Sequential(*layers).double().eval()


def reachable(model, n, seed=1):
    """Targets that some input reaches, and those inputs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, model[0].in_features), generator=g, dtype=torch.float64)
    with torch.no_grad():
        return model(x), x


# ----------------------------------------------------------------------------- exact


@pytest.mark.parametrize("hidden", ["auto", "prior", "newton"])
@pytest.mark.parametrize(
    ("widths", "selu_last"), [((30, 10), True), ((40, 20, 12, 5), False), ((40, 20, 12, 5), True)]
)
def test_exact_reaches_reachable_targets(widths, selu_last, hidden):
    model = selu_net(widths, selu_last=selu_last)
    K = widths[-1]
    t, _ = reachable(model, K)
    prior = torch.full((K, widths[0]), 0.5, dtype=torch.float64)
    r = invert(
        model, t, method="exact", start=prior, network="selu-fcnn", hidden=hidden, progress=False
    )
    assert r.success.all(), r.reason
    assert r.rel_error.max() < 1e-8
    # checked independently of the result's own bookkeeping
    with torch.no_grad():
        out = model(r.image)
    assert torch.linalg.vector_norm(out - t, dim=1).max() / t.norm(dim=1).min() < 1e-8


def test_exact_stays_closest_to_the_prior_for_one_layer():
    # one linear layer: the pre-image closest to the prior is the prior's projection onto the
    # affine pre-image set, prior + W^+ (t - b - W prior)
    model = nn.Sequential(nn.Linear(12, 4)).double().eval()
    t, _ = reachable(model, 4)
    prior = torch.rand((4, 12), dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    r = invert(model, t, method="exact", start=prior, network="selu-fcnn", progress=False)
    W, b = model[0].weight.detach(), model[0].bias.detach()
    expected = prior + (t - b - prior @ W.T) @ torch.linalg.pinv(W).T
    assert torch.allclose(r.image, expected, atol=1e-10)


def test_null_space_part_is_orthogonal_to_row_space():
    g = torch.Generator().manual_seed(2)
    W = torch.randn((5, 9), generator=g, dtype=torch.float64)
    b = torch.randn(5, generator=g, dtype=torch.float64)
    z = torch.randn((3, 5), generator=g, dtype=torch.float64)
    prior = torch.randn((3, 9), generator=g, dtype=torch.float64)
    pre = linear_preimage(W, b, z, prior=prior)
    Wn = W.numpy()
    assert np.allclose(pre.h @ Wn.T + b.numpy(), z.numpy(), atol=1e-12)
    assert np.abs(pre.null_part @ Wn.T).max() < 1e-12  # W maps the null part to zero
    assert np.abs(pre.particular @ pre.null_basis).max() < 1e-12  # particular is in the row space
    assert np.abs(np.sum(pre.particular * pre.null_part, axis=1)).max() < 1e-10
    # the chosen pre-image is the closest one to the prior: prior - h is in the row space
    assert np.abs((prior.numpy() - pre.h) @ pre.null_basis).max() < 1e-12


def test_null_space_samples_give_one_output():
    model = selu_net((50, 20, 8, 4))
    t, _ = reachable(model, 1)
    prior = torch.full((50,), 0.3, dtype=torch.float64)
    s = null_space_samples(model, t[0], 2, 6, prior=prior, network="selu-fcnn", seed=3)
    assert s.success.all(), s.reason
    assert (s.output - t).abs().max() < 1e-9
    flat = s.image.reshape(6, -1)
    assert torch.cdist(flat, flat).fill_diagonal_(math.inf).min() > 1e-2  # really different
    again = null_space_samples(model, t[0], 2, 6, prior=prior, network="selu-fcnn", seed=3)
    assert torch.equal(s.image, again.image)  # seeded


def test_unreachable_hidden_value_is_reported():
    # the last layer reads hidden units 0 and 1 directly: an output of -5 needs SELU(z) = -5,
    # below SELU's range, so no input exists
    model = selu_net((6, 3, 2))
    with torch.no_grad():
        model[2].weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
        model[2].bias.zero_()
    t = torch.tensor([[-5.0, 0.5], [0.2, 0.3]], dtype=torch.float64)
    r = invert(
        model,
        t,
        method="exact",
        start=torch.zeros(2, 6),
        network="selu-fcnn",
        classes=[0, 1],
        progress=False,
    )
    assert not r.success[0] and "unreachable" in r.reason[0]
    assert torch.isnan(r.image[0]).all()
    assert r.success[1] and r.rel_error[1] < 1e-10


def test_target_outside_a_tall_layers_range_is_reported():
    model = nn.Sequential(nn.Linear(2, 4)).double().eval()  # 4 outputs from 2 inputs
    t, _ = reachable(model, 4)
    t[1] += torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)  # off the 2-D range
    r = invert(
        model, t, method="exact", start=torch.zeros(4, 2), network="selu-fcnn", progress=False
    )
    assert not r.success[1] and "outside the layer's range" in r.reason[1]
    assert r.success[[0, 2, 3]].all()


def test_selu_inverse_is_exact():
    z = np.linspace(-6, 6, 101)
    h = torch.selu(torch.from_numpy(z)).numpy()
    assert np.allclose(selu_inverse(h), z, atol=1e-12)
    with pytest.raises(ValueError, match="outside SELU's range"):
        selu_inverse(np.array([SELU_LOWER - 0.1]))


# ----------------------------------------------------------------------------- iterative


def test_newton_converges_on_smooth_nets():
    model = selu_net((30, 16, 4))
    t, _ = reachable(model, 4)
    start = torch.full((4, 30), 0.5, dtype=torch.float64)
    r = invert(model, t, method="newton", start=start, network="selu-fcnn", progress=False)
    assert r.success.all() and r.rel_error.max() < 1e-10
    assert r.steps < 20  # quadratic convergence, not a slow crawl

    torch.manual_seed(0)
    tanh = nn.Sequential(nn.Linear(30, 16), nn.Tanh(), nn.Linear(16, 4)).eval()
    with torch.no_grad():
        t = tanh(torch.rand(4, 30))
    r = invert(tanh, t, method="newton", start=torch.full((4, 30), 0.5), progress=False)
    assert r.rel_error.max() < 1e-5  # float32 for non-SELU nets


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


def test_training_preset_moves_little_and_restores_the_model():
    model = small_relu_cnn()
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    before = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        t = model.eval()(torch.rand(3, 1, 8, 8))
    model.train()
    start = torch.rand(3, 1, 8, 8)
    plain = invert(model, t, method="descent", start=start, steps=5, progress=False)
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    assert plain.image.shape == start.shape


def test_combine_best_picks_lowest_error_and_box():
    model = selu_net((30, 16, 4))
    t, _ = reachable(model, 4)
    start = torch.full((4, 30), 0.5, dtype=torch.float64)
    kw = dict(start=start, network="selu-fcnn", progress=False)
    exact = invert(model, t, method="exact", **kw)
    box = invert(model, t, method="box", steps=50, **kw)
    best = combine_best([box, exact])
    assert np.array_equal(best.rel_error, np.minimum(box.rel_error, exact.rel_error))
    best_box = combine_best([box, exact], box=True)
    for i in range(4):
        inside = [r for r in (box, exact) if r.outside[i] == 0]
        assert best_box.rel_error[i] == min(r.rel_error[i] for r in inside)
        assert best_box.outside[i] == 0
        assert best_box.source[i] in ("box", "exact")


# ----------------------------------------------------------------------------- targets, starts


@pytest.fixture
def toy():
    """Four images per class for two classes; outputs chosen by hand."""
    x = torch.arange(8 * 4, dtype=torch.float32).reshape(8, 1, 2, 2)
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    out = torch.tensor(
        [[5, 0], [1, 2], [4, 1], [3, 3], [0, 6], [2, 9], [1, 1], [0, 4]], dtype=torch.float64
    )
    return x, y, ScoreStats(out, y)


def test_targets_match_hand_values(toy):
    _, _, stats = toy
    t = make_targets(stats, "min-max")
    assert torch.equal(t, torch.tensor([[5.0, 0.0], [0.0, 9.0]], dtype=torch.float64))
    t1 = make_targets(stats, "min-max", classes=1)
    assert torch.equal(t1, t[1:])
    p = make_targets(stats, "percentile", percentiles=(0, 100))
    assert torch.equal(p, t)
    p = make_targets(stats, "percentile", percentiles=(25, 75))
    # output 0 sorted: 0 0 1 1 2 3 4 5 -> 25th 0.75, 75th 3.25; output 1: 0 1 1 2 3 4 6 9
    assert torch.allclose(p, torch.tensor([[3.25, 1.0], [0.75, 4.5]], dtype=torch.float64))


def test_start_images_match_hand_values(toy):
    x, y, stats = toy
    t = make_targets(stats, "min-max")  # class 0: (5, 0); class 1: (0, 9)
    avg = start_images("avg-img", x, y)
    assert torch.equal(avg[0], x[:4].mean(0)) and torch.equal(avg[1], x[4:].mean(0))
    # squared distances to (5, 0): 0, 20, 2, 13 -> image 0 then 2; to (0, 9): 9, 4, 65, 25
    mn = start_images("min-img", x, y, t, stats=stats)
    assert torch.equal(mn[0], x[0]) and torch.equal(mn[1], x[5])
    am = start_images("avg-min-img", x, y, t, stats=stats, fraction=0.5)
    assert torch.equal(am[0], (x[0] + x[2]) / 2) and torch.equal(am[1], (x[5] + x[4]) / 2)
    n1 = start_images("avg-img+noise", x, y, seed=4)
    n2 = start_images("avg-img+noise", x, y, seed=4)
    assert torch.equal(n1, n2) and 0 <= (n1 - avg).min() and (n1 - avg).max() < 1


# ----------------------------------------------------------------------------- cross-check


def test_cross_check_counts_agreement():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False)).eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(3, 4))
    imgs = torch.tensor([[1.0, 0, 0, 0], [0, 0, 1.0, 0], [float("nan"), 0, 0, 0]])
    check = cross_check(imgs, {"m": model}, classes=[0, 1, 0])
    assert check["m"]["predicted"][:2] == [0, 2]
    assert check["m"]["agree"] == [True, False, False] and check["m"]["n_agree"] == 1


# ----------------------------------------------------------------------------- bad input


@pytest.fixture
def fcnn1_like():
    return selu_net((784, 10), selu_last=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "magic"}, "unknown method 'magic'; allowed: avg-img"),
        ({"method": "exact", "network": "vgg"}, "unknown network 'vgg'; allowed: fcnn1"),
        ({"method": "exact", "classes": [10]}, "class 10 is out of range; allowed: 0..9"),
        ({"method": "exact", "priors": {"blur": 1.0}}, "unknown prior 'blur'; allowed: tv"),
        ({"method": "box", "steps": 0}, "steps=0 must be an integer >= 1"),
        ({"method": "exact", "start": "mean-img"}, "unknown start 'mean-img'; allowed: avg-img"),
    ],
)
def test_bad_arguments_name_the_value(fcnn1_like, kwargs, message):
    kwargs = {"targets": torch.zeros(1 if "classes" in kwargs else 10, 10)} | kwargs
    with pytest.raises(ValueError) as e:
        invert(
            fcnn1_like, start=kwargs.pop("start", torch.zeros(10, 784)), progress=False, **kwargs
        )
    assert message in str(e.value)


def test_bad_targets_name_the_value(fcnn1_like):
    start = torch.zeros(10, 784)
    with pytest.raises(ValueError, match="target of length 9 .*expected 10 values"):
        invert(fcnn1_like, torch.zeros(10, 9), method="exact", start=start, progress=False)
    low = torch.zeros(10, 10)
    low[3, 4] = -2.0
    with pytest.raises(ValueError, match=r"target value -2 is below SELU's lower bound -1\.758"):
        invert(fcnn1_like, low, method="exact", start=start, progress=False)
    with pytest.raises(ValueError, match="unknown target 'max'; allowed: min-max, percentile"):
        make_targets(ScoreStats(torch.zeros(4, 10, dtype=torch.float64), torch.arange(4)), "max")


def test_exact_refuses_networks_it_cannot_invert():
    with pytest.raises(ValueError, match="Linear / SELU layers only; found Conv2d"):
        invert(
            small_relu_cnn(),
            torch.zeros(3, 3),
            method="exact",
            start=torch.zeros(3, 1, 8, 8),
            network="resnet18",
            progress=False,
        )


def test_first_layer_jacobian_matches_autograd():
    model = selu_net((12, 9, 7, 4), selu_last=True)
    inv = selu_inverter(model)
    z1 = torch.randn(3, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out, J = inv._from_first(z1.numpy())
    rest = nn.Sequential(*list(model)[1:])  # SELU, Linear, SELU, Linear, SELU
    with torch.no_grad():
        assert np.allclose(out, rest(z1).numpy(), atol=1e-12)
    for i in range(3):
        ref = torch.autograd.functional.jacobian(rest, z1[i : i + 1])[0, :, 0, :]
        assert np.allclose(J[i], ref.numpy(), atol=1e-12)
    # Newton from there reaches a reachable target
    t = out[::-1].copy()
    z = inv.hidden_newton(t, z1.numpy())
    assert np.abs(inv._from_first(z, jacobian=False)[0] - t).max() < 1e-10
