"""Spectra of convolutions at real input sizes (224 x 224 and up), matrix free and by FFT.

A convolution on an input of shape ``(C, *spatial)`` is a linear map with one column per
input value (:mod:`nnspaces.spaces.operators`); at ImageNet sizes it has 10^5 to 10^6 columns
and no dense SVD runs. This module gives, per layer, with each value labelled by what it is:

- ``kernel_norm``: the largest singular value of the ``c_out x (c_in * k * k)`` reshaped
  kernel that ``torch.nn.utils.spectral_norm`` normalises (not the operator norm).
- ``sigma_max`` (exact): Lanczos on the Gram map ``A^T A`` (or ``A A^T``, the smaller side),
  with the layer's own convolution and its exact adjoint (``torch.func.vjp``), on the model's
  device; stopped when the Ritz residual certifies ``sigma_max`` to :data:`RTOL`.
- ``circular`` (exact-for-circular): every singular value of the kernel with wrap-around
  padding, by the FFT method of Sedghi, Gupta & Long (ICLR 2019): per frequency the SVD of
  the kernel's ``c_out x c_in`` DFT matrix; a stride by polyphase (the frequencies that alias
  onto one output frequency side by side), where every size is a multiple of the stride.
- ``sigma_max_upper`` (upper bound): with zero padding the layer is the circular convolution
  on the zero-padded grid, restricted: its norm is at most that circular norm.
- ``sigma_min`` (exact or upper bound): the smallest of the ``min(m, n)`` singular values,
  from the same run: exact when its residual converged, else the smallest Ritz value, which
  is never below the truth.
- ``null_dim`` (exact or lower bound): exact for 1 x 1 kernels (the channel matrix's spectrum,
  repeated) and where ``sigma_min`` is certified above the rank tolerance; else ``n - rank``,
  the rank bounded by the outputs and the input pixels the layer reads (a lower bound).

A ``ConvTranspose`` is the adjoint of a convolution (:func:`conv_view`): the same values.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.linalg import eigh_tridiagonal
from torch import nn

from .layer import rank_tolerance

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
#: Relative accuracy at which a Lanczos Ritz value counts as exact (residual / value).
RTOL = 1e-7
#: Labels a value in a :func:`conv_table` can carry.
LABELS = ("exact", "exact-for-circular", "upper bound", "lower bound", "not applicable")
_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONVT_FN = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _check(conv: nn.Module) -> None:
    if not isinstance(conv, CONVS + TRANSPOSED):
        names = ", ".join(t.__name__ for t in CONVS + TRANSPOSED)
        raise TypeError(f"{type(conv).__name__} is not a convolution; allowed: {names}")


class ConvMap:
    """The layer (bias left out) as a linear map on inputs of ``input_shape`` (``(C, *spatial)``,
    no batch dimension), in ``dtype`` on ``device``: :meth:`forward` and its exact adjoint
    :meth:`adjoint` on batches ``(B, *shape)``."""

    def __init__(self, conv: nn.Module, input_shape, device=None, dtype=torch.float64):
        _check(conv)
        self.conv = conv
        self.dims = conv.weight.dim() - 2
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != self.dims + 1 or shape[0] != conv.in_channels or min(shape) < 1:
            raise ValueError(
                f"input_shape {tuple(input_shape)} does not fit {conv}: it needs "
                f"{conv.in_channels} channels and {self.dims} positive spatial size(s)"
            )
        self.input_shape = shape
        self.device = torch.device(device) if device is not None else conv.weight.device
        self.dtype = dtype
        self.weight = conv.weight.detach().to(self.device, dtype)
        with torch.no_grad():
            out = self.forward(torch.zeros(1, *shape, device=self.device, dtype=dtype))
        self.output_shape = tuple(out.shape[1:])
        self._vjp: dict[int, object] = {}

    @property
    def shape(self) -> tuple[int, int]:
        """(outputs, inputs) of the map's matrix."""
        return math.prod(self.output_shape), math.prod(self.input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        if isinstance(c, TRANSPOSED):
            return _CONVT_FN[self.dims](
                x, self.weight, None, c.stride, c.padding, c.output_padding, c.groups, c.dilation
            )
        padding = c.padding
        if c.padding_mode != "zeros":
            x = F.pad(x, c._reversed_padding_repeated_twice, mode=c.padding_mode)
            padding = 0
        return _CONV_FN[self.dims](x, self.weight, None, c.stride, padding, c.dilation, c.groups)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``A^T y`` for a batch ``y`` ``(B, *output_shape)``: the vector-Jacobian product of
        the (linear) forward map, exact for every padding mode."""
        b = y.shape[0]
        if b not in self._vjp:
            zero = torch.zeros(b, *self.input_shape, device=self.device, dtype=self.dtype)
            self._vjp[b] = torch.func.vjp(self.forward, zero)[1]
        return self._vjp[b](y)[0]

    def gram(self, v: torch.Tensor) -> torch.Tensor:
        """The Gram map of the smaller side on a flat vector: ``A^T A v`` (``n <= m``) or
        ``A A^T v``; its eigenvalues are the squared singular values."""
        m, n = self.shape
        with torch.no_grad():
            if n <= m:
                return self.adjoint(self.forward(v.reshape(1, *self.input_shape))).reshape(-1)
            return self.forward(self.adjoint(v.reshape(1, *self.output_shape))).reshape(-1)


def kernel_norm(conv: nn.Module) -> float:
    """Largest singular value of the reshaped kernel ``torch.nn.utils.spectral_norm``
    normalises: ``weight`` as ``(c_out, c_in/groups * prod(k))`` for a convolution, and with
    its dimension 1 first for a transposed one (``spectral_norm``'s ``dim=1``)."""
    _check(conv)
    w = conv.weight.detach().double()
    if isinstance(conv, TRANSPOSED):
        w = w.transpose(0, 1)
    return float(torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2))


@dataclass(frozen=True)
class ConvView:
    """A layer as a convolution (a transposed one as the convolution it is the adjoint of):
    ``weight`` ``(c_out, c_in/groups, *k)`` on inputs of ``input_shape``; ``transposed`` says
    the layer's own map is this convolution's adjoint."""

    weight: torch.Tensor
    input_shape: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    pad: tuple[int, ...]  # total zero padding per spatial dimension (both sides)
    padding_mode: str
    transposed: bool


def conv_view(conv: nn.Module, input_shape, output_shape) -> ConvView:
    """The :class:`ConvView` of ``conv`` on ``input_shape`` (its output ``output_shape``)."""
    transposed = isinstance(conv, TRANSPOSED)
    d = conv.weight.dim() - 2
    rev = getattr(conv, "_reversed_padding_repeated_twice", None)
    if transposed:
        pad = tuple(2 * p for p in conv.padding)
    else:
        pad = tuple(rev[2 * i] + rev[2 * i + 1] for i in range(d))[::-1]
    return ConvView(
        conv.weight.detach(),
        tuple(output_shape if transposed else input_shape),
        tuple(conv.stride),
        tuple(conv.dilation),
        conv.groups,
        pad,
        "zeros" if transposed else conv.padding_mode,
        transposed,
    )


def circular_spectrum(view: ConvView, grid=None, dtype=torch.complex128) -> np.ndarray | None:
    """Every singular value (descending) of ``view``'s kernel applied circularly on the
    spatial ``grid`` (default its input's): the map ``x -> (w * x)[::stride]`` with indices
    wrapping around, whose output has ``grid / stride`` positions. ``None`` where a grid size
    is not a multiple of the stride (the polyphase decomposition needs it).

    Per output frequency ``f``, the block ``[K(f + j * grid/stride) for j in phases] /
    sqrt(prod(stride))`` (``c_out x c_in * prod(stride)`` per group), ``K`` the kernel's DFT on
    the grid (a tap at ``a * dilation`` taken modulo the grid, so kernels larger than the grid
    wrap as the circular map does)."""
    grid = tuple(view.input_shape[1:] if grid is None else grid)
    s = view.stride
    if any(n % st for n, st in zip(grid, s, strict=True)):
        return None
    w = view.weight.to(torch.float64)
    c_out, c_in_g, *k = w.shape
    d = len(grid)
    placed = torch.zeros(c_out, c_in_g, *grid, dtype=torch.float64, device=w.device)
    for tap in np.ndindex(*k):
        where = tuple(int(a * dil % n) for a, dil, n in zip(tap, view.dilation, grid, strict=True))
        placed[(slice(None), slice(None), *where)] += w[(slice(None), slice(None), *tap)]
    K = torch.fft.fftn(placed.to(dtype), dim=tuple(range(2, 2 + d)))
    # split each frequency axis n into (phase j, output frequency f): index j * n/s + f
    split = [c_out, c_in_g]
    for n, st in zip(grid, s, strict=True):
        split += [st, n // st]
    K = K.reshape(split)
    phases = [2 + 2 * i for i in range(d)]
    freqs = [3 + 2 * i for i in range(d)]
    K = K.permute(*freqs, 0, 1, *phases)  # (*f, c_out, c_in_g, *j)
    F_out = math.prod(n // st for n, st in zip(grid, s, strict=True))
    g = view.groups
    K = K.reshape(F_out, g, c_out // g, c_in_g * math.prod(s)) / math.sqrt(math.prod(s))
    # a real kernel's blocks at f and -f are complex conjugates (phases permuted): the same
    # singular values, so only one of each pair is decomposed
    out = [n // st for n, st in zip(grid, s, strict=True)]
    idx = np.arange(F_out)
    neg = np.ravel_multi_index(
        tuple((-f) % n for f, n in zip(np.unravel_index(idx, out), out, strict=True)), out
    )
    keep = idx <= neg
    S = torch.linalg.svdvals(K[torch.as_tensor(keep, device=K.device)]).reshape(keep.sum(), -1)
    times = torch.as_tensor(np.where(idx[keep] == neg[keep], 1, 2), device=S.device)
    S = torch.repeat_interleave(S, times, dim=0).reshape(-1)
    return np.sort(S.cpu().numpy())[::-1]


def zero_padding_upper_bound(view: ConvView) -> float | None:
    """An upper bound on the operator norm of a zero-padded layer: the layer is the circular
    map on the padded grid (each size rounded up to a multiple of the stride: no output
    wraps) with its input embedded and its output restricted, both of norm <= 1. ``None``
    for other padding modes (reflect / replicate padding is no isometry)."""
    if view.padding_mode == "zeros":
        grid = [
            -(-(n + p) // st) * st
            for n, p, st in zip(view.input_shape[1:], view.pad, view.stride, strict=True)
        ]
        return float(circular_spectrum(view, grid)[0])
    if view.padding_mode == "circular":
        S = circular_spectrum(view)
        return None if S is None else float(S[0])
    return None


@dataclass(frozen=True)
class Extremes:
    """Lanczos on a Gram map: the largest and smallest Ritz values (squared singular values)
    with their residual norms, after ``steps`` steps (``exhausted``: the Krylov space became
    invariant, so the Ritz values are eigenvalues)."""

    largest: float
    largest_residual: float
    smallest: float
    smallest_residual: float
    steps: int
    exhausted: bool

    @property
    def largest_converged(self) -> bool:
        return self.exhausted or self.largest_residual <= RTOL * self.largest

    @property
    def smallest_converged(self) -> bool:
        return self.exhausted or self.smallest_residual <= 1e-6 * max(self.smallest, 0.0)


def lanczos_extremes(
    gram, n: int, *, min_steps: int = 0, max_steps: int = 300, device=None, seed: int = 0
) -> Extremes:
    """Lanczos with full reorthogonalisation on the symmetric map ``gram`` (flat float64
    vectors of length ``n``): runs until the largest Ritz value is certified
    (:data:`RTOL`) and at least ``min_steps`` steps were taken (more steps: the smallest
    converge too), at most ``max_steps``. Ritz values lie inside the spectrum: the largest
    is never above the largest eigenvalue, the smallest never below the smallest."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    q = torch.randn(n, generator=gen, dtype=torch.float64).to(device)
    q /= torch.linalg.vector_norm(q)
    max_steps = min(max_steps, n)
    Q = torch.empty(max_steps, n, dtype=torch.float64, device=device)
    alpha, beta = [], []
    for j in range(max_steps):
        Q[j] = q
        w = gram(q)
        a = float(w @ q)
        for _ in range(2):  # full reorthogonalisation, twice is enough
            w -= Q[: j + 1].T @ (Q[: j + 1] @ w)
        b = float(torch.linalg.vector_norm(w))
        alpha.append(a)
        theta, Z = eigh_tridiagonal(np.array(alpha), np.array(beta))
        res = b * np.abs(Z[-1])
        exhausted = b <= 1e-12 * max(abs(theta[-1]), 1e-300) or j + 1 == n
        result = Extremes(
            float(theta[-1]), float(res[-1]), float(theta[0]), float(res[0]), j + 1, exhausted
        )
        if exhausted or (j + 1 >= min_steps and result.largest_converged):
            return result
        beta.append(b)
        q = w / b
    return result


@dataclass(frozen=True)
class LayerSpectrum:
    """One layer's values (see the module docstring), each with its label and seconds."""

    shape: tuple[int, int]
    kernel_norm: float
    circular_norm: float | None
    circular_min: float | None
    sigma_max: float
    sigma_max_label: str
    sigma_max_upper: float | None
    sigma_min: float
    sigma_min_label: str
    null_dim: int
    null_dim_label: str
    lanczos_steps: int
    seconds: dict


def _pointwise(view: ConvView, op: ConvMap) -> tuple[np.ndarray, int] | None:
    """All singular values of a 1 x 1 zero-padded convolution and its rank, from its
    structure: each output position that reads inside the input reads one pixel no other
    position reads, so the map is the channel matrix repeated on those ``P`` positions."""
    if any(k != 1 for k in view.weight.shape[2:]) or view.padding_mode != "zeros":
        return None
    inside = 1
    for n, st, p in zip(view.input_shape[1:], view.stride, view.pad, strict=True):
        # output q reads q * st - p/2 (padding split evenly for a 1 x 1 kernel)
        lo = p // 2
        n_out = (n + p - 1) // st + 1
        inside *= sum(1 for q in range(n_out) if 0 <= q * st - lo < n)
    g = view.groups
    w = view.weight.double().reshape(g, -1, view.weight.shape[1]).cpu()
    S = torch.linalg.svdvals(w).reshape(-1).numpy()
    keep = np.repeat(np.sort(S)[::-1], inside)
    m, n = op.shape
    full = np.zeros(min(m, n))
    full[: len(keep)] = np.sort(keep)[::-1]
    tol = rank_tolerance(full, (m, n), float(np.finfo(np.float32).eps))
    return full, int(np.sum(full > tol))


def _read_pixels(view: ConvView) -> int:
    """How many input values a zero-padded convolution ever reads (an upper bound on its
    rank: the others are zero columns)."""
    c, *spatial = view.input_shape
    count = c
    k = view.weight.shape[2:]
    for n, st, p, dil, kk in zip(spatial, view.stride, view.pad, view.dilation, k, strict=True):
        n_out = (n + p - dil * (kk - 1) - 1) // st + 1
        lo = p // 2
        read = {q * st - lo + a * dil for q in range(n_out) for a in range(kk)}
        count *= sum(1 for r in read if 0 <= r < n)
    return count


def layer_spectrum(
    conv: nn.Module,
    input_shape,
    *,
    device=None,
    smallest_steps: int = 0,
    max_steps: int = 300,
    eps: float = float(np.finfo(np.float32).eps),
    seed: int = 0,
    upper_bound: bool = True,
    circular: bool = True,
) -> LayerSpectrum:
    """The values of the module docstring for one layer on ``input_shape`` (``(C, *spatial)``).
    ``smallest_steps``: Lanczos steps to spend at least (0: stop once ``sigma_max`` is
    certified; the smallest singular value is then a loose upper bound). ``upper_bound``:
    whether to compute ``sigma_max_upper`` (a second FFT spectrum, on the padded grid);
    ``circular``: whether to compute the circular spectrum (None where not)."""
    seconds = {}
    t = time.perf_counter()
    knorm = kernel_norm(conv)
    seconds["kernel_norm"] = time.perf_counter() - t
    op = ConvMap(conv, input_shape, device=device)
    m, n = op.shape
    view = conv_view(conv, op.input_shape, op.output_shape)
    t = time.perf_counter()
    circ = circular_spectrum(view) if circular else None
    seconds["circular"] = time.perf_counter() - t
    t = time.perf_counter()
    upper = zero_padding_upper_bound(view) if upper_bound else None
    seconds["upper_bound"] = time.perf_counter() - t
    t = time.perf_counter()
    structure = _pointwise(view, op)
    if structure is not None:
        full, rank = structure
        smax, smin, steps = float(full[0]), float(full[-1]), 0
        smax_label = smin_label = null_label = "exact"
    else:
        ext = lanczos_extremes(
            op.gram, min(m, n), min_steps=smallest_steps, max_steps=max_steps,
            device=op.device, seed=seed,
        )  # fmt: skip
        steps = ext.steps
        smax = math.sqrt(max(ext.largest, 0.0))
        smin = math.sqrt(max(ext.smallest, 0.0))
        smax_label = "exact" if ext.largest_converged else "lower bound"
        smin_label = "exact" if ext.smallest_converged else "upper bound"
        tol = smax * max(m, n) * eps
        if smin_label == "exact" and smin > tol:
            rank, null_label = min(m, n), "exact"
        else:
            rank_view = min(math.prod(view.input_shape), _read_pixels(view))
            rank, null_label = min(m, n, rank_view), "lower bound"
    seconds["lanczos"] = time.perf_counter() - t
    return LayerSpectrum(
        (m, n), knorm,
        None if circ is None else float(circ[0]), None if circ is None else float(circ[-1]),
        smax, smax_label, upper, smin, smin_label, n - rank, null_label, steps, seconds,
    )  # fmt: skip
