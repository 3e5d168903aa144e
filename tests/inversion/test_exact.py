"""Exact inversion of SELU stacks (nnspaces.inversion.exact) on the layers' vector spaces: the
inverter's spaces are spaces.layer_spaces with the library's one tolerance, pre-images reach their
targets, the backward walk against Newton on the hidden values, and failures that name the
layer."""

import math

import numpy as np
import pytest
import torch
from helpers import selu_net
from torch import nn

from nnspaces.inversion import invert
from nnspaces.inversion.exact import (
    HIDDEN,
    SELU_LOWER,
    SeluInverter,
    selu_inverse,
    selu_inverter,
)
from nnspaces.inversion.nullspace import null_space_samples
from nnspaces.spaces.layer import LayerSpaces, closest_in_bounds, layer_spaces


def reachable(model, n, seed=1, scale=1.0):
    """Targets that some input reaches, and those inputs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, model[0].in_features), generator=g, dtype=torch.float64) * scale
    with torch.no_grad():
        return model(x), x


def with_singular_values(m, n, s, seed=0):
    """An (m, n) float64 matrix with the singular values ``s``."""
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((m, m)))[0]
    V = np.linalg.qr(rng.standard_normal((n, n)))[0]
    return U[:, : len(s)] @ np.diag(s) @ V[:, : len(s)].T


# ----------------------------------------------------------------------------- the spaces


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inverter_layers_are_layer_spaces(dtype):
    model = selu_net((12, 7, 5, 3), dtype=dtype)
    inv = SeluInverter(model)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [layer.selu_after for layer in inv.layers] == [True, True, False]
    assert (inv.n_inputs, inv.n_outputs, inv.ends_in_selu) == (12, 3, False)
    eps = np.finfo(np.float32 if dtype == torch.float32 else np.float64).eps
    for layer, lin in zip(inv.layers, linears, strict=True):
        assert isinstance(layer.spaces, LayerSpaces)
        W = lin.weight.detach().double().numpy()
        ref = layer_spaces(lin.weight)
        assert np.array_equal(layer.W, W) and np.array_equal(layer.spaces.matrix, W)
        assert np.array_equal(layer.b, lin.bias.detach().double().numpy())
        assert np.array_equal(layer.spaces.null_space, ref.null_space)
        assert np.array_equal(layer.spaces.S, ref.S)
        # numpy's matrix_rank rule with the weight's own machine epsilon
        S = np.linalg.svd(W, compute_uv=False)
        assert layer.spaces.tol == pytest.approx(S.max() * max(W.shape) * eps, rel=1e-12)
    assert SeluInverter(selu_net((6, 4), selu_last=True)).ends_in_selu


def test_rank_uses_the_librarys_tolerance():
    # 3 x 5, singular values 1, 1e-13, 1e-17: tol = 1 * 5 * eps64 = 1.1e-15 -> rank 2
    W = with_singular_values(3, 5, [1.0, 1e-13, 1e-17])
    model = nn.Sequential(nn.Linear(5, 3)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(W))
    spaces = SeluInverter(model).layers[0].spaces
    assert spaces.rank == 2 and spaces.null_space.shape == (5, 3)
    assert np.abs(W @ spaces.null_space).max() < 1e-15
    assert np.allclose(spaces.null_space.T @ spaces.null_space, np.eye(3), atol=1e-12)
    # float32 weights: tol = 1 * 5 * eps32 = 6e-7 keeps 1e-5 and drops float32 rounding noise
    W32 = with_singular_values(3, 5, [1.0, 1e-5, 1e-9])
    model32 = nn.Sequential(nn.Linear(5, 3))
    with torch.no_grad():
        model32[0].weight.copy_(torch.from_numpy(W32))
    assert SeluInverter(model32).layers[0].spaces.rank == 2


def test_preimage_splits_into_row_and_null_space():
    g = torch.Generator().manual_seed(2)
    W = torch.randn((5, 9), generator=g, dtype=torch.float64)
    b = torch.randn(5, generator=g, dtype=torch.float64)
    z = torch.randn((3, 5), generator=g, dtype=torch.float64)
    ref = torch.randn((3, 9), generator=g, dtype=torch.float64)
    spaces = layer_spaces(W)
    pre = spaces.preimage(z - b, reference=ref)
    Wn, N = W.numpy(), spaces.null_space
    assert np.allclose(pre.x @ Wn.T + b.numpy(), z.numpy(), atol=1e-12)
    assert np.abs(pre.residual).max() < 1e-12
    assert np.allclose(pre.x, pre.particular + pre.null_part, atol=1e-15)
    assert np.abs(pre.null_part @ Wn.T).max() < 1e-12  # W maps the null part to zero
    assert np.abs(pre.particular @ N).max() < 1e-12  # particular is in the row space
    assert np.abs(np.sum(pre.particular * pre.null_part, axis=1)).max() < 1e-10
    # the chosen pre-image is the closest one to the reference: ref - x is in the row space
    assert np.abs((ref.numpy() - pre.x) @ N).max() < 1e-12
    # by hand: ref + W^+ (z - b - W ref)
    expected = ref + (z - b - ref @ W.T) @ torch.linalg.pinv(W).T
    assert np.allclose(pre.x, expected.numpy(), atol=1e-12)
    # the pseudo-inverse and the minimum-norm pre-image
    assert np.allclose(spaces.pinv, torch.linalg.pinv(W).numpy(), atol=1e-12)
    least = spaces.preimage(z - b)
    assert np.allclose(least.x, (z - b).numpy() @ spaces.pinv.T, atol=1e-12)
    assert np.abs(least.null_part).max() == 0
    # null-space coefficients: x = W^+ z + N c
    c = np.arange(3 * 4, dtype=np.float64).reshape(3, 4)
    coef = spaces.preimage(z - b, null_coeffs=c)
    assert np.allclose(coef.null_part, c @ N.T, atol=1e-12)
    assert np.allclose(coef.x @ Wn.T, (z - b).numpy(), atol=1e-10)
    with pytest.raises(ValueError, match="give reference or null_coeffs, not both"):
        spaces.preimage(z, reference=ref, null_coeffs=c)
    with pytest.raises(ValueError, match="null_coeffs need 4 values per row"):
        spaces.preimage(z, null_coeffs=c[:, :3])


def test_preimage_residual_shows_a_value_outside_the_column_space():
    W = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # range: z3 = z1 + z2
    pre = layer_spaces(W).preimage(np.array([1.0, 2.0, 0.0]))
    # least squares: x minimises (x1-1)^2 + (x2-2)^2 + (x1+x2)^2 -> x = (0, 1)
    assert np.allclose(pre.x, [[0.0, 1.0]])
    assert np.allclose(pre.residual, [[1.0, 1.0, -1.0]])


def test_closest_preimage_in_a_box_by_hand():
    # x1 + x2 = 1 closest to (2, -1): the unconstrained answer is (2, -1) itself; inside
    # [0, 1]^2 it is (1, 0); x1 + x2 = 3 has no point in the box
    spaces = layer_spaces(np.array([[1.0, 1.0]]))
    ref = np.array([2.0, -1.0])
    assert np.allclose(spaces.closest_preimage(np.array([1.0]), ref), [2.0, -1.0])
    assert np.allclose(spaces.closest_preimage(np.array([1.0]), ref, 0.0, 1.0), [1.0, 0.0])
    assert np.allclose(closest_in_bounds(spaces, np.array([1.0]), ref, 0.0, 1.0), [1.0, 0.0])
    assert spaces.closest_preimage(np.array([3.0]), ref, 0.0, 1.0) is None
    # a lower bound only (SELU's range): x1 + x2 = 0 closest to (1, -3) above -1 -> (1, -1)
    x = spaces.closest_preimage(np.array([0.0]), np.array([1.0, -3.0]), -1.0, math.inf)
    assert np.allclose(x, [1.0, -1.0])


# ----------------------------------------------------------------------------- exact inversion


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize(
    ("widths", "selu_last"), [((30, 10), True), ((40, 20, 12, 5), False), ((40, 20, 12, 5), True)]
)
def test_exact_reaches_reachable_targets(widths, selu_last, hidden):
    model = selu_net(widths, selu_last=selu_last)
    K = widths[-1]
    t, _ = reachable(model, K)
    ref = torch.full((K, widths[0]), 0.5, dtype=torch.float64)
    r = invert(
        model, t, method="exact", start=ref, network="selu-fcnn", hidden=hidden, progress=False
    )
    assert r.success.all(), r.reason
    assert r.rel_error.max() < 1e-8
    # checked independently of the result's own bookkeeping
    with torch.no_grad():
        out = model(r.image)
    assert torch.linalg.vector_norm(out - t, dim=1).max() / t.norm(dim=1).min() < 1e-8
    path = "walk" if hidden == "walk" or (hidden == "auto" and len(widths) == 2) else "newton"
    assert r.settings["hidden"] == path and r.settings["dtype"] == "float64"


def test_exact_stays_closest_to_the_reference_for_one_layer():
    # one linear layer: the pre-image closest to the reference is its projection onto the
    # affine pre-image set, reference + W^+ (t - b - W reference)
    model = nn.Sequential(nn.Linear(12, 4)).double().eval()
    t, _ = reachable(model, 4)
    ref = torch.rand((4, 12), dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    r = invert(model, t, method="exact", start=ref, network="selu-fcnn", progress=False)
    W, b = model[0].weight.detach(), model[0].bias.detach()
    expected = ref + (t - b - ref @ W.T) @ torch.linalg.pinv(W).T
    assert torch.allclose(r.image, expected, atol=1e-10)
    assert torch.equal(r.start, ref)


def test_newton_path_stays_closest_to_the_reference_in_the_first_layer():
    # whatever z1 Newton finds, the image is the pre-image of z1 closest to the reference:
    # image - reference lies in the first layer's row space
    model = selu_net((30, 8, 3))
    t, _ = reachable(model, 3)
    ref = torch.rand((3, 30), dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    r = invert(model, t, method="exact", start=ref, hidden="newton", progress=False)
    assert r.success.all()
    N = layer_spaces(model[0].weight).null_space
    assert np.abs((r.image - ref).numpy() @ N).max() < 1e-10


def test_walk_fails_where_newton_succeeds():
    # square 12 x 12 hidden layers leave the greedy walk no freedom: it reaches a layer whose
    # required value needs inputs below SELU's range; Newton on z1 avoids that
    model = selu_net((40, 12, 12, 12, 4))
    t, _ = reachable(model, 4, seed=0, scale=3.0)
    ref = torch.full((4, 40), 0.5, dtype=torch.float64)
    kw = dict(method="exact", start=ref, progress=False)
    walk = invert(model, t, hidden="walk", **kw)
    assert not walk.success.any()
    for reason in walk.reason:
        assert reason.startswith("layer ") and " of 4: no input inside SELU's range" in reason
    assert torch.isnan(walk.image).all()
    for hidden in ("newton", "auto"):
        r = invert(model, t, hidden=hidden, **kw)
        assert r.success.all() and r.rel_error.max() < 1e-8
        assert r.settings["hidden"] == "newton"


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
    assert "layer 2 of 2: no input inside SELU's range" in r.reason[0]
    # the printed limit is the bound plus the margin, and the message says so
    assert "(every value > -1.7571: the bound -1.7581 plus 0.001)" in r.reason[0]
    assert torch.isnan(r.image[0]).all()
    assert r.success[1] and r.rel_error[1] < 1e-10 and r.reason[1] == ""


def test_target_outside_a_tall_layers_range_is_reported():
    model = nn.Sequential(nn.Linear(2, 4)).double().eval()  # 4 outputs from 2 inputs
    t, _ = reachable(model, 4)
    t[1] += torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)  # off the 2-D range
    r = invert(
        model, t, method="exact", start=torch.zeros(4, 2), network="selu-fcnn", progress=False
    )
    assert not r.success[1]
    assert r.reason[1] == "layer 1 of 1: its required value is outside the layer's range"
    assert r.success[[0, 2, 3]].all()


def test_walk_with_a_box_stays_inside():
    model = nn.Sequential(nn.Linear(10, 3), nn.SELU()).double().eval()
    t, x = reachable(model, 3)  # reached by inputs in [0, 1)
    inv = selu_inverter(model)
    ref = np.full((3, 10), 2.0)  # far outside the box
    X, ok, reasons = inv.invert(t.numpy(), ref, box=(0.0, 1.0))
    assert ok.all(), reasons
    assert X.min() >= -1e-12 and X.max() <= 1 + 1e-12
    assert np.allclose(inv.forward(X)[-1], t.numpy(), atol=1e-9)
    free, _, _ = inv.invert(t.numpy(), ref)
    assert free.max() > 1  # without the box the closest pre-image leaves it


def test_selu_inverse_is_exact():
    z = np.linspace(-6, 6, 101)
    h = torch.selu(torch.from_numpy(z)).numpy()
    assert np.allclose(selu_inverse(h), z, atol=1e-12)
    assert SELU_LOWER == pytest.approx(-1.0507009873554805 * 1.6732632423543772)
    with pytest.raises(ValueError, match="outside SELU's range"):
        selu_inverse(np.array([SELU_LOWER - 0.1]))


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


def test_inverter_is_cached_until_the_weights_change():
    model = selu_net((8, 5, 3))
    inv = selu_inverter(model)
    assert selu_inverter(model) is inv
    with torch.no_grad():
        model[0].weight.mul_(2.0)
    fresh = selu_inverter(model)
    assert fresh is not inv
    assert np.array_equal(fresh.layers[0].W, model[0].weight.detach().numpy())
    t, _ = reachable(model, 3)
    r = invert(model, t, method="exact", start=torch.zeros(3, 8), progress=False)
    assert r.success.all() and r.rel_error.max() < 1e-8


def test_exact_refuses_networks_it_cannot_invert():
    torch.manual_seed(0)
    cnn = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 3)
    ).eval()
    with pytest.raises(ValueError, match="Linear / SELU layers only; found Conv2d"):
        invert(
            cnn,
            torch.zeros(3, 3),
            method="exact",
            start=torch.zeros(3, 1, 8, 8),
            network="resnet18",
            progress=False,
        )
    with pytest.raises(ValueError, match="every SELU must follow a Linear layer"):
        selu_inverter(nn.Sequential(nn.SELU(), nn.Linear(3, 2)))


# ----------------------------------------------------------------------------- null space


def test_null_space_samples_give_one_output():
    model = selu_net((50, 20, 8, 4))
    t, _ = reachable(model, 1)
    ref = torch.full((50,), 0.3, dtype=torch.float64)
    images, ok, reasons = null_space_samples(model, t[0], ref, 6, seed=3)
    assert ok.all(), reasons
    assert images.shape == (6, 50)
    with torch.no_grad():
        out = model(images)
    assert (out - t).abs().max() < 1e-9
    flat = images.reshape(6, -1)
    assert torch.cdist(flat, flat).fill_diagonal_(math.inf).min() > 1e-2  # really different
    # they differ only in the first layer's null space
    W1 = model[0].weight.detach()
    assert ((flat - flat[0]) @ W1.T).abs().max() < 1e-10
    images2, _, _ = null_space_samples(model, t[0], ref, 6, seed=3)
    assert torch.equal(images, images2)  # seeded
    # scale 0: every sample is the exact pre-image closest to the reference
    same, ok0, _ = null_space_samples(model, t[0], ref, 3, scale=0.0)
    assert ok0.all() and torch.allclose(same, same[:1].expand(3, -1), atol=1e-12)
    exact = invert(model, t, method="exact", start=ref.view(1, -1), classes=[0], progress=False)
    assert torch.allclose(same[0], exact.image[0], atol=1e-9)


def test_null_space_samples_keep_shape_and_box():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.SELU()).double().eval()
    torch.manual_seed(0)
    with torch.no_grad():
        t = model(torch.rand(1, 1, 4, 4, dtype=torch.float64))[0]
    ref = torch.full((1, 1, 4, 4), 0.5, dtype=torch.float64)
    images, ok, _ = null_space_samples(model, t, ref, 4, scale=2.0, box=True, seed=1)
    assert images.shape == (4, 1, 4, 4) and ok.all()
    assert images.min() >= -1e-12 and images.max() <= 1 + 1e-12
    with torch.no_grad():
        assert (model(images) - t).abs().max() < 1e-9
    with pytest.raises(ValueError, match="k=0 must be an integer >= 1"):
        null_space_samples(model, t, ref, 0)
    with pytest.raises(ValueError, match="scale=-1 must be >= 0"):
        null_space_samples(model, t, ref, 2, scale=-1)
    with pytest.raises(ValueError, match="target has 2 values; the network has 3"):
        null_space_samples(model, t[:2], ref, 2)
    with pytest.raises(ValueError, match="reference has 15 values; the network takes 16"):
        null_space_samples(model, t, ref.flatten()[:15], 2)


def test_box_reach_gap_is_the_distance_to_the_box_for_an_identity_layer():
    """With W = I and no SELU the closest image in [0, 1] is the target clipped into the box,
    so the gap is known by hand; SELU after the layer is undone first."""
    from nnspaces.inversion.nullspace import box_reach_gap

    net = nn.Sequential(nn.Linear(3, 3)).double().eval()
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(3))
        net[0].bias.zero_()
    t = torch.tensor([[0.2, 0.5, 0.9], [1.5, 0.5, -1.0], [2.0, 2.0, 2.0]], dtype=torch.float64)
    by_hand = (t - t.clamp(0, 1)).norm(dim=1) / t.norm(dim=1)
    gap = box_reach_gap(net, t)
    np.testing.assert_allclose(gap, by_hand.numpy(), atol=1e-8)
    assert gap[0] < 1e-8 and gap[1] > 0.5  # inside the box: reachable; outside: not
    # a larger box reaches the second row
    assert box_reach_gap(net, t[1:2], lo=-1.0, hi=2.0)[0] < 1e-8
    # SELU after the layer: the target is the SELU of a reachable pre-activation
    selu = nn.Sequential(net[0], nn.SELU()).eval()
    x = torch.tensor([[0.3, 0.0, 1.0]], dtype=torch.float64)
    assert box_reach_gap(selu, selu(x).detach())[0] < 1e-8
    assert box_reach_gap(selu, selu(x + 0.5).detach())[0] > 0.1


def test_box_reach_gap_refuses_deeper_networks():
    from nnspaces.inversion.nullspace import box_reach_gap

    with pytest.raises(ValueError, match="one-layer SELU network; this one has 2 layers"):
        box_reach_gap(selu_net([6, 4, 3]), torch.zeros(1, 3, dtype=torch.float64))
