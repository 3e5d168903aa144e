"""Signal spaces and the four subspaces on random, rank-deficient and zero matrices; the one
rank tolerance; the pseudo-inverse; pre-images (minimum-norm, closest to a reference, with
null-space coefficients, inside a box). Residuals are in test_residuals.py."""

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.optimize import minimize

from nnspaces.spaces.layer import (
    LayerSpaces,
    Preimage,
    closest_in_bounds,
    condition_number,
    conv_as_matrix,
    layer_spaces,
    row_basis,
    singular_values,
)

RNG = np.random.default_rng(0)
EPS64 = np.finfo(np.float64).eps
EPS32 = float(np.finfo(np.float32).eps)


def _matrices():
    yield "wide", RNG.standard_normal((10, 50))
    yield "tall", RNG.standard_normal((40, 7))
    yield "square", RNG.standard_normal((12, 12))
    yield "rank3-wide", RNG.standard_normal((8, 3)) @ RNG.standard_normal((3, 20))
    yield "rank2-tall", RNG.standard_normal((30, 2)) @ RNG.standard_normal((2, 6))
    yield "torch-float32", torch.randn(10, 784, generator=torch.Generator().manual_seed(1))


MATRICES = dict(_matrices())
RANKS = {"wide": 10, "tall": 7, "square": 12, "rank3-wide": 3, "rank2-tall": 2, "torch-float32": 10}


def _np(W):
    return W.double().numpy() if isinstance(W, torch.Tensor) else W


def _with_singular_values(s, m, n, seed=0):
    """An ``(m, n)`` float64 matrix with singular values ``s`` (the rest zero)."""
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((m, m)))[0]
    V = np.linalg.qr(rng.standard_normal((n, n)))[0]
    return (U[:, : len(s)] * s) @ V[:, : len(s)].T


# --------------------------------------------------------------------------- SVD and subspaces


@pytest.mark.parametrize("name", MATRICES)
def test_svd_rebuilds_weight_and_bases_are_orthonormal(name):
    W = _np(MATRICES[name])
    m, n = W.shape
    sp = layer_spaces(MATRICES[name])
    k = len(sp.S)
    assert sp.U.shape == (m, m) and sp.Vh.shape == (n, n) and k == min(m, n)
    assert sp.shape == (m, n) and sp.rank == RANKS[name]
    assert sp.matrix.dtype == np.float64
    np.testing.assert_array_equal(sp.matrix, W)
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
    # the row space is the span of W's rows: same projector as SciPy's orth(W^T)
    Q = scipy.linalg.orth(W.T)
    np.testing.assert_allclose(sp.row_space @ sp.row_space.T, Q @ Q.T, atol=1e-9)


def test_rank_and_condition_number():
    assert layer_spaces(MATRICES["rank3-wide"]).rank == 3
    assert layer_spaces(MATRICES["rank2-tall"]).rank == 2
    W = MATRICES["wide"]
    s = np.linalg.svd(W, compute_uv=False)
    sp = layer_spaces(W)
    assert sp.rank == 10
    assert sp.condition_number == pytest.approx(s[0] / s[-1], rel=1e-12)
    assert sp.condition_number_full == pytest.approx(s[0] / s[-1], rel=1e-12)
    assert condition_number(W) == pytest.approx(s[0] / s[-1], rel=1e-12)
    # rank deficient: over the nonzero singular values; the full ratio is infinite
    R = MATRICES["rank3-wide"]
    sr = np.linalg.svd(R, compute_uv=False)
    assert layer_spaces(R).condition_number == pytest.approx(sr[0] / sr[2], rel=1e-10)
    assert condition_number(R) == pytest.approx(sr[0] / sr[2], rel=1e-10)
    assert layer_spaces(R).condition_number_full == float("inf")
    assert "rank=3" in repr(layer_spaces(R)) and "8x20" in repr(layer_spaces(R))


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
    np.testing.assert_array_equal(sp.pinv, np.zeros((6, 4)))
    pre = sp.preimage(np.zeros(4))
    np.testing.assert_array_equal(pre.x, np.zeros((1, 6)))
    assert row_basis(np.zeros((4, 6))).shape == (6, 0)


# --------------------------------------------------------------------------- the rank tolerance


@pytest.mark.parametrize("scale", [1.0, 1e3, 1e-3])
def test_one_rank_tolerance_float64(scale):
    # tol = S.max() * max(m, n) * eps; with (20, 50) that is 50 eps S.max(). A value 2 tol is
    # counted, 0.5 tol is not: a tolerance of S.max() * eps (too small), S.max() * min(m, n)
    # * eps or S.max() * m * n * eps (too large), or one not relative to S.max(), miscounts.
    m, n = 20, 50
    tol = scale * n * EPS64
    W = _with_singular_values(np.array([scale, scale / 2, 2 * tol, 0.5 * tol]), m, n)
    sp = layer_spaces(W)
    assert sp.tol == pytest.approx(np.linalg.svd(W, compute_uv=False)[0] * n * EPS64, rel=1e-12)
    assert sp.rank == 3
    assert row_basis(W).shape == (n, 3)
    assert condition_number(W) == pytest.approx(scale / (2 * tol), rel=1e-3)
    assert sp.condition_number == pytest.approx(scale / (2 * tol), rel=1e-3)
    assert sp.null_space.shape == (n, n - 3) and sp.pinv.shape == (n, m)
    # the transposed matrix has the same tolerance (max(m, n), not m or n)
    assert layer_spaces(W.T).rank == 3 and row_basis(W.T).shape == (m, 3)


@pytest.mark.parametrize("kind", ["torch", "numpy"])
def test_float32_weights_get_a_float32_tolerance(kind):
    # float32 rounding of the entries moves singular values by ~1e-7; the tolerance is
    # 50 * eps32 ~ 6e-6: 2 tol counts, 0.5 tol does not (it would with float64's eps)
    m, n = 20, 50
    tol = n * EPS32
    W64 = _with_singular_values(np.array([1.0, 0.5, 2 * tol, 0.5 * tol]), m, n)
    W = torch.from_numpy(W64).float() if kind == "torch" else W64.astype(np.float32)
    sp = layer_spaces(W)
    assert sp.tol == pytest.approx(
        float(np.linalg.svd(W64, compute_uv=False)[0]) * n * EPS32, rel=1e-5
    )
    assert sp.rank == 3
    assert row_basis(W).shape == (n, 3)
    assert condition_number(W) == pytest.approx(1 / (2 * tol), rel=1e-2)
    assert layer_spaces(W64).rank == 4  # in float64 the same values are all above tolerance


def test_float32_rank_deficient_product():
    # rank 2 in exact arithmetic; float32 rounding leaves tiny singular values ~1e-7
    A = torch.randn(6, 2, dtype=torch.float64) @ torch.randn(2, 9, dtype=torch.float64)
    assert layer_spaces(A.float()).rank == 2
    assert layer_spaces(A).rank == 2


# --------------------------------------------------------------------------- signal space etc.


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
    np.testing.assert_allclose(thin.pinv, np.linalg.pinv(W), atol=1e-12)


def test_conv_as_matrix_layout():
    w = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    M = conv_as_matrix(w)
    assert M.shape == (6, 4)
    for o in range(2):
        for i in range(3):
            np.testing.assert_array_equal(M[o * 3 + i], w[o, i].flatten().numpy())
    with pytest.raises(ValueError, match="4-D"):
        conv_as_matrix(torch.zeros(3, 3))


@pytest.mark.parametrize("name", MATRICES)
def test_row_basis(name):
    W = _np(MATRICES[name])
    V = row_basis(MATRICES[name])
    assert V.shape == (W.shape[1], RANKS[name])
    np.testing.assert_allclose(V.T @ V, np.eye(V.shape[1]), atol=1e-10)
    # projector onto the row space: W^+ W
    np.testing.assert_allclose(V @ V.T, np.linalg.pinv(W, rcond=1e-10) @ W, atol=1e-9)
    sp = layer_spaces(MATRICES[name])
    assert row_basis(sp) is not None
    np.testing.assert_array_equal(row_basis(sp), sp.row_space)


# --------------------------------------------------------------------------- the pseudo-inverse


@pytest.mark.parametrize("name", MATRICES)
def test_pinv_matches_numpy(name):
    W = _np(MATRICES[name])
    sp = layer_spaces(MATRICES[name])
    # NumPy with the same cut-off (relative max(m, n) * eps; float32 for the float32 weight)
    eps = EPS32 if name == "torch-float32" else EPS64
    expected = np.linalg.pinv(W, rcond=max(W.shape) * eps)
    assert sp.pinv.shape == (W.shape[1], W.shape[0])
    np.testing.assert_allclose(sp.pinv, expected, atol=1e-10 * max(1.0, np.abs(expected).max()))
    # the four Moore-Penrose conditions
    P = sp.pinv
    np.testing.assert_allclose(W @ P @ W, W, atol=1e-9)
    np.testing.assert_allclose(P @ W @ P, P, atol=1e-9)
    np.testing.assert_allclose(W @ P, (W @ P).T, atol=1e-9)
    np.testing.assert_allclose(P @ W, (P @ W).T, atol=1e-9)
    assert sp.pinv is P  # computed once


# --------------------------------------------------------------------------- pre-images


def _reachable(W, b=3, seed=1):
    """Outputs some input reaches, and those inputs."""
    x = np.random.default_rng(seed).standard_normal((b, W.shape[1]))
    return x @ W.T, x


@pytest.mark.parametrize("name", MATRICES)
def test_minimum_norm_preimage_reaches_z(name):
    W = _np(MATRICES[name])
    sp = layer_spaces(MATRICES[name])
    Z, _ = _reachable(W)
    pre = sp.preimage(Z)
    assert isinstance(pre, Preimage)
    assert pre.x.shape == (3, W.shape[1]) and pre.residual.shape == (3, W.shape[0])
    np.testing.assert_allclose(pre.x @ W.T, Z, atol=1e-8 * np.abs(Z).max())  # W x = z
    np.testing.assert_allclose(pre.residual, 0, atol=1e-8 * np.abs(Z).max())
    np.testing.assert_allclose(pre.null_part, 0, atol=0)
    np.testing.assert_array_equal(pre.x, pre.particular)
    # the minimum-norm solution, as least squares gives it
    for z, x in zip(Z, pre.x, strict=True):
        lstsq = np.linalg.lstsq(W, z, rcond=None)[0]
        np.testing.assert_allclose(x, lstsq, atol=1e-8 * max(1.0, np.abs(lstsq).max()))
    # particular lies in the row space
    np.testing.assert_allclose(pre.particular @ sp.null_space, 0, atol=1e-8)


def test_preimage_takes_one_vector_and_torch_tensors():
    W = MATRICES["wide"]
    sp = layer_spaces(W)
    Z, X = _reachable(W, b=1)
    one = sp.preimage(Z[0])
    assert one.x.shape == (1, 50)
    batch = sp.preimage(torch.from_numpy(Z))
    np.testing.assert_allclose(one.x, batch.x, atol=1e-12)
    ref = sp.preimage(Z[0], reference=torch.from_numpy(X[0]))
    np.testing.assert_allclose(ref.x[0], X[0], atol=1e-10)  # X[0] is itself a pre-image


@pytest.mark.parametrize("name", ["wide", "rank3-wide", "square", "rank2-tall"])
def test_closest_preimage_to_a_reference(name):
    W = _np(MATRICES[name])
    sp = layer_spaces(W)
    m, n = W.shape
    Z, X0 = _reachable(W, b=4)
    refs = np.random.default_rng(7).standard_normal((4, n)) * 3
    pre = sp.preimage(Z, reference=refs)
    np.testing.assert_allclose(pre.x @ W.T, Z, atol=1e-9 * np.abs(Z).max())
    np.testing.assert_allclose(pre.residual, 0, atol=1e-9 * np.abs(Z).max())
    np.testing.assert_allclose(pre.x, pre.particular + pre.null_part, atol=1e-12)
    N = scipy.linalg.null_space(W, rcond=1e-10)  # SciPy's own null-space basis
    Q = scipy.linalg.orth(W.T, rcond=1e-10)
    for x, p, ref, x0 in zip(pre.x, pre.null_part, refs, X0, strict=True):
        # the null part is orthogonal to the row space
        np.testing.assert_allclose(Q.T @ p, 0, atol=1e-9)
        np.testing.assert_allclose(W @ p, 0, atol=1e-9)
        # brute force: every pre-image is x0 + N w; least squares over w
        w = np.linalg.lstsq(N, ref - x0, rcond=None)[0]
        best = x0 + N @ w
        np.testing.assert_allclose(x, best, atol=1e-9)
        # and no null-space step brings it closer
        d0 = np.linalg.norm(x - ref)
        for t in (1e-3, -1e-3, 0.1):
            for d in N.T[:5]:
                assert np.linalg.norm(x + t * d - ref) >= d0 - 1e-12


def test_preimage_outside_the_column_space_has_a_residual():
    W = MATRICES["tall"]  # 40 x 7: most outputs are unreachable
    sp = layer_spaces(W)
    z = np.random.default_rng(3).standard_normal(40)
    inside = sp.column_space @ (sp.column_space.T @ z)
    outside = z - inside
    for pre in (sp.preimage(z), sp.preimage(z, reference=np.ones(7))):
        np.testing.assert_allclose(pre.residual[0], outside, atol=1e-10)
        np.testing.assert_allclose(pre.x[0] @ W.T, inside, atol=1e-10)
        # the least-squares solution (W has full column rank: the only one)
        np.testing.assert_allclose(pre.x[0], np.linalg.lstsq(W, z, rcond=None)[0], atol=1e-10)
    assert np.linalg.norm(outside) > 1


def test_preimage_with_null_coefficients():
    W = MATRICES["rank3-wide"]
    sp = layer_spaces(W)
    Z, _ = _reachable(W, b=2)
    N = sp.null_space
    coeffs = np.random.default_rng(4).standard_normal((2, 20 - 3))
    pre = sp.preimage(Z, null_coeffs=coeffs)
    np.testing.assert_allclose(pre.null_part, coeffs @ N.T, atol=1e-12)
    np.testing.assert_allclose(pre.x, pre.particular + coeffs @ N.T, atol=1e-12)
    np.testing.assert_allclose(pre.particular, sp.preimage(Z).x, atol=1e-12)
    np.testing.assert_allclose(pre.x @ W.T, Z, atol=1e-9)
    # an orthonormal basis: the null part is as long as its coefficients
    np.testing.assert_allclose(
        np.linalg.norm(pre.null_part, axis=1), np.linalg.norm(coeffs, axis=1), rtol=1e-12
    )
    one = sp.preimage(Z[0], null_coeffs=coeffs[0])
    np.testing.assert_allclose(one.x[0], pre.x[0], atol=1e-12)
    with pytest.raises(ValueError, match="null_coeffs need 17 values per row"):
        sp.preimage(Z, null_coeffs=np.zeros((2, 16)))
    with pytest.raises(ValueError, match="not both"):
        sp.preimage(Z, reference=np.zeros((2, 20)), null_coeffs=coeffs)


# --------------------------------------------------------------------------- inside a box


def _kkt_violation(W, z, ref, lo, hi, h, tol=1e-7):
    """How far ``h`` is from the optimality conditions of min |x - ref|^2 s.t. W x = z,
    lo <= x <= hi (a convex problem: they are sufficient). Multipliers ``y`` of the equality
    fit ``h - ref = W^T y`` on the free coordinates; the gradient left over must push out of
    the box where ``h`` sits on a bound, and vanish where it does not."""
    at_lo, at_hi = h <= lo + tol, h >= hi - tol
    free = ~(at_lo | at_hi)
    g = h - ref
    y = np.linalg.lstsq(W[:, free].T, g[free], rcond=None)[0]
    r = g - W.T @ y
    return max(
        np.abs(r[free]).max(initial=0.0),
        (-r[at_lo]).max(initial=0.0),  # at lo: r = a >= 0
        r[at_hi].max(initial=0.0),  # at hi: r = -b <= 0
    )


def _box_problem(m, n, seed, rank=None):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((m, n))
    if rank is not None:
        W = rng.standard_normal((m, rank)) @ rng.standard_normal((rank, n))
    x_feasible = rng.uniform(0.2, 0.8, n)
    return W, W @ x_feasible, x_feasible, rng.uniform(-1.0, 2.0, n)


@pytest.mark.parametrize(
    ("m", "n", "seed", "rank"), [(5, 30, 0, None), (10, 60, 1, None), (8, 20, 2, 3)]
)
def test_closest_preimage_in_bounds(m, n, seed, rank):
    W, z, x_feasible, ref = _box_problem(m, n, seed, rank)
    sp = layer_spaces(W)
    unconstrained = sp.preimage(z, reference=ref).x[0]
    assert unconstrained.min() < 0 or unconstrained.max() > 1  # the box matters here
    h = sp.closest_preimage(z, ref, 0.0, 1.0)
    np.testing.assert_allclose(W @ h, z, atol=1e-9)
    assert h.min() >= -1e-12 and h.max() <= 1 + 1e-12
    assert _kkt_violation(W, z, ref, 0.0, 1.0, h) < 1e-7
    d = np.linalg.norm(h - ref)
    assert d >= np.linalg.norm(unconstrained - ref) - 1e-12  # the box costs something
    # closer than every feasible point we can make: the known one, segments towards it
    rng = np.random.default_rng(seed + 10)
    N = scipy.linalg.null_space(W, rcond=1e-10)
    candidates = [x_feasible] + [h + t * (x_feasible - h) for t in (1e-4, 1e-2, 0.3, 0.9)]
    for _ in range(200):  # random feasible points around the known one
        step = x_feasible + N @ rng.standard_normal(N.shape[1]) * 0.05
        if step.min() >= 0 and step.max() <= 1:
            candidates.append(step)
    assert len(candidates) > 20
    for c in candidates:
        np.testing.assert_allclose(W @ c, z, atol=1e-9)
        assert d <= np.linalg.norm(c - ref) + 1e-12
    # the same answer as a general-purpose solver (full rank only: SLSQP needs it)
    if rank is None:
        res = minimize(
            lambda x: 0.5 * np.sum((x - ref) ** 2),
            x_feasible,
            jac=lambda x: x - ref,
            method="SLSQP",
            constraints=[{"type": "eq", "fun": lambda x: W @ x - z, "jac": lambda x: W}],
            bounds=[(0.0, 1.0)] * n,
            options={"ftol": 1e-14, "maxiter": 500},
        )
        assert res.success
        np.testing.assert_allclose(h, res.x, atol=1e-6)
    # the module function gives the same point
    np.testing.assert_allclose(closest_in_bounds(sp, z, ref, 0.0, 1.0), h, atol=1e-12)


def test_closest_preimage_inside_the_box_is_the_unconstrained_one():
    W, z, x_feasible, _ = _box_problem(5, 30, 3)
    sp = layer_spaces(W)
    ref = x_feasible + np.random.default_rng(0).standard_normal(30) * 0.01
    h = sp.closest_preimage(z, ref, 0.0, 1.0)
    expected = ref + np.linalg.lstsq(W, z - W @ ref, rcond=None)[0]  # projection onto W x = z
    assert expected.min() > 0 and expected.max() < 1
    np.testing.assert_allclose(h, expected, atol=1e-12)
    # without bounds: the closest pre-image whatever its pixels
    W2, z2, _, ref2 = _box_problem(5, 30, 4)
    sp2 = layer_spaces(W2)
    free = sp2.closest_preimage(z2, ref2)
    np.testing.assert_allclose(free, sp2.preimage(z2, reference=ref2).x[0], atol=1e-12)
    np.testing.assert_allclose(closest_in_bounds(sp2, z2, ref2, -np.inf, np.inf), free, atol=1e-9)


def test_one_sided_bounds():
    W, z, _, ref = _box_problem(5, 30, 5)
    sp = layer_spaces(W)
    h = sp.closest_preimage(z, ref, lo=0.0)
    np.testing.assert_allclose(W @ h, z, atol=1e-9)
    assert h.min() >= -1e-12 and h.max() > 1  # only the lower bound holds it
    assert _kkt_violation(W, z, ref, 0.0, np.inf, h) < 1e-7


def test_infeasible_box_gives_none():
    n = 20
    W = np.vstack([np.ones(n), np.random.default_rng(0).standard_normal((3, n))])
    x = np.full(n, 2.0)  # sum 40: no x in [0, 1]^20 has a sum above 20
    z = W @ x
    sp = layer_spaces(W)
    assert sp.closest_preimage(z, np.full(n, 0.5), 0.0, 1.0) is None
    assert closest_in_bounds(sp, z, np.full(n, 0.5), 0.0, 1.0) is None
    # a box that cannot hold W x = z for a single row either
    W1 = np.array([[1.0, 1.0, 1.0]])
    assert layer_spaces(W1).closest_preimage(np.array([-0.5]), np.zeros(3), 0.0, 1.0) is None
    # while the same z with a box wide enough is reached
    h = sp.closest_preimage(z, np.full(n, 0.5), 0.0, 3.0)
    np.testing.assert_allclose(W @ h, z, atol=1e-9)


# --------------------------------------------------------------------------- errors


def test_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        layer_spaces(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        layer_spaces(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        layer_spaces(np.array([[1.0, np.inf]]))
    with pytest.raises(ValueError, match="2-D"):
        singular_values(np.zeros(3))
    assert isinstance(layer_spaces(np.eye(2)), LayerSpaces)
