"""Signal spaces, the four fundamental subspaces, and residuals of a layer's weights.

A layer ``y = W x + b`` with ``W`` of shape ``(m, n)`` (m outputs, n inputs) has the SVD
``W = U diag(S) Vh``. Its **signal space** is spanned by the right singular vectors (rows of
``Vh``); the paper draws each one scaled by its singular value, ``s_i v_i``::

        R^n (inputs)                          R^m (outputs)
    row space   (V[:, :r])   --- W --->   column space    (U[:, :r])
    null space  (V[:, r:])   --- W --->   0
                                          left null space (U[:, r:]) is never reached

Whatever part of an input lies in the null space is thrown away by the layer: that is the
**residual** the paper visualises. Everything here works in float64 NumPy and accepts torch
tensors or NumPy arrays; results are NumPy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


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

    def __repr__(self) -> str:
        m, n = self.shape
        return (
            f"LayerSpaces({m}x{n}, rank={self.rank}, condition_number="
            f"{self.condition_number:.4g}, s_max={self.S[0] if len(self.S) else 0:.4g})"
        )


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
    return LayerSpaces(U, S, Vh, _tolerance(S, W.shape, eps))


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
    nonzero = S[S > _tolerance(S, W.shape, eps)]
    return float(S[0] / nonzero[-1]) if nonzero.size else float("inf")


def _tolerance(S: np.ndarray, shape: tuple[int, int], eps: float) -> float:
    return float(S.max() * max(shape) * eps) if S.size else 0.0


def _row_basis(W: np.ndarray | torch.Tensor | LayerSpaces) -> np.ndarray:
    """Orthonormal row-space basis ``(n, rank)``; a thin SVD unless spaces are given."""
    if isinstance(W, LayerSpaces):
        return W.row_space
    A, eps = _as_float64(W)
    _, S, Vh = np.linalg.svd(A, full_matrices=False)
    return Vh[: int(np.sum(S > _tolerance(S, A.shape, eps)))].T


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


def _flatten_like(W: np.ndarray, x: np.ndarray | torch.Tensor) -> tuple[np.ndarray, tuple]:
    """``x`` as ``(B, n)`` for ``W`` of shape ``(m, n)``, and the shape to give back."""
    X, _ = _as_float64(x)
    n = W.shape[1]
    if X.ndim == 1:
        if X.size != n:
            raise ValueError(f"vector of length {X.size} does not fit a weight with {n} inputs")
        return X[None, :], X.shape
    X2 = X.reshape(X.shape[0], -1)
    if X2.shape[1] != n:
        raise ValueError(f"inputs of shape {X.shape} do not flatten to {n} values each")
    return X2, X.shape


def class_residuals(
    W: np.ndarray | torch.Tensor, class_means: np.ndarray | torch.Tensor
) -> np.ndarray:
    """The paper's residual of each class average against its own output unit.

    ``r_c = a_c - (w_c . a_c / w_c . w_c) w_c``: the part of class c's average image ``a_c``
    that row ``w_c`` of ``W`` does not see. ``class_means`` is ``(C, n)`` or ``(C, *image)``
    with ``C`` equal to the number of rows of ``W``; the result has its shape.
    """
    W, _ = _as_float64(W)
    A, shape = _flatten_like(W, class_means)
    if A.shape[0] != W.shape[0]:
        raise ValueError(f"{A.shape[0]} class means for a weight with {W.shape[0]} outputs")
    norms = np.einsum("cn,cn->c", W, W)
    if np.any(norms == 0):
        raise ValueError(f"rows {np.flatnonzero(norms == 0).tolist()} of W are zero")
    coef = np.einsum("cn,cn->c", W, A) / norms
    return (A - coef[:, None] * W).reshape(shape)


def row_space_projection(
    W: np.ndarray | torch.Tensor | LayerSpaces, x: np.ndarray | torch.Tensor
) -> np.ndarray:
    """Orthogonal projection of ``x`` onto the row space of ``W`` (what the layer sees).

    ``x`` is one vector ``(n,)`` or a batch ``(B, n)`` / ``(B, *image)``; same shape back.
    """
    V = _row_basis(W)
    X, shape = _flatten_like(V.T, x)
    return ((X @ V) @ V.T).reshape(shape)


def null_space_residual(
    W: np.ndarray | torch.Tensor | LayerSpaces, x: np.ndarray | torch.Tensor
) -> np.ndarray:
    """``x`` minus its projection onto the row space of ``W``: what the layer cannot see.

    ``W`` x residual is zero; ``x`` is one vector or a batch, and comes back in its shape.
    """
    X, _ = _as_float64(x)
    return X - row_space_projection(W, x)


def energy_kept(
    W: np.ndarray | torch.Tensor | LayerSpaces, x: np.ndarray | torch.Tensor
) -> np.ndarray:
    """Fraction of each input's squared norm that lies in the row space of ``W``.

    One value per input (``(B,)``, or a 0-d array for one vector); ``1 - energy_kept`` is the
    fraction the layer discards. An all-zero input keeps (and loses) nothing: NaN.
    """
    X, _ = _as_float64(x)
    P = row_space_projection(W, X)
    axes = tuple(range(1, X.ndim)) if X.ndim > 1 else None
    total = np.sum(X**2, axis=axes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(P**2, axis=axes) / total


def layer_matrix(layer: nn.Module) -> np.ndarray:
    """The matrix a Linear ``(out, in)`` or Conv2d ``(out, in*kh*kw)`` layer applies to its
    input (for a convolution: to each unfolded input patch)."""
    if isinstance(layer, nn.Linear):
        return _as_float64(layer.weight)[0]
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            raise ValueError(f"grouped convolutions (groups={layer.groups}) are not supported")
        w = _as_float64(layer.weight)[0]
        return w.reshape(w.shape[0], -1)
    raise TypeError(f"expected nn.Linear or nn.Conv2d, got {type(layer).__name__}")


@torch.no_grad()
def energy_kept_per_layer(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """For each Linear / Conv2d layer, the fraction of its input's energy in its row space.

    ``x`` is a batch of images ``(B, 1, 28, 28)``; the network runs once (eval mode) with
    hooks that record each layer's input. For a convolution the input is unfolded into
    patches ``(in*kh*kw)`` and the fraction is over all patches of the batch.
    """
    from .models import weight_layers

    layers = weight_layers(model)
    inputs: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, name=name: inputs.__setitem__(name, inp[0]))
        for name, m in layers.items()
    ]
    try:
        model.eval()
        model(x.to(next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    result = {}
    for name, layer in layers.items():
        inp = inputs[name].detach().cpu().double()
        if isinstance(layer, nn.Conv2d):
            patches = F.unfold(inp, layer.kernel_size, layer.dilation, layer.padding, layer.stride)
            inp = patches.transpose(1, 2).reshape(-1, patches.shape[1])
        else:
            inp = inp.reshape(inp.shape[0], -1)
        kept = np.sum(row_space_projection(layer_matrix(layer), inp) ** 2)
        result[name] = float(kept / np.sum(inp.numpy() ** 2))
    return result
