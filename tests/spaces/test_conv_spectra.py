"""Convolution spectra at scale: Lanczos norms, the exact adjoint, the FFT spectrum of the
circular layer, the spectral_norm kernel matrix, null-space dimensions and labelled bounds,
each against a dense matrix built here."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnspaces.spaces.conv_spectra import (
    LABELS,
    ConvMap,
    circular_spectrum,
    conv_view,
    kernel_norm,
    lanczos_extremes,
    layer_spectrum,
)
from nnspaces.spaces.conv_table import conv_table
from nnspaces.spaces.operators import ConvOperator

EPS32 = float(np.finfo(np.float32).eps)


def _dense(conv: nn.Module, shape) -> np.ndarray:
    """The layer's matrix: ConvOperator's entry-by-entry one for Conv1d/2d; for the others the
    module itself (float64, no bias) on every unit input."""
    if isinstance(conv, nn.Conv1d | nn.Conv2d):
        return ConvOperator(conv, shape).matrix()
    ref = type(conv)(
        conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
        padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=False,
        **({"output_padding": conv.output_padding} if "Transpose" in type(conv).__name__ else {}),
    ).double()  # fmt: skip
    ref.weight.data.copy_(conv.weight.detach().double())
    n = math.prod(shape)
    with torch.no_grad():
        out = ref(torch.eye(n, dtype=torch.float64).reshape(n, *shape))
    return out.reshape(n, -1).T.numpy()


def _make(kind, *args, **kwargs) -> nn.Module:
    # a seed from the arguments that is the same in every process (str hashes are not)
    torch.manual_seed(zlib.crc32(repr((kind.__name__, args)).encode()) % 1000)
    return kind(*args, **kwargs)


CASES = [
    (_make(nn.Conv2d, 3, 4, 3, padding=1), (3, 8, 8)),
    (_make(nn.Conv2d, 3, 5, 3, stride=2, padding=1), (3, 8, 8)),
    (_make(nn.Conv2d, 4, 4, 3, padding=2, dilation=2, groups=2), (4, 6, 6)),
    (_make(nn.Conv2d, 2, 3, 3, padding=1, padding_mode="circular"), (2, 6, 6)),
    (_make(nn.Conv2d, 2, 3, 3, padding=1, padding_mode="reflect"), (2, 5, 5)),
    (_make(nn.Conv2d, 2, 3, 3, padding=1, padding_mode="replicate"), (2, 5, 6)),
    (_make(nn.Conv2d, 2, 3, (3, 2), padding="same"), (2, 5, 4)),
    (_make(nn.Conv1d, 3, 2, 5, stride=2, padding=2), (3, 12)),
    (_make(nn.Conv1d, 4, 6, 3, stride=3, padding=1, groups=2), (4, 12)),
    (_make(nn.Conv3d, 2, 3, 3, stride=2, padding=1), (2, 4, 4, 4)),
    (_make(nn.ConvTranspose2d, 3, 4, 3, stride=2, padding=1, output_padding=1), (3, 4, 4)),
    (_make(nn.ConvTranspose1d, 4, 2, 4, stride=2, padding=1, groups=2), (4, 7)),
    (_make(nn.Conv2d, 4, 8, 1, stride=2), (4, 8, 8)),
    (_make(nn.Conv2d, 8, 4, 1, stride=2, padding=1), (8, 6, 6)),
]
IDS = [f"{type(c).__name__}-{i}" for i, (c, _) in enumerate(CASES)]


@pytest.mark.parametrize(("conv", "shape"), CASES, ids=IDS)
def test_the_map_is_the_layer_and_its_adjoint_is_the_transpose(conv, shape):
    op = ConvMap(conv, shape)
    A = _dense(conv, shape)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, *shape, dtype=torch.float64, generator=gen)
    y = torch.randn(2, *op.output_shape, dtype=torch.float64, generator=gen)
    Ax = op.forward(x).reshape(2, -1).numpy()
    np.testing.assert_allclose(Ax, x.reshape(2, -1).numpy() @ A.T, atol=1e-12)
    ATy = op.adjoint(y).reshape(2, -1).numpy()
    # <A x, y> = <x, A^T y>, and A^T y is the dense transpose's
    np.testing.assert_allclose(
        np.sum(Ax * y.reshape(2, -1).numpy(), 1), np.sum(x.reshape(2, -1).numpy() * ATy, 1),
        rtol=1e-12,
    )  # fmt: skip
    np.testing.assert_allclose(ATy, y.reshape(2, -1).numpy() @ A, atol=1e-12)


@pytest.mark.parametrize(("conv", "shape"), CASES, ids=IDS)
def test_sigma_max_min_and_null_dim_match_the_dense_svd(conv, shape):
    A = _dense(conv, shape)
    S = np.linalg.svd(A, compute_uv=False)
    s = layer_spectrum(conv, shape, smallest_steps=10_000)
    assert s.sigma_max_label == "exact"
    assert s.sigma_max == pytest.approx(S[0], rel=1e-6)
    assert s.sigma_min_label == "exact"
    assert s.sigma_min == pytest.approx(S[-1], rel=1e-6, abs=1e-10 * S[0])
    rank = int(np.sum(S > S[0] * max(A.shape) * EPS32))
    assert s.null_dim_label == "exact" and s.null_dim == A.shape[1] - rank


def _circular_dense(view, grid) -> np.ndarray:
    """The circular map of a ConvView on ``grid``, entry by entry: output channel o at
    position q reads channel c at ``(q * stride + a * dilation) mod grid`` with weight
    ``w[o, c, a]`` (taps landing on one pixel add up)."""
    w = view.weight.double().numpy()
    c_out, c_in_g, *k = w.shape
    out_grid = [n // s for n, s in zip(grid, view.stride, strict=True)]
    c_in = c_in_g * view.groups
    A = np.zeros((c_out * math.prod(out_grid), c_in * math.prod(grid)))
    for o in range(c_out):
        group = o // (c_out // view.groups)
        for ci in range(c_in_g):
            c = group * c_in_g + ci
            for q in np.ndindex(*out_grid):
                row = o * math.prod(out_grid) + np.ravel_multi_index(q, out_grid)
                for a in np.ndindex(*k):
                    pos = tuple(
                        (qq * s + aa * d) % n
                        for qq, s, aa, d, n in zip(
                            q, view.stride, a, view.dilation, grid, strict=True
                        )
                    )  # fmt: skip
                    col = c * math.prod(grid) + np.ravel_multi_index(pos, grid)
                    A[row, col] += w[(o, ci, *a)]
    return A


CIRCULAR = [
    (_make(nn.Conv2d, 3, 4, 3, padding=1), (3, 6, 6)),
    (_make(nn.Conv2d, 3, 5, 3, stride=2, padding=1), (3, 8, 6)),
    (_make(nn.Conv2d, 4, 6, (3, 2), stride=(1, 2), dilation=(2, 1), groups=2), (4, 5, 6)),
    (_make(nn.Conv2d, 2, 3, 5), (2, 3, 4)),  # the kernel wraps around the grid
    (_make(nn.Conv1d, 3, 2, 4, stride=2), (3, 10)),
    (_make(nn.Conv2d, 6, 2, 1, stride=2), (6, 4, 4)),
    (_make(nn.Conv2d, 4, 6, 1, groups=2), (4, 3, 4)),  # 1 x 1: the channel matrix, repeated
    (_make(nn.Conv1d, 2, 6, 1, stride=3), (2, 6)),  # 1 x 1 wider than its phases: zeros too
]


@pytest.mark.parametrize(("conv", "shape"), CIRCULAR)
def test_the_fft_spectrum_is_the_dense_circular_one(conv, shape):
    view = conv_view(conv, shape, None)  # a convolution's view needs no output shape
    S = circular_spectrum(view)
    dense = np.linalg.svd(_circular_dense(view, shape[1:]), compute_uv=False)
    assert S.shape == dense.shape
    np.testing.assert_allclose(S, dense, atol=1e-8 * dense[0], rtol=0)


def test_the_fft_spectrum_is_torchs_circular_layer_and_refuses_a_stride_off_the_grid():
    conv = _make(nn.Conv2d, 3, 4, 3, stride=2, padding=1, padding_mode="circular")
    shape = (3, 6, 8)
    S = circular_spectrum(conv_view(conv, shape, ConvMap(conv, shape).output_shape))
    np.testing.assert_allclose(S, np.linalg.svd(_dense(conv, shape), compute_uv=False), atol=1e-10)
    odd = (3, 7, 8)
    assert circular_spectrum(conv_view(conv, odd, ConvMap(conv, odd).output_shape)) is None
    row = conv_table(nn.Sequential(conv), odd).iloc[0]
    assert row.circular_norm_label == "not applicable" and math.isnan(row.circular_norm)


@pytest.mark.parametrize(
    "conv", [_make(nn.Conv2d, 3, 5, (3, 2), groups=1), _make(nn.ConvTranspose2d, 4, 6, 3, groups=2)]
)
def test_kernel_norm_is_what_spectral_norm_normalises(conv):
    # spectral_norm's own choice of matrix (dim 0, or 1 for a transposed convolution)
    ref = nn.utils.parametrizations.spectral_norm(_copy(conv), n_power_iterations=500).double()
    ref.train()
    with torch.no_grad():
        ref(torch.zeros(1, conv.in_channels, 5, 5, dtype=torch.float64))  # power iterations
    ref.eval()
    sigma = (conv.weight.double() / ref.weight).mean()
    assert kernel_norm(conv) == pytest.approx(float(sigma), rel=1e-6)


def _copy(conv):
    new = type(conv)(conv.in_channels, conv.out_channels, conv.kernel_size, groups=conv.groups)
    new.weight.data.copy_(conv.weight.detach())
    return new


def test_the_bounds_hold_as_they_claim():
    for conv, shape in CASES:
        A = _dense(conv, shape)
        S = np.linalg.svd(A, compute_uv=False)
        s = layer_spectrum(conv, shape, max_steps=3)  # too few steps: bounds, not values
        if s.sigma_max_upper is not None:
            assert s.sigma_max_upper >= S[0] * (1 - 1e-12)
        if s.sigma_max_label == "lower bound":
            assert s.sigma_max <= S[0] * (1 + 1e-12)
        if s.sigma_min_label == "upper bound":
            assert s.sigma_min >= S[-1] * (1 - 1e-12)
        rank = int(np.sum(S > S[0] * max(A.shape) * EPS32))
        if s.null_dim_label == "lower bound":
            assert s.null_dim <= A.shape[1] - rank
        else:
            assert s.null_dim == A.shape[1] - rank
    labelled = [layer_spectrum(c, sh, max_steps=3).sigma_min_label for c, sh in CASES]
    assert "upper bound" in labelled  # the budget did run out somewhere


def test_lanczos_certifies_only_what_converged():
    gen = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(60, 60, dtype=torch.float64, generator=gen))
    lam = torch.linspace(0.01, 1, 60, dtype=torch.float64)
    G = Q @ torch.diag(lam) @ Q.T
    full = lanczos_extremes(lambda v: G @ v, 60, min_steps=60)
    assert full.largest == pytest.approx(1.0, rel=1e-12)
    assert full.smallest == pytest.approx(0.01, rel=1e-9) and full.smallest_converged
    few = lanczos_extremes(lambda v: G @ v, 60, max_steps=4)
    assert not few.largest_converged and few.largest < 1 and few.smallest > 0.01


def test_the_table_labels_every_value_and_names_bad_layers():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 1, stride=2),
        nn.ConvTranspose2d(8, 2, 2, stride=2),
    )  # fmt: skip
    table = conv_table(model, (3, 8, 8), smallest_steps=1000)
    assert list(table.layer) == ["0", "2", "3"]
    assert list(table.input_shape) == ["3 x 8 x 8", "4 x 8 x 8", "8 x 4 x 4"]
    labels = table[[c for c in table.columns if c.endswith("_label")]]
    assert set(labels.to_numpy().ravel()) <= set(LABELS)
    for row, (name, shape) in zip(
        table.itertuples(), [("0", (3, 8, 8)), ("2", (4, 8, 8)), ("3", (8, 4, 4))], strict=True
    ):
        S = np.linalg.svd(_dense(dict(model.named_modules())[name], shape), compute_uv=False)
        assert row.sigma_max == pytest.approx(S[0], rel=1e-6)
    assert list(conv_table(model, (3, 8, 8), layers=1).layer) == ["0"]
    with pytest.raises(
        ValueError, match=r"\['1'\] are not convolutions.*allowed: \['0', '2', '3'\]"
    ):
        conv_table(model, (3, 8, 8), layers=["1"])


def _agrees(value: float, dense: float) -> bool:
    return abs(value - dense) <= 1e-6 * dense


@pytest.mark.parametrize(("conv", "shape"), CASES[:12], ids=IDS[:12])
def test_the_fast_path_is_certified_exact_and_agrees_with_the_dense_svd(conv, shape):
    S = np.linalg.svd(_dense(conv, shape), compute_uv=False)
    s = layer_spectrum(conv, shape)  # float32 Lanczos, float64 refinement and certificate
    assert s.sigma_max_label == "exact" and 0 <= s.sigma_max_rel_error <= 5e-7
    assert _agrees(s.sigma_max, S[0])
    assert s.sigma_max <= S[0] * (1 + 1e-12)  # a Rayleigh quotient: never above the truth
    assert s.sigma_min_label in ("exact", "upper bound") and s.sigma_min >= S[-1] * (1 - 1e-9)


def test_a_planted_loose_certificate_is_caught_by_the_dense_svd(monkeypatch):
    """The certificate's tolerance is what makes 'exact' true: loosened, Lanczos stops early,
    the value it calls exact disagrees with the dense SVD, and the check above fails."""
    from nnspaces.spaces import lanczos

    conv, shape = CASES[0]
    S = np.linalg.svd(_dense(conv, shape), compute_uv=False)
    monkeypatch.setattr(lanczos, "RTOL", 0.3)
    s = layer_spectrum(conv, shape)
    assert s.sigma_max_label == "exact" and not _agrees(s.sigma_max, S[0])
    monkeypatch.undo()
    # stopped as early but certified at the library's tolerance: a lower bound, as labelled
    few = layer_spectrum(conv, shape, max_steps=2)
    assert few.sigma_max_label == "lower bound" and few.sigma_max < S[0]
    # the residual certifies *some* eigenvalue of the Gram map near the Ritz value (which one
    # is not known after two steps): some singular value lies within the stated error
    allowed = (1 + few.sigma_max_rel_error) ** 2 - 1  # residual / Ritz value
    assert np.min(np.abs(S**2 / few.sigma_max**2 - 1)) <= allowed * (1 + 1e-9)


def test_a_wrong_adjoint_fails_the_dot_product_test_and_would_fail_the_dense_svd(monkeypatch):
    conv, shape = CASES[1]  # strided
    S = np.linalg.svd(_dense(conv, shape), compute_uv=False)
    right = ConvMap.adjoint

    def wrong(self, y):  # a plausible slip: the stride's output padding left out
        x = F.conv_transpose2d(y, self.weight, None, conv.stride, conv.padding, 0)
        return F.pad(x, (0, shape[2] - x.shape[-1], 0, shape[1] - x.shape[-2]))

    monkeypatch.setattr(ConvMap, "adjoint", wrong)
    op = ConvMap(conv, shape)
    assert op.adjoint_error() > 1e-3
    with pytest.raises(ValueError, match="fails the dot-product test"):
        layer_spectrum(conv, shape)
    # unchecked, the wrong Gram map's value is far from the layer's norm
    ext = lanczos_extremes(op.gram, min(op.shape), max_steps=200)
    assert not _agrees(math.sqrt(abs(ext.largest)), S[0])
    monkeypatch.setattr(ConvMap, "adjoint", right)
    assert ConvMap(conv, shape).adjoint_error() < 1e-12


def test_the_float32_stage_runs_in_true_float32_and_the_certificate_in_float64():
    from nnspaces.spaces.lanczos import certify, gram_extremes

    gen = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(80, 80, dtype=torch.float64, generator=gen))
    lam = torch.cat([torch.tensor([1.0, 1 - 1e-4]), torch.linspace(0, 0.9, 78)]).double()
    G = Q @ torch.diag(lam) @ Q.T
    ext = gram_extremes(lambda v: G @ v, 80, gram_fast=lambda v: G.float() @ v)
    assert ext.largest.exact and ext.largest.value == pytest.approx(1.0, rel=1e-6)
    assert ext.largest.value <= 1 + 1e-12 and ext.smallest >= -1e-12
    cert = certify(lambda v: G @ v, Q[:, 0] + 1e-3 * Q[:, 5])  # a perturbed eigenvector
    assert not cert.exact and cert.value < 1
    assert 1 <= cert.value + cert.residual  # some eigenvalue (here the top) within residual
