"""Residual spaces: the paper's class residuals, row-space projections, what a layer discards,
and the energy each layer of a network keeps."""

import numpy as np
import pytest
import torch
from torch import nn

from nnspaces.spaces.layer import layer_spaces
from nnspaces.spaces.residuals import (
    class_residuals,
    energy_kept,
    energy_kept_per_layer,
    layer_matrix,
    null_space_residual,
    row_space_projection,
)

RNG = np.random.default_rng(0)
WIDE = RNG.standard_normal((10, 50))
RANK3 = RNG.standard_normal((8, 3)) @ RNG.standard_normal((3, 20))


def test_class_residual_formula_and_orthogonality():
    W = RNG.standard_normal((10, 784))
    means = RNG.random((10, 1, 28, 28))
    r = class_residuals(W, means)
    assert r.shape == means.shape
    a = means.reshape(10, -1)
    rf = r.reshape(10, -1)
    for c in range(10):
        expected = a[c] - (W[c] @ a[c]) / (W[c] @ W[c]) * W[c]
        np.testing.assert_allclose(rf[c], expected, atol=1e-12)
        assert abs(rf[c] @ W[c]) < 1e-9
    # torch inputs, float32: the same residuals (computed in float64)
    rt = class_residuals(torch.from_numpy(W).float(), torch.from_numpy(means).float())
    assert rt.dtype == np.float64
    np.testing.assert_allclose(rt, r, atol=1e-5)
    with pytest.raises(ValueError, match="9 class means"):
        class_residuals(W, means[:9])


def test_class_residual_of_a_zero_row():
    W = np.eye(3, 5)
    W[1] = 0
    with pytest.raises(ValueError, match=r"rows \[1\] of W are zero"):
        class_residuals(W, np.ones((3, 5)))


def test_class_residual_by_hand():
    W = np.array([[1.0, 0.0], [1.0, 1.0]])
    means = np.array([[3.0, 4.0], [2.0, 0.0]])
    # class 0 keeps only x: residual (0, 4); class 1 removes the (1, 1) component of (2, 0)
    np.testing.assert_allclose(class_residuals(W, means), [[0.0, 4.0], [1.0, -1.0]])


def test_null_space_residual_is_invisible_and_orthogonal():
    W = RANK3
    X = RNG.standard_normal((5, 20))
    R = null_space_residual(W, X)
    P = row_space_projection(W, X)
    np.testing.assert_allclose(P + R, X, atol=1e-12)
    np.testing.assert_allclose(W @ R.T, 0, atol=1e-9)  # the layer cannot see the residual
    np.testing.assert_allclose(np.sum(P * R, axis=1), 0, atol=1e-9)
    # the projection is the one onto span(rows of W): W^+ W x
    np.testing.assert_allclose(P, X @ (np.linalg.pinv(W, rcond=1e-10) @ W).T, atol=1e-9)
    np.testing.assert_allclose(row_space_projection(W, P), P, atol=1e-10)  # idempotent
    # one vector, and image-shaped batches, keep their shape
    assert null_space_residual(W, X[0]).shape == (20,)
    np.testing.assert_allclose(null_space_residual(W, X[0]), R[0], atol=1e-12)
    W49 = WIDE[:, :49]
    imgs = RNG.random((2, 1, 7, 7))
    assert null_space_residual(W49, imgs).shape == imgs.shape
    np.testing.assert_allclose(
        null_space_residual(W49, imgs).reshape(2, -1),
        null_space_residual(W49, imgs.reshape(2, -1)),
        atol=1e-12,
    )
    with pytest.raises(ValueError, match="do not flatten"):
        null_space_residual(W, RNG.random((2, 21)))
    with pytest.raises(ValueError, match="vector of length 21"):
        null_space_residual(W, RNG.random(21))


def test_projection_takes_spaces_or_matrices():
    X = RNG.standard_normal((3, 20))
    sp = layer_spaces(RANK3)
    np.testing.assert_allclose(
        row_space_projection(sp, X), row_space_projection(RANK3, X), atol=1e-10
    )
    np.testing.assert_allclose(
        null_space_residual(torch.from_numpy(RANK3), torch.from_numpy(X)),
        null_space_residual(sp, X),
        atol=1e-10,
    )


def test_zero_matrix_sees_nothing():
    x = RNG.standard_normal(6)
    np.testing.assert_allclose(null_space_residual(np.zeros((4, 6)), x), x)
    np.testing.assert_allclose(row_space_projection(np.zeros((4, 6)), x), 0)
    assert energy_kept(np.zeros((4, 6)), x) == 0


def test_energy_kept_splits_the_norm():
    W = RANK3
    X = RNG.standard_normal((4, 20))
    kept = energy_kept(W, X)
    assert kept.shape == (4,)
    R = null_space_residual(W, X)
    np.testing.assert_allclose(kept, 1 - np.sum(R**2, 1) / np.sum(X**2, 1), atol=1e-12)
    assert np.all((kept > 0) & (kept < 1))
    # a vector in the row space is kept whole, one in the null space not at all
    assert energy_kept(W, W[0]) == pytest.approx(1.0)
    assert energy_kept(W, layer_spaces(W).null_space[:, 0]) == pytest.approx(0.0, abs=1e-12)
    # by hand: W sees the first coordinate only
    assert energy_kept(np.array([[2.0, 0.0]]), np.array([3.0, 4.0])) == pytest.approx(9 / 25)
    # images: over all pixels of each
    imgs = RNG.random((2, 1, 4, 5))
    np.testing.assert_allclose(energy_kept(W, imgs), energy_kept(W, imgs.reshape(2, -1)))


def test_energy_kept_of_nothing_is_nan():
    with np.errstate(all="raise"):  # no warning either
        kept = energy_kept(RANK3, np.zeros((2, 20)))
    assert np.all(np.isnan(kept))


def test_layer_matrix():
    lin = nn.Linear(5, 3)
    np.testing.assert_array_equal(layer_matrix(lin), lin.weight.detach().double().numpy())
    conv = nn.Conv2d(2, 4, 3)
    M = layer_matrix(conv)
    assert M.shape == (4, 2 * 9) and M.dtype == np.float64
    # row o is kernel o, channel by channel, each row by row
    w = conv.weight.detach().double().numpy()
    for o in range(4):
        np.testing.assert_array_equal(M[o], np.concatenate([w[o, 0].ravel(), w[o, 1].ravel()]))
    with pytest.raises(ValueError, match="groups=2"):
        layer_matrix(nn.Conv2d(2, 4, 3, groups=2))
    with pytest.raises(TypeError, match="got ReLU"):
        layer_matrix(nn.ReLU())


def _patches(x, k, padding, stride):
    """Every k x k patch of every channel of ``x`` (B, C, H, W), by hand: (P, C*k*k)."""
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    b, c, h, w = x.shape
    rows = []
    for i in range(b):
        for r in range(0, h - k + 1, stride):
            for s in range(0, w - k + 1, stride):
                rows.append(x[i, :, r : r + k, s : s + k].ravel())
    return np.array(rows)


@pytest.mark.parametrize(("padding", "stride"), [(1, 1), (0, 2)])
def test_energy_kept_per_layer_matches_single_layers(padding, stride):
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 4, 3, padding=padding, stride=stride)
    side = (6 + 2 * padding - 3) // stride + 1
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(4 * side * side, 5)).double()
    x = torch.rand(3, 1, 6, 6, dtype=torch.float64)
    kept = energy_kept_per_layer(model, x)
    assert list(kept) == ["0", "3"]
    hidden = model[:3](x).detach()
    expected = np.sum(row_space_projection(model[3].weight, hidden) ** 2) / np.sum(
        hidden.numpy() ** 2
    )
    assert kept["3"] == pytest.approx(expected)
    # the convolution: over all its input patches (4 kernels of 9 values: a 4-D row space)
    P = _patches(x.numpy(), 3, padding, stride)
    Wc = conv.weight.detach().numpy().reshape(4, 9)
    Q = np.linalg.qr(Wc.T)[0]
    expected_conv = np.sum((P @ Q) ** 2) / np.sum(P**2)
    assert kept["0"] == pytest.approx(expected_conv, rel=1e-10)
    assert 0 < kept["0"] < 1
    assert not conv._forward_hooks and not model[3]._forward_hooks  # hooks removed


def test_energy_kept_per_layer_on_a_float32_network():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.SELU(), nn.Linear(3, 2))
    x = torch.rand(5, 1, 4, 4)
    kept = energy_kept_per_layer(model, x)
    assert list(kept) == ["1", "3"]
    # the last layer is 2 x 3: its row space is 2 of 3 dimensions
    h = model[:3](x).detach().double().numpy()
    expected = float(np.sum(energy_kept(model[3].weight, h) * np.sum(h**2, 1)) / np.sum(h**2))
    assert kept["3"] == pytest.approx(expected, rel=1e-6)
    assert kept["1"] == pytest.approx(
        float(np.sum(row_space_projection(model[1].weight, x.reshape(5, -1)) ** 2))
        / float(np.sum(x.double().numpy() ** 2)),
        rel=1e-6,
    )


def test_energy_kept_per_layer_of_a_vision_transformer():
    from nnspaces.models import build_model

    model = build_model("vit")
    kept = energy_kept_per_layer(model, torch.rand(2, 1, 28, 28))
    # the patch convolution, two MLP layers per block and the head; the attention's out_proj
    # is never called as a module (its weight is used inside the attention): no entry
    assert len(kept) == 1 + 4 * 2 + 1 and list(kept)[0] == "conv_proj"
    assert list(kept)[-1] == "heads.head" and not any("out_proj" in n for n in kept)
    assert all(0 <= v <= 1 + 1e-9 for v in kept.values())


def test_energy_kept_per_layer_leaves_the_model_as_it_was():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    energy_kept_per_layer(model, torch.rand(5, 1, 4, 4))
    assert [p.requires_grad for p in model.parameters()] == flags
    assert model.training
