"""The exact linear map a convolution applies to the input it actually sees.

The paper studies a convolution through its kernel matrix, the ``(C_out*C_in) x (kh*kw)``
stack of its kernels (:func:`nnspaces.spaces.layer.conv_as_matrix`). That matrix is not the map the
layer applies. On an input of shape ``(C_in, H, W)`` a convolution (bias left out) is the
linear map ``R^(C_in*H*W) -> R^(C_out*H'*W')`` whose matrix has one column per input pixel:
the **convolution operator**, with the layer's stride, zero padding, dilation and groups. Its
singular values say how the layer amplifies or loses each input direction: a stride-2 layer
that maps 3136 values to 2048 has a null space of at least 1088 dimensions, the residual
space of the paper inside a CNN.

:class:`ConvOperator` applies the map and its adjoint (the adjoint by automatic
differentiation, so every padding mode is exact) and builds its dense matrix;
:func:`spectrum` gives its singular values, rank, null-space dimensions and condition
number: from a dense SVD when the matrix is small enough (:data:`DENSE_LIMIT` entries), and
matrix-free otherwise (scipy's ``svds`` on a ``LinearOperator``: the largest and smallest
few singular values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .layer import rank_tolerance

#: Largest operator (entries) whose SVD :func:`spectrum` computes densely (float64: 320 MB).
DENSE_LIMIT = 40_000_000
_CONV = {1: F.conv1d, 2: F.conv2d}


@dataclass(frozen=True, eq=False)
class ConvOperator:
    """A ``Conv1d`` / ``Conv2d`` (bias left out) as a linear map on inputs of
    ``input_shape`` (``(C, L)`` or ``(C, H, W)``, no batch dimension), in float64."""

    conv: nn.Module
    input_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.conv, nn.Conv1d | nn.Conv2d):
            raise TypeError(f"ConvOperator needs an nn.Conv1d or nn.Conv2d, got {self.conv!r}")
        dims = 1 if isinstance(self.conv, nn.Conv1d) else 2
        shape = tuple(int(s) for s in self.input_shape)
        if len(shape) != dims + 1 or shape[0] != self.conv.in_channels or min(shape) < 1:
            raise ValueError(
                f"input_shape {tuple(self.input_shape)} does not fit {self.conv}: it needs "
                f"{self.conv.in_channels} channels and {dims} positive spatial size(s)"
            )
        object.__setattr__(self, "input_shape", shape)

    @cached_property
    def _weight(self) -> torch.Tensor:
        return self.conv.weight.detach().to("cpu", torch.float64)

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        """The map on a batch ``(N, *input_shape)`` (float64), bias left out."""
        c = self.conv
        if c.padding_mode != "zeros":
            pad = c._reversed_padding_repeated_twice
            x = F.pad(x, pad, mode=c.padding_mode)
            padding = 0
        else:
            padding = c.padding
        fn = _CONV[len(self.input_shape) - 1]
        return fn(x, self._weight, None, c.stride, padding, c.dilation, c.groups)

    @cached_property
    def output_shape(self) -> tuple[int, ...]:
        with torch.no_grad():
            return tuple(
                self._apply(torch.zeros(1, *self.input_shape, dtype=torch.float64)).shape[1:]
            )

    @property
    def shape(self) -> tuple[int, int]:
        """(outputs, inputs) of the operator's matrix."""
        return math.prod(self.output_shape), math.prod(self.input_shape)

    def matvec(self, x: np.ndarray) -> np.ndarray:
        """The operator times ``x`` (``(n,)`` or ``(n, k)``)."""
        X = torch.as_tensor(np.asarray(x, dtype=np.float64))
        cols = X.reshape(self.shape[1], -1).T.reshape(-1, *self.input_shape)
        with torch.no_grad():
            Y = self._apply(cols).reshape(cols.shape[0], -1).T
        return Y.numpy().reshape((self.shape[0],) + np.shape(x)[1:])

    def rmatvec(self, y: np.ndarray) -> np.ndarray:
        """The adjoint (transpose) times ``y`` (``(m,)`` or ``(m, k)``), exactly: the
        gradient of ``<y, A x>`` in ``x``."""
        Y = torch.as_tensor(np.asarray(y, dtype=np.float64))
        k = 1 if Y.ndim == 1 else Y.shape[1]
        x = torch.zeros(k, *self.input_shape, dtype=torch.float64, requires_grad=True)
        out = self._apply(x)
        (grad,) = torch.autograd.grad(out, x, Y.reshape(self.shape[0], k).T.reshape(out.shape))
        return grad.reshape(k, -1).T.numpy().reshape((self.shape[1],) + np.shape(y)[1:])

    def matrix(self, chunk: int = 1024) -> np.ndarray:
        """The dense ``(m, n)`` matrix. With zero padding each weight is written where it
        acts (:meth:`_placed`); other padding modes apply the operator to every unit input,
        ``chunk`` columns at a time."""
        if self.conv.padding_mode == "zeros" and not isinstance(self.conv.padding, str):
            return self._placed()
        m, n = self.shape
        out = np.empty((m, n))
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            eye = np.zeros((n, stop - start))
            eye[np.arange(start, stop), np.arange(stop - start)] = 1.0
            out[:, start:stop] = self.matvec(eye)
        return out

    def _placed(self) -> np.ndarray:
        """The matrix of a zero-padded convolution, built entry by entry: output ``o`` at
        position ``p`` reads input channel ``c`` at ``p * stride - padding + k * dilation``
        with weight ``w[o, c, k]``, and nothing where that falls into the padding. Exact (no
        arithmetic) and many times faster than convolving every unit input."""
        c = self.conv
        w = self._weight.numpy()
        c_out, c_in_group = w.shape[:2]
        kernel, spatial_in, spatial_out = w.shape[2:], self.input_shape[1:], self.output_shape[1:]
        d = len(kernel)
        stride, padding, dilation = (
            np.array(v).reshape(d, 1, 1) for v in (c.stride, c.padding, c.dilation)
        )
        offsets = np.indices(kernel).reshape(d, -1, 1)  # (d, K, 1)
        positions = np.indices(spatial_out).reshape(d, 1, -1)  # (d, 1, P)
        read = positions * stride - padding + offsets * dilation  # (d, K, P)
        inside = np.all((read >= 0) & (read < np.array(spatial_in).reshape(d, 1, 1)), axis=0)
        k, p = np.nonzero(inside)
        read_flat = np.ravel_multi_index(tuple(read[:, k, p]), spatial_in)
        o = np.arange(c_out).reshape(-1, 1, 1)
        channel = (o // (c_out // c.groups)) * c_in_group + np.arange(c_in_group).reshape(1, -1, 1)
        A = np.zeros(self.shape)
        n_in, n_out = math.prod(spatial_in), math.prod(spatial_out)
        A[o * n_out + p, channel * n_in + read_flat] = w.reshape(c_out, c_in_group, -1)[:, :, k]
        return A

    def linear_operator(self):
        """The map as a ``scipy.sparse.linalg.LinearOperator`` (for matrix-free solvers)."""
        from scipy.sparse.linalg import LinearOperator

        return LinearOperator(
            self.shape,
            matvec=self.matvec,
            rmatvec=self.rmatvec,
            matmat=self.matvec,
            rmatmat=self.rmatvec,
            dtype=np.float64,
        )


@dataclass(frozen=True)
class Spectrum:
    """Singular values of an ``(m, n)`` map and what follows from them.

    ``singular_values``: all ``min(m, n)`` (``method="dense"``), or the ``k`` largest then
    the ``k`` smallest (``"matrix-free"``). ``rank`` counts those above ``tol``; matrix-free,
    it is exact when fewer than ``k`` of the smallest are below ``tol`` (else None).
    ``condition_number`` is over the nonzero singular values, as the paper defines it.
    """

    shape: tuple[int, int]
    singular_values: np.ndarray
    tol: float
    method: str
    rank: int | None
    smallest: bool = True  # whether the smallest singular values were found

    @property
    def sigma_max(self) -> float:
        return float(self.singular_values.max())

    @property
    def sigma_min(self) -> float:
        """The smallest nonzero singular value (NaN when it was not found)."""
        if not self.smallest:
            return math.nan
        s = self.singular_values[self.singular_values > self.tol]
        return float(s.min()) if s.size else 0.0

    @property
    def condition_number(self) -> float:
        if not self.smallest:
            return math.nan
        return self.sigma_max / self.sigma_min if self.sigma_min > 0 else math.inf

    @property
    def condition_number_all(self) -> float:
        """Largest over smallest of all ``min(m, n)`` singular values, zero ones included
        (``inf`` if one is exactly zero; NaN when the smallest were not found)."""
        if not self.smallest:
            return math.nan
        low = float(self.singular_values.min())
        return self.sigma_max / low if low > 0 else math.inf

    @property
    def null_dim(self) -> int | None:
        """Dimension of the null space (inputs the map sends to zero)."""
        return None if self.rank is None else self.shape[1] - self.rank

    @property
    def left_null_dim(self) -> int | None:
        """Dimension of the left null space (outputs the map never produces)."""
        return None if self.rank is None else self.shape[0] - self.rank


def _gram(A: np.ndarray) -> np.ndarray:
    """``A A^T`` or ``A^T A``, whichever is smaller. Its eigenvalues are the squared singular
    values: a symmetric eigensolver is several times faster than an SVD, and loses only
    singular values below ``sqrt(eps64) * sigma_max`` (about 1.5e-8 of it), far under the
    float32 rank tolerance ``sigma_max * max(m, n) * eps32`` that decides what counts as zero."""
    return A @ A.T if A.shape[0] < A.shape[1] else A.T @ A


def row_space_energy(
    A: np.ndarray, X: np.ndarray, tol: float, eig: tuple[np.ndarray, np.ndarray] | None = None
) -> float:
    """Fraction of the energy of the rows of ``X`` (inputs, ``(N, n)``) that lies in the row
    space of ``A`` (singular values above ``tol``): 1 when ``A`` has no null space. ``eig``:
    ``np.linalg.eigh`` of ``_gram(A)`` where already computed."""
    total = float(np.sum(X**2))
    if total == 0:
        return math.nan
    lam, Q = eig if eig is not None else np.linalg.eigh(_gram(A))
    keep = lam > tol**2
    if keep.sum() == A.shape[1]:
        return 1.0
    if A.shape[0] < A.shape[1]:  # A A^T = U S^2 U^T: the row space is spanned by A^T U / S
        Z = (X @ A.T) @ Q[:, keep] / np.sqrt(lam[keep])
    else:  # A^T A = V S^2 V^T
        Z = X @ Q[:, keep]
    return float(np.sum(Z**2) / total)


def _dense_spectrum(shape: tuple[int, int], lam: np.ndarray, eps: float) -> Spectrum:
    """The spectrum from the eigenvalues ``lam`` (ascending) of the Gram matrix."""
    S = np.sqrt(np.clip(lam[::-1], 0.0, None))
    tol = rank_tolerance(S, shape, eps)
    return Spectrum(shape, S, tol, "dense", int(np.sum(S > tol)))


#: :func:`spectrum_and_energy` reduces Gram matrices larger than this to tridiagonal form
#: and finds at most ``FEW_VECTORS`` eigenvectors that way; otherwise (and beyond that) it
#: takes a full eigendecomposition.
SMALL_GRAM = 256
FEW_VECTORS = 64


def _small_eigenvectors(G: np.ndarray, shape: tuple[int, int], eps: float):
    """All eigenvalues (ascending) of the Gram matrix ``G`` of a ``shape`` matrix and the
    eigenvectors of those whose square roots are under the rank tolerance (``None`` when
    there are more than :data:`FEW_VECTORS`). One reduction to tridiagonal form (LAPACK
    ``dsytrd``, ``G = Q T Q^T``) gives both: the eigenvalues of ``T``, a few eigenvectors of
    ``T``, and ``Q`` applied to those by its Householder reflectors. A full eigendecomposition
    builds all ``n`` eigenvectors: on 1 core 4.0 s for a 3136 x 3136 Gram matrix, against 2.3 s
    this way."""
    from scipy.linalg import eigh_tridiagonal, lapack

    n = len(G)
    c, d, e, tau, info = lapack.dsytrd(G, lower=1, lwork=64 * n)
    if info != 0:
        raise np.linalg.LinAlgError(f"LAPACK dsytrd failed (info {info})")
    lam = eigh_tridiagonal(d, e, eigvals_only=True)
    k = len(lam) - _dense_spectrum(shape, lam, eps).rank
    if k > FEW_VECTORS:
        return lam, None
    if k == 0:
        return lam, np.zeros((n, 0))
    _, Z = eigh_tridiagonal(d, e, select="i", select_range=(0, k - 1))
    # Q = H_0 H_1 ... H_{n-2}, H_i = I - tau_i v v^T, v = (0 up to i, 1 at i + 1, c[i+2:, i])
    for i in range(n - 3, -1, -1):
        v = np.concatenate(([1.0], c[i + 2 :, i]))
        Z[i + 1 :] -= tau[i] * np.outer(v, v @ Z[i + 1 :])
    return lam, Z


def spectrum_and_energy(
    A: np.ndarray, X: np.ndarray, *, eps: float = float(np.finfo(np.float32).eps)
) -> tuple[Spectrum, float]:
    """:func:`spectrum` of the matrix ``A`` and :func:`row_space_energy` of the inputs ``X``
    from one reduction of its Gram matrix ``G``, with the eigenvectors of only the few
    eigenvalues under the squared rank tolerance where there are few (the usual case:
    ResNet18's 3136 x 3136 operators have two; :func:`_small_eigenvectors`). For ``G = A^T A``
    (``A`` at least as tall as wide) those span the null space and the energy outside the row
    space lies on them; for ``G = A A^T`` the energy in the row space is ``trace(B G^+ B^T)``
    with ``B = X A^T``, ``G^+`` inverting ``G`` on its kept eigenvalues: a Cholesky solve with
    ``G`` whose small eigenvalues are lifted by its largest, less what that adds back."""
    G = _gram(A)
    tall = A.shape[0] >= A.shape[1]
    Z = None
    if len(G) > SMALL_GRAM:
        lam, Z = _small_eigenvectors(G, A.shape, eps)
    if Z is None:
        lam, Q = np.linalg.eigh(G)
        spec = _dense_spectrum(A.shape, lam, eps)
        return spec, row_space_energy(A, X, spec.tol, eig=(lam, Q))
    spec = _dense_spectrum(A.shape, lam, eps)
    total = float(np.sum(X**2))
    if total == 0:
        return spec, math.nan
    if tall:
        return spec, 1.0 if Z.shape[1] == 0 else float(1 - np.sum((X @ Z) ** 2) / total)
    import scipy.linalg as sl

    B = X @ A.T
    lift = lam[-1]
    small = lam[: Z.shape[1]]
    factor = sl.cho_factor(G + lift * (Z @ Z.T))
    inside = np.sum(B * sl.cho_solve(factor, B.T).T) - np.sum((B @ Z) ** 2 / (small + lift))
    return spec, float(inside / total)


def spectrum(
    op: ConvOperator | np.ndarray,
    *,
    dense_limit: int = DENSE_LIMIT,
    k: int = 6,
    eps: float = float(np.finfo(np.float32).eps),
    maxiter: int = 20_000,
) -> Spectrum:
    """The singular values of ``op`` (a :class:`ConvOperator` or a matrix): all of them by a
    dense SVD when ``m * n <= dense_limit``, else the ``k`` largest and ``k`` smallest
    matrix-free (the smallest ones within ``maxiter`` ARPACK iterations, else only the
    largest, ``smallest=False``). ``eps`` is the precision the weights were trained in (the
    rank tolerance is ``sigma_max * max(m, n) * eps``, as everywhere in the library)."""
    m, n = op.shape
    if isinstance(op, np.ndarray) or m * n <= dense_limit:
        A = op if isinstance(op, np.ndarray) else op.matrix()
        return _dense_spectrum((m, n), np.linalg.eigvalsh(_gram(A)), eps)
    from scipy.sparse.linalg import ArpackNoConvergence, svds

    lin = op.linear_operator()
    p = min(m, n)
    k = min(k, p - 1)
    top = np.sort(svds(lin, k=k, which="LM", return_singular_vectors=False, random_state=0))
    try:  # ARPACK without shift-invert: slow when the smallest values cluster near zero
        low = svds(
            lin, k=k, which="SM", return_singular_vectors=False, random_state=0, maxiter=maxiter
        )
    except ArpackNoConvergence:
        return Spectrum(
            (m, n), top[::-1], rank_tolerance(top, (m, n), eps), "matrix-free", None, smallest=False
        )
    S = np.concatenate([top[::-1], np.sort(low)[::-1]])
    tol = rank_tolerance(S, (m, n), eps)
    zero = int(np.sum(low <= tol))
    return Spectrum((m, n), S, tol, "matrix-free", p - zero if zero < k else None)
