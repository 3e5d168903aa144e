"""Convolution operators: the exact map, its adjoint, and its spectrum dense and matrix-free."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nnspaces.spaces.operators import (
    FEW_VECTORS,
    ConvOperator,
    row_space_energy,
    spectrum,
    spectrum_and_energy,
)


def _conv_no_bias(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer itself in float64 with its bias removed: a separate computation."""
    ref = type(conv)(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=False,
        padding_mode=conv.padding_mode,
    ).double()
    ref.weight.data.copy_(conv.weight.detach().double())
    with torch.no_grad():
        return ref(x)


CASES = [
    (nn.Conv2d(3, 4, 3, padding=1), (3, 6, 6)),
    (nn.Conv2d(3, 5, 3, stride=2, padding=1), (3, 7, 7)),
    (nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2), (4, 6, 5)),
    (nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular"), (2, 5, 5)),
    (nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"), (2, 5, 5)),
    (nn.Conv2d(2, 3, 2, padding="same"), (2, 5, 4)),
    (nn.Conv1d(3, 2, 5, stride=2, padding=2), (3, 11)),
    (nn.Conv1d(4, 6, 3, stride=3, padding=1, groups=2), (4, 10)),
    (nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(2, 0), dilation=(1, 2), groups=2), (4, 9, 7)),
]


@pytest.mark.parametrize(("conv", "shape"), CASES)
def test_the_operator_is_the_layer_without_its_bias(conv, shape):
    torch.manual_seed(0)
    op = ConvOperator(conv, shape)
    A = op.matrix(chunk=7)  # several chunks
    x = torch.randn(3, *shape, dtype=torch.float64)
    y = _conv_no_bias(conv, x)
    assert op.output_shape == tuple(y.shape[1:]) and A.shape == op.shape
    np.testing.assert_allclose(
        A @ x.reshape(3, -1).numpy().T, y.reshape(3, -1).numpy().T, rtol=1e-12, atol=1e-12
    )
    # the adjoint is the transpose, on one vector and on a block of them
    v = np.random.default_rng(1).standard_normal((op.shape[0], 2))
    np.testing.assert_allclose(op.rmatvec(v), A.T @ v, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(op.rmatvec(v[:, 0]), A.T @ v[:, 0], rtol=1e-12, atol=1e-12)


def test_dense_spectrum_is_the_svd_and_counts_the_null_spaces():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1)
    op = ConvOperator(conv, (4, 8, 8))  # 256 inputs -> 96 outputs
    spec = spectrum(op)
    S = np.linalg.svd(op.matrix(), compute_uv=False)
    np.testing.assert_allclose(spec.singular_values, S, rtol=1e-9)
    assert (spec.rank, spec.null_dim, spec.left_null_dim) == (96, 160, 0)
    assert spec.condition_number == pytest.approx(S[0] / S[-1], rel=1e-9)


def test_a_strided_one_by_one_convolution_never_reads_three_pixels_in_four():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 1, stride=2, bias=False)
    spec = spectrum(ConvOperator(conv, (8, 6, 6)))  # 288 inputs -> 16 * 9 = 144 outputs
    # it reads 8 channels at 9 positions: rank 72; the other 216 inputs are its null space
    assert (spec.rank, spec.null_dim, spec.left_null_dim) == (72, 216, 72)


def test_matrix_free_agrees_with_dense_to_one_in_a_million():
    torch.manual_seed(0)
    op = ConvOperator(nn.Conv2d(2, 2, 3, padding=1), (2, 4, 4))
    dense = spectrum(op)
    free = spectrum(op, dense_limit=0, k=3)
    assert free.method == "matrix-free" and dense.method == "dense"
    S = dense.singular_values
    np.testing.assert_allclose(free.singular_values[:3], S[:3], rtol=1e-6)
    np.testing.assert_allclose(free.singular_values[3:], S[-3:], rtol=1e-6)
    assert free.rank == dense.rank == 32
    assert free.condition_number == pytest.approx(dense.condition_number, rel=1e-6)
    # out of iterations for the smallest: the largest are still right, the rest unknown
    short = spectrum(op, dense_limit=0, k=3, maxiter=1)
    np.testing.assert_allclose(short.singular_values, S[:3], rtol=1e-6)
    assert short.rank is None and np.isnan(short.condition_number)


def test_row_space_energy_against_an_svd_projection():
    rng = np.random.default_rng(0)
    for shape in [(5, 8), (8, 5)]:
        A = rng.standard_normal(shape)
        A[:, -1] = A[:, 0]  # rank deficient either way
        X = rng.standard_normal((7, shape[1]))
        _, S, Vh = np.linalg.svd(A)
        V = Vh[: int(np.sum(S > 1e-10))]
        expected = np.sum((X @ V.T) ** 2) / np.sum(X**2)
        assert 0.3 < expected < 0.99
        spec_alone = spectrum(A)
        assert row_space_energy(A, X, spec_alone.tol) == pytest.approx(expected, rel=1e-10)
        # one eigendecomposition for both: the same spectrum and the same energy
        both, energy = spectrum_and_energy(A, X)
        np.testing.assert_allclose(
            both.singular_values, spec_alone.singular_values, rtol=1e-10, atol=1e-6
        )  # (the zero ones are rounding noise)
        assert (both.rank, both.tol) == (spec_alone.rank, pytest.approx(spec_alone.tol))
        assert energy == pytest.approx(expected, rel=1e-10)
    # full column rank: every input is seen
    assert row_space_energy(rng.standard_normal((6, 3)), X[:, :3], 1e-9) == 1.0


@pytest.mark.parametrize(
    ("shape", "lost", "full_eigh"),
    [
        ((300, 300), 2, False),  # A^T A, two null vectors
        ((320, 300), 0, False),  # A^T A, full column rank
        ((280, 400), 0, False),  # A A^T, full row rank: a plain Cholesky solve
        ((280, 400), 3, False),  # A A^T with three small eigenvalues lifted
        ((300, 300), FEW_VECTORS + 6, True),  # too many null vectors: a full eigh
    ],
)
def test_energy_of_large_operators_without_a_full_eigendecomposition(
    shape, lost, full_eigh, monkeypatch
):
    rng = np.random.default_rng(1)
    m, n = shape
    A = rng.standard_normal(shape)
    if lost:  # rank min(m, n) - lost
        r = min(m, n) - lost
        A = rng.standard_normal((m, r)) @ rng.standard_normal((r, n))
    _, S, Vh = np.linalg.svd(A)
    tol = S[0] * max(shape) * float(np.finfo(np.float32).eps)
    V, null = Vh[: int(np.sum(S > tol))], Vh[int(np.sum(S > tol)) :]
    # inputs with a share of their energy in the null space (none where there is none)
    X = rng.standard_normal((9, n)) + 10 * rng.standard_normal((9, len(null))) @ null
    expected = np.sum((X @ V.T) ** 2) / np.sum(X**2)
    calls = []
    eigh = np.linalg.eigh
    monkeypatch.setattr(np.linalg, "eigh", lambda G: calls.append(G.shape) or eigh(G))
    spec, energy = spectrum_and_energy(A, X)
    assert spec.rank == len(V) == min(shape) - lost
    np.testing.assert_allclose(
        spec.singular_values[: len(V)], S[: len(V)], rtol=1e-9, atol=1e-10 * S[0]
    )
    assert energy == pytest.approx(expected, rel=1e-9)
    assert bool(calls) == full_eigh
    assert (expected < 0.9) == (len(null) > 0)  # where inputs can be lost, they are


def test_bad_operators_are_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"\(2, 5, 5\) does not fit .*needs 3 channels"):
        ConvOperator(nn.Conv2d(3, 3, 3), (2, 5, 5))
    with pytest.raises(ValueError, match="2 positive spatial"):
        ConvOperator(nn.Conv2d(3, 3, 3), (3, 5))
    with pytest.raises(TypeError, match="needs an nn.Conv1d or nn.Conv2d"):
        ConvOperator(nn.Linear(3, 3), (3,))
