"""Signal spaces, subspaces and residuals on random, rank-deficient and zero matrices."""

import numpy as np
import pytest
import torch
from torch import nn

from nnspaces.spaces import (
    class_residuals,
    condition_number,
    conv_as_matrix,
    energy_kept,
    energy_kept_per_layer,
    layer_spaces,
    null_space_residual,
    row_space_projection,
    singular_values,
)

RNG = np.random.default_rng(0)


def _matrices():
    yield "wide", RNG.standard_normal((10, 50))
    yield "tall", RNG.standard_normal((40, 7))
    yield "square", RNG.standard_normal((12, 12))
    yield "rank3-wide", RNG.standard_normal((8, 3)) @ RNG.standard_normal((3, 20))
    yield "rank2-tall", RNG.standard_normal((30, 2)) @ RNG.standard_normal((2, 6))
    yield "torch-float32", torch.randn(10, 784, generator=torch.Generator().manual_seed(1))


MATRICES = dict(_matrices())


def _np(W):
    return W.double().numpy() if isinstance(W, torch.Tensor) else W


@pytest.mark.parametrize("name", MATRICES)
def test_svd_rebuilds_weight_and_bases_are_orthonormal(name):
    W = _np(MATRICES[name])
    m, n = W.shape
    sp = layer_spaces(MATRICES[name])
    k = len(sp.S)
    assert sp.U.shape == (m, m) and sp.Vh.shape == (n, n) and k == min(m, n)
    np.testing.assert_allclose((sp.U[:, :k] * sp.S) @ sp.Vh[:k], W, atol=1e-10)
    assert np.all(np.diff(sp.S) <= 1e-12)
    for basis, dim in [
        (sp.row_space, (n, sp.rank)),
        (sp.null_space, (n, n - sp.rank)),
        (sp.column_space, (m, sp.rank)),
        (sp.left_null_space, (m, m - sp.rank)),
    ]:
        assert basis.shape == dim
        np.testing.assert_allclose(basis.T @ basis, np.eye(dim[1]), atol=1e-10)
    np.testing.assert_allclose(sp.row_space.T @ sp.null_space, 0, atol=1e-10)
    np.testing.assert_allclose(sp.column_space.T @ sp.left_null_space, 0, atol=1e-10)
    # W maps its null space to zero, and nothing reaches the left null space
    np.testing.assert_allclose(W @ sp.null_space, 0, atol=1e-9)
    np.testing.assert_allclose(sp.left_null_space.T @ W, 0, atol=1e-9)


def test_rank_and_condition_number():
    assert layer_spaces(MATRICES["rank3-wide"]).rank == 3
    assert layer_spaces(MATRICES["rank2-tall"]).rank == 2
    W = MATRICES["wide"]
    s = np.linalg.svd(W, compute_uv=False)
    sp = layer_spaces(W)
    assert sp.rank == 10
    assert sp.condition_number == pytest.approx(s[0] / s[-1], rel=1e-12)
    assert condition_number(W) == pytest.approx(s[0] / s[-1], rel=1e-12)
    # rank deficient: over the nonzero singular values; the full ratio is infinite
    R = MATRICES["rank3-wide"]
    sr = np.linalg.svd(R, compute_uv=False)
    assert layer_spaces(R).condition_number == pytest.approx(sr[0] / sr[2], rel=1e-10)
    assert condition_number(R) == pytest.approx(sr[0] / sr[2], rel=1e-10)
    assert layer_spaces(R).condition_number_full == float("inf")


def test_known_condition_number():
    W = np.diag([4.0, 2.0, 0.5])
    assert layer_spaces(W).condition_number == pytest.approx(8.0)
    np.testing.assert_allclose(singular_values(W), [4.0, 2.0, 0.5])


def test_zero_matrix_does_not_crash():
    sp = layer_spaces(np.zeros((4, 6)))
    assert sp.rank == 0
    assert sp.condition_number == float("inf")
    assert condition_number(np.zeros((4, 6))) == float("inf")
    assert sp.null_space.shape == (6, 6) and sp.row_space.shape == (6, 0)
    x = RNG.standard_normal(6)
    np.testing.assert_allclose(null_space_residual(np.zeros((4, 6)), x), x)


def test_float32_weights_get_float32_tolerance():
    # rank 2 in exact arithmetic; float32 rounding leaves tiny singular values ~1e-7
    A = torch.randn(6, 2, dtype=torch.float64) @ torch.randn(2, 9, dtype=torch.float64)
    assert layer_spaces(A.float()).rank == 2
    assert layer_spaces(A).rank == 2


def test_signal_space_rows_are_scaled_singular_vectors():
    W = MATRICES["wide"]
    sp = layer_spaces(W)
    assert sp.signal_space.shape == (10, 50)
    np.testing.assert_allclose(np.linalg.norm(sp.signal_space, axis=1), sp.S, rtol=1e-12)
    # W^T W v_i = s_i^2 v_i
    for i in range(3):
        v = sp.Vh[i]
        np.testing.assert_allclose(W.T @ (W @ v), sp.S[i] ** 2 * v, atol=1e-9)


def test_thin_spaces_for_tall_conv_matrix():
    K = RNG.standard_normal((5000, 9))
    sp = layer_spaces(K, full_matrices=False)
    assert sp.U.shape == (5000, 9) and sp.Vh.shape == (9, 9)
    np.testing.assert_allclose((sp.U * sp.S) @ sp.Vh, K, atol=1e-9)
    with pytest.raises(ValueError, match="full_matrices=True"):
        _ = sp.left_null_space
    # a wide matrix keeps a complete Vh (its null space) even when thin
    W = MATRICES["wide"]
    thin = layer_spaces(W, full_matrices=False)
    assert thin.null_space.shape == (50, 40)
    np.testing.assert_allclose(W @ thin.null_space, 0, atol=1e-9)


def test_conv_as_matrix_layout():
    w = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    M = conv_as_matrix(w)
    assert M.shape == (6, 4)
    for o in range(2):
        for i in range(3):
            np.testing.assert_array_equal(M[o * 3 + i], w[o, i].flatten().numpy())
    with pytest.raises(ValueError, match="4-D"):
        conv_as_matrix(torch.zeros(3, 3))


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
    with pytest.raises(ValueError, match="9 class means"):
        class_residuals(W, means[:9])


def test_null_space_residual_is_invisible_and_orthogonal():
    W = MATRICES["rank3-wide"]
    X = RNG.standard_normal((5, 20))
    R = null_space_residual(W, X)
    P = row_space_projection(W, X)
    np.testing.assert_allclose(P + R, X, atol=1e-12)
    np.testing.assert_allclose(W @ R.T, 0, atol=1e-9)  # the layer cannot see the residual
    np.testing.assert_allclose(np.sum(P * R, axis=1), 0, atol=1e-9)
    # one vector, and image-shaped batches, keep their shape
    assert null_space_residual(W, X[0]).shape == (20,)
    W784 = MATRICES["wide"][:, :49]
    imgs = RNG.random((2, 1, 7, 7))
    assert null_space_residual(W784, imgs).shape == imgs.shape
    with pytest.raises(ValueError, match="do not flatten"):
        null_space_residual(W, RNG.random((2, 21)))


def test_energy_kept_splits_the_norm():
    W = MATRICES["rank3-wide"]
    X = RNG.standard_normal((4, 20))
    kept = energy_kept(W, X)
    R = null_space_residual(W, X)
    np.testing.assert_allclose(kept, 1 - np.sum(R**2, 1) / np.sum(X**2, 1), atol=1e-12)
    assert np.all((kept > 0) & (kept < 1))
    # a vector in the row space is kept whole
    assert energy_kept(W, W[0]) == pytest.approx(1.0)


def test_energy_kept_per_layer_matches_single_layer():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)
    ).double()
    x = torch.rand(3, 1, 6, 6, dtype=torch.float64)
    kept = energy_kept_per_layer(model, x)
    assert list(kept) == ["0", "3"]
    hidden = model[:3](x).detach()
    expected = np.sum(row_space_projection(model[3].weight, hidden) ** 2) / np.sum(
        hidden.numpy() ** 2
    )
    assert kept["3"] == pytest.approx(expected)
    assert 0 < kept["0"] <= 1


def test_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        layer_spaces(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        layer_spaces(np.array([[1.0, np.nan]]))
