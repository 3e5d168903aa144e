"""Spectra of convolutions at real input sizes (224 x 224 and up), matrix free and by FFT.

A convolution on an input of shape ``(C, *spatial)`` is a linear map with one column per
input value (:mod:`nnspaces.spaces.operators`); at ImageNet sizes it has 10^5 to 10^6 columns
and no dense SVD runs. This module gives, per layer, with each value labelled by what it is:

- ``kernel_norm``: the largest singular value of the ``c_out x (c_in * k * k)`` reshaped
  kernel that ``torch.nn.utils.spectral_norm`` normalises (not the operator norm).
- ``sigma_max`` (exact or lower bound): Lanczos on the Gram map ``A^T A`` (or ``A A^T``, the
  smaller side), with the layer's own convolution and its exact adjoint (``torch.func.vjp``,
  checked by a dot-product test), on the model's device; float32 first, then float64, and
  certified by a float64 Ritz residual (:mod:`nnspaces.spaces.lanczos`), with
  ``sigma_max_rel_error`` the relative error the certificate allows.
- ``circular`` (exact-for-circular): every singular value of the kernel with wrap-around
  padding, by FFTs (:mod:`nnspaces.spaces.conv_fft`).
- ``sigma_max_upper`` (upper bound): with zero padding the layer is the circular convolution
  on the zero-padded grid, restricted: its norm is at most that circular norm.
- ``sigma_min`` (exact or upper bound): the smallest of the ``min(m, n)`` singular values:
  exact when a float64 Lanczos run of ``smallest_steps`` steps converged, else a Ritz value
  or Rayleigh quotient, which is never below the truth.
- ``null_dim`` (exact or lower bound): exact for 1 x 1 kernels (the channel matrix's spectrum,
  repeated) and where ``sigma_min`` is certified above the rank tolerance; else ``n - rank``,
  the rank bounded by the outputs and the input pixels the layer reads (a lower bound).

A ``ConvTranspose`` is the adjoint of a convolution (:func:`conv_view`): the same values.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .conv_fft import (  # noqa: F401  (re-exported: this module's public names)
    TRANSPOSED,
    ConvView,
    circular_spectrum,
    conv_view,
    one_thread,
    zero_padding_upper_bound,
)
from .lanczos import RTOL, gram_extremes, lanczos_extremes  # noqa: F401  (re-exported)
from .layer import rank_tolerance

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: Labels a value in a :func:`conv_table` can carry.
LABELS = ("exact", "exact-for-circular", "upper bound", "lower bound", "not applicable")
_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONVT_FN = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


@contextlib.contextmanager
def _no_tf32():
    """cuDNN convolutions in true float32 (its TF32 default keeps 10 mantissa bits)."""
    flag = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = flag


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

    def adjoint_error(self, seed: int = 0) -> float:
        """The dot-product test ``|<A x, y> - <x, A^T y>|`` for random ``x, y``, relative to
        ``||A x|| ||y|| + ||x|| ||A^T y||``: rounding-small for the exact adjoint."""
        gen = torch.Generator(device="cpu").manual_seed(seed)
        x = torch.randn(1, *self.input_shape, generator=gen, dtype=torch.float64)
        y = torch.randn(1, *self.output_shape, generator=gen, dtype=torch.float64)
        x, y = (t.to(self.device, self.dtype) for t in (x, y))
        with torch.no_grad(), _no_tf32():
            Ax, ATy = self.forward(x), self.adjoint(y)
        scale = float(Ax.norm() * y.norm() + x.norm() * ATy.norm())
        return abs(float((Ax * y).sum() - (x * ATy).sum())) / max(scale, 1e-300)

    def gram(self, v: torch.Tensor) -> torch.Tensor:
        """The Gram map of the smaller side on a flat vector: ``A^T A v`` (``n <= m``) or
        ``A A^T v``; its eigenvalues are the squared singular values."""
        m, n = self.shape
        with torch.no_grad(), _no_tf32():
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
    with one_thread(w.device):
        return float(torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2))


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
    sigma_max_rel_error: float
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
    fast: bool = True,
) -> LayerSpectrum:
    """The values of the module docstring for one layer on ``input_shape`` (``(C, *spatial)``).
    ``smallest_steps``: float64 Lanczos steps to spend at least (0: float32 Lanczos stopped
    once ``sigma_max`` converged, float64 to certify it; the smallest singular value is then a
    loose upper bound). ``max_steps``: per Lanczos run. ``fast``: False runs float64 only.
    ``upper_bound``: whether to compute ``sigma_max_upper`` (an FFT on the padded grid);
    ``circular``: whether to compute the circular spectrum (None where not). Raises
    ``ValueError`` where the adjoint fails its dot-product test."""
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
        smax, smin, steps, rel_error = float(full[0]), float(full[-1]), 0, 0.0
        smax_label = smin_label = null_label = "exact"
    else:
        error = op.adjoint_error(seed)
        if error > 1e-10:
            raise ValueError(f"the adjoint of {conv} fails the dot-product test ({error:.2e})")
        op32 = ConvMap(conv, input_shape, device=device, dtype=torch.float32) if fast else None
        ext = gram_extremes(
            op.gram, min(m, n), gram_fast=None if op32 is None else op32.gram,
            smallest_steps=smallest_steps, max_steps=max_steps, device=op.device, seed=seed,
        )  # fmt: skip
        steps, cert = ext.steps, ext.largest
        smax, rel_error = math.sqrt(max(cert.value, 0.0)), cert.sigma_rel_error
        smin = math.sqrt(max(ext.smallest, 0.0))
        smax_label = "exact" if cert.exact else "lower bound"
        smin_label = "exact" if ext.smallest_exact else "upper bound"
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
        smax, smax_label, upper, rel_error, smin, smin_label, n - rank, null_label, steps,
        seconds,
    )  # fmt: skip
