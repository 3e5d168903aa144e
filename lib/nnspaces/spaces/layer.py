"""Signal spaces, the four fundamental subspaces, and pre-images of a layer's weights.

A layer ``y = W x + b`` with ``W`` of shape ``(m, n)`` (m outputs, n inputs) has the SVD
``W = U diag(S) Vh``. Its **signal space** is spanned by the right singular vectors (rows of
``Vh``); the paper draws each one scaled by its singular value, ``s_i v_i``::

        R^n (inputs)                          R^m (outputs)
    row space   (V[:, :r])   --- W --->   column space    (U[:, :r])
    null space  (V[:, r:])   --- W --->   0
                                          left null space (U[:, r:]) is never reached

Whatever part of an input lies in the null space is thrown away by the layer (the
**residual**, :mod:`nnspaces.spaces.residuals`); run backward, the same SVD gives every input that
produces an output, ``W^+ z + N w`` (:meth:`LayerSpaces.preimage`): the inverse maps of
:mod:`~nnspaces.inversion.exact` build on it. One rank tolerance serves everything (``tol`` below).
Everything here works in float64 NumPy and accepts torch tensors or NumPy arrays; results are
NumPy arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch


def _as_float64(a: np.ndarray | torch.Tensor) -> tuple[np.ndarray, float]:
    """``a`` as a float64 array, and the machine epsilon of its original dtype."""
    if isinstance(a, torch.Tensor):
        eps = torch.finfo(a.dtype).eps if a.is_floating_point() else np.finfo(np.float64).eps
        return a.detach().cpu().double().numpy(), eps
    a = np.asarray(a)
    eps = np.finfo(a.dtype).eps if np.issubdtype(a.dtype, np.floating) else np.finfo(float).eps
    return a.astype(np.float64), float(eps)


@dataclass(frozen=True, repr=False)
class LayerSpaces:
    """The full SVD ``W = U @ diag(S) @ Vh`` of an ``(m, n)`` weight, and what follows from it.

    ``U`` is ``(m, m)`` (``(m, min(m, n))`` when made with ``full_matrices=False``), ``S`` is
    ``(min(m, n),)`` in decreasing order, ``Vh`` is ``(n, n)``.
    ``tol`` is the threshold below which a singular value counts as zero:
    ``S.max() * max(m, n) * eps`` with ``eps`` the machine epsilon of the weight's dtype
    (NumPy's ``matrix_rank`` rule), so float32 weights get a float32 tolerance.
    """

    U: np.ndarray
    S: np.ndarray
    Vh: np.ndarray
    tol: float
    matrix: np.ndarray  # the weight itself, float64 (m, n)

    @property
    def shape(self) -> tuple[int, int]:
        return self.U.shape[0], self.Vh.shape[0]

    @cached_property
    def rank(self) -> int:
        """Numerical rank: the number of singular values above ``tol``."""
        return int(np.sum(self.S > self.tol))

    @property
    def condition_number(self) -> float:
        """Largest over smallest nonzero singular value (the paper's definition); ``inf``
        for a zero matrix, which has none."""
        if self.rank == 0:
            return float("inf")
        return float(self.S[0] / self.S[self.rank - 1])

    @property
    def condition_number_full(self) -> float:
        """Largest over smallest of all ``min(m, n)`` singular values; ``inf`` when the
        matrix is rank deficient (its smallest singular value is zero)."""
        if self.rank < len(self.S):
            return float("inf")
        return float(self.S[0] / self.S[-1])

    @property
    def signal_space(self) -> np.ndarray:
        """Rows ``s_i v_i``, shape ``(min(m, n), n)``: the paper's scaled right singular
        vectors."""
        return self.S[:, None] * self.Vh[: len(self.S)]

    @property
    def row_space(self) -> np.ndarray:
        """Orthonormal basis of the row space, as columns: ``(n, rank)``."""
        return self.Vh[: self.rank].T

    @property
    def null_space(self) -> np.ndarray:
        """Orthonormal basis of the null space, as columns: ``(n, n - rank)``."""
        return self.Vh[self.rank :].T

    @property
    def column_space(self) -> np.ndarray:
        """Orthonormal basis of the column space (range), as columns: ``(m, rank)``."""
        return self.U[:, : self.rank]

    @property
    def left_null_space(self) -> np.ndarray:
        """Orthonormal basis of the left null space, as columns: ``(m, m - rank)``."""
        if self.U.shape[1] < self.U.shape[0]:
            raise ValueError("left_null_space needs layer_spaces(weight, full_matrices=True)")
        return self.U[:, self.rank :]

    @cached_property
    def pinv(self) -> np.ndarray:
        """Moore-Penrose pseudo-inverse ``W^+ = V_r diag(1/s) U_r^T``: ``(n, m)``."""
        r = self.rank
        return self.Vh[:r].T @ (self.U[:, :r] / self.S[:r]).T

    @cached_property
    def _null(self) -> np.ndarray:
        return np.ascontiguousarray(self.null_space)

    def preimage(
        self,
        z: np.ndarray | torch.Tensor,
        *,
        reference: np.ndarray | torch.Tensor | None = None,
        null_coeffs: np.ndarray | None = None,
    ) -> Preimage:
        """The inputs ``x`` with ``W x = z``, ``z`` ``(B, m)`` or ``(m,)``: every one is
        ``W^+ z + N w`` (``N`` the null-space basis, ``w`` free). The null-space part is the
        one that makes ``x`` closest to ``reference`` (``(B, n)``: ``N N^T (reference -
        W^+ z)``), or ``N @ null_coeffs`` (``(B, n - rank)``), or zero (the minimum-norm
        pre-image). Where ``z`` is outside the column space, ``W x`` misses it: check
        :attr:`Preimage.residual`."""
        if reference is not None and null_coeffs is not None:
            raise ValueError("give reference or null_coeffs, not both")
        W = self.matrix
        Z = np.atleast_2d(_as_float64(z)[0])
        particular = Z @ self.pinv.T
        N = self._null
        if reference is not None:
            P = np.atleast_2d(_as_float64(reference)[0]).reshape(len(particular), -1)
            x = P + (Z - P @ W.T) @ self.pinv.T  # the closest point: P + W^+ (z - W P)
        elif null_coeffs is not None:
            C = np.atleast_2d(np.asarray(null_coeffs, dtype=np.float64))
            if C.shape[-1] != N.shape[1]:
                raise ValueError(f"null_coeffs need {N.shape[1]} values per row, got {C.shape}")
            x = particular + C @ N.T
        else:
            x = particular
        return Preimage(x, particular, x - particular, Z - x @ W.T)

    def closest_preimage(
        self, z: np.ndarray, reference: np.ndarray, lo: float = -math.inf, hi: float = math.inf
    ) -> np.ndarray | None:
        """The point closest to ``reference`` ``(n,)`` of ``{x : W x = z, lo <= x <= hi}``
        (``z`` ``(m,)``), or None when that set is empty (see :func:`closest_in_bounds`)."""
        x = self.preimage(z, reference=reference).x[0]
        if np.all(x >= lo) and np.all(x <= hi):
            return x
        return closest_in_bounds(self, z, reference, lo, hi)

    def __repr__(self) -> str:
        m, n = self.shape
        return (
            f"LayerSpaces({m}x{n}, rank={self.rank}, condition_number="
            f"{self.condition_number:.4g}, s_max={self.S[0] if len(self.S) else 0:.4g})"
        )


@dataclass(frozen=True)
class Preimage:
    """Inputs of a layer that give one output each, split by the four subspaces: ``x =
    particular + null_part`` (``(B, n)``), ``particular = W^+ z`` in the row space and
    ``null_part`` in the null space; ``residual = z - W x`` ``(B, m)`` is zero (to rounding)
    exactly when ``z`` lies in the column space."""

    x: np.ndarray
    particular: np.ndarray
    null_part: np.ndarray
    residual: np.ndarray


def closest_in_bounds(
    spaces: LayerSpaces, z: np.ndarray, reference: np.ndarray, lo: float, hi: float
) -> np.ndarray | None:
    """The point closest to ``reference`` of ``{x : W x = z, lo <= x <= hi}``; None if that
    set is empty.

    Hand-written because SciPy has no quadratic-programming solver: SLSQP needs ~100x longer
    on these 100-800 variable problems and says nothing reliable about infeasibility. This
    is the standard semismooth Newton method on the dual (``x(y) = clip(q + W^T y, lo, hi)``,
    solve ``W x(y) = z`` for the multipliers ``y``; Armijo line search on the concave dual),
    which converges in a few steps and whose answer satisfies the KKT conditions exactly.
    When it does not converge, :func:`scipy.optimize.linprog` (HiGHS) decides: infeasible, or
    a feasible point closest to ``reference`` in the L1 norm.
    """
    W, d, q = spaces.matrix, z, reference
    m = W.shape[0]
    scale = max(1.0, float(np.abs(d).max()))

    def primal(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = q + W.T @ y
        return np.clip(g, lo, hi), g

    def dual(y: np.ndarray) -> float:
        h, _ = primal(y)
        return 0.5 * float(np.sum((h - q) ** 2)) + float(y @ (d - W @ h))

    # Start from the multipliers of the unconstrained projection: y = (W W^T)^+ (d - W q).
    r = spaces.rank
    U, S = spaces.U[:, :r], spaces.S[:r]
    y = U @ ((U.T @ (d - W @ q)) / S**2)
    for _ in range(100):
        h, g = primal(y)
        res = d - W @ h
        free = (g > lo) & (g < hi)
        if np.linalg.norm(res) <= 1e-11 * scale * math.sqrt(m):
            # one exact correction on the free set: W h = d to rounding error
            corr, *_ = np.linalg.lstsq(W[:, free], res, rcond=None)
            h = h.copy()
            h[free] += corr
            return h
        Wf = W[:, free]
        A = Wf @ Wf.T
        A[np.diag_indices(m)] += 1e-12 * (np.trace(A) / m + 1.0)
        dy = np.linalg.solve(A, res)
        theta, slope, step = dual(y), float(res @ dy), 1.0
        while step > 1e-12 and dual(y + step * dy) < theta + 1e-4 * step * slope:
            step *= 0.5
        y = y + step * dy
    return _lp_closest(W, d, q, lo, hi)


def _lp_closest(
    W: np.ndarray, d: np.ndarray, q: np.ndarray, lo: float, hi: float
) -> np.ndarray | None:
    """The L1-closest point to ``q`` with ``W h = d`` and ``lo <= h <= hi`` (HiGHS), or None
    when no such point exists. Variables ``(h, u)`` with ``|h - q| <= u``, minimise sum(u)."""
    from scipy.optimize import linprog
    from scipy.sparse import bmat, csr_matrix, eye

    m, n = W.shape
    c = np.concatenate([np.zeros(n), np.ones(n)])
    eye_n = eye(n, format="csr")
    A_ub = bmat([[eye_n, -eye_n], [-eye_n, -eye_n]], format="csr")
    b_ub = np.concatenate([q, -q])
    A_eq = bmat([[csr_matrix(W), csr_matrix((m, n))]], format="csr")
    box = (lo if math.isfinite(lo) else None, hi if math.isfinite(hi) else None)
    bounds = [box] * n + [(0, None)] * n
    res = linprog(c, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=d, bounds=bounds, method="highs")
    if res.status != 0:
        return None
    h = res.x[:n]
    # HiGHS meets W h = d to ~1e-9; one minimum-norm correction makes it exact
    return h + np.linalg.lstsq(W, d - W @ h, rcond=None)[0]


def layer_spaces(weight: np.ndarray | torch.Tensor, *, full_matrices: bool = True) -> LayerSpaces:
    """SVD-based spaces of a 2-D weight ``(m, n)`` (torch tensor or NumPy array).

    With ``full_matrices=False`` ``U`` is only ``(m, min(m, n))`` and ``left_null_space`` is
    unavailable: use that for very tall matrices (a conv layer's ``(out*in, kh*kw)`` kernel
    matrix), whose full ``U`` would not fit in memory.
    """
    W, eps = _as_float64(weight)
    if W.ndim != 2:
        raise ValueError(
            f"layer_spaces needs a 2-D weight, got shape {W.shape}; "
            "use conv_as_matrix() for a 4-D convolution weight"
        )
    if not np.all(np.isfinite(W)):
        raise ValueError("weight has NaN or infinite entries")
    U, S, Vh = np.linalg.svd(W, full_matrices=True) if full_matrices else _thin_svd_full_v(W)
    return LayerSpaces(U, S, Vh, rank_tolerance(S, W.shape, eps), W)


def _thin_svd_full_v(W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SVD with ``U`` thin ``(m, k)`` but ``Vh`` complete ``(n, n)`` (null space intact)."""
    U, S, Vh = np.linalg.svd(W, full_matrices=False)
    if Vh.shape[0] < W.shape[1]:  # wide matrix: complete Vh with an orthonormal complement
        Vh = np.linalg.svd(W, full_matrices=True)[2]
    return U, S, Vh


def singular_values(weight: np.ndarray | torch.Tensor) -> np.ndarray:
    """Singular values of a 2-D weight in decreasing order (no singular vectors: cheap even
    for a ``(262144, 9)`` kernel matrix)."""
    W, _ = _as_float64(weight)
    if W.ndim != 2:
        raise ValueError(f"singular_values needs a 2-D weight, got shape {W.shape}")
    return np.linalg.svd(W, compute_uv=False)


def condition_number(weight: np.ndarray | torch.Tensor) -> float:
    """Largest over smallest nonzero singular value (``inf`` for a zero matrix), with the
    same zero tolerance as :func:`layer_spaces`."""
    W, eps = _as_float64(weight)
    S = singular_values(W)
    nonzero = S[S > rank_tolerance(S, W.shape, eps)]
    return float(S[0] / nonzero[-1]) if nonzero.size else float("inf")


def rank_tolerance(S: np.ndarray, shape: tuple[int, int], eps: float) -> float:
    """The library's one zero threshold for singular values ``S`` of a ``shape`` matrix in
    precision ``eps``: ``S.max() * max(shape) * eps`` (NumPy's ``matrix_rank`` rule)."""
    return float(S.max() * max(shape) * eps) if S.size else 0.0


def row_basis(W: np.ndarray | torch.Tensor | LayerSpaces) -> np.ndarray:
    """Orthonormal row-space basis ``(n, rank)``; a thin SVD unless spaces are given."""
    if isinstance(W, LayerSpaces):
        return W.row_space
    A, eps = _as_float64(W)
    _, S, Vh = np.linalg.svd(A, full_matrices=False)
    return Vh[: int(np.sum(S > rank_tolerance(S, A.shape, eps)))].T


def conv_as_matrix(weight4d: np.ndarray | torch.Tensor) -> np.ndarray:
    """A conv weight ``(out, in, kh, kw)`` as the ``(out*in, kh*kw)`` matrix of its kernels.

    Row ``o * in + i`` is kernel ``weight[o, i]`` flattened row by row (the paper's Figure 2
    layout: its SVD gives ``kh*kw`` signal-space kernels).
    """
    W, _ = _as_float64(weight4d)
    if W.ndim != 4:
        raise ValueError(f"conv_as_matrix needs a 4-D weight (out, in, kh, kw), got {W.shape}")
    out, inp, kh, kw = W.shape
    return W.reshape(out * inp, kh * kw)
