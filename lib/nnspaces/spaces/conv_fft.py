"""The circular-padding spectrum of a convolution, all of it, by FFTs of the kernel.

With wrap-around padding a convolution is block-diagonalised by the DFT (Sedghi, Gupta & Long,
ICLR 2019): its singular values are those of the kernel's ``c_out x c_in`` DFT matrix at each
frequency; a stride by polyphase (the input frequencies that alias onto one output frequency
side by side), where every size is a multiple of the stride. A zero-padded layer is the
circular map on the padded grid with its input embedded and its output restricted, so that
circular map's norm bounds the layer's from above (:func:`zero_padding_upper_bound`).

A ``ConvTranspose`` is the adjoint of a convolution (:func:`conv_view`): the same values.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


@contextlib.contextmanager
def one_thread(device):
    """One CPU thread for a batch of small LAPACK calls (one per frequency): threads gain
    little on each small matrix, and where other processes load the cores a multi-threaded
    call per matrix waits on its slowest thread, many times over."""
    if torch.device(device).type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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


def _blocks(view: ConvView, grid, dtype) -> torch.Tensor:
    """The polyphase DFT blocks ``(F_out, groups, c_out/groups, c_in/groups * prod(stride))``
    of :func:`circular_spectrum`, one per output frequency (row-major)."""
    s = view.stride
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
    return K.reshape(F_out, g, c_out // g, c_in_g * math.prod(s)) / math.sqrt(math.prod(s))


def _half(out: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Of each pair of output frequencies ``f, -f`` one (``keep``, a mask) and how many
    frequencies each kept one stands for (1 or 2): a real kernel's blocks at ``f`` and ``-f``
    are complex conjugates (phases permuted), with the same singular values."""
    F_out = math.prod(out)
    idx = np.arange(F_out)
    neg = np.ravel_multi_index(
        tuple((-f) % n for f, n in zip(np.unravel_index(idx, out), out, strict=True)), out
    )
    keep = idx <= neg
    return keep, np.where(idx[keep] == neg[keep], 1, 2)


def circular_spectrum(
    view: ConvView, grid=None, dtype=torch.complex128, top_only: bool = False
) -> np.ndarray | None:
    """Every singular value (descending) of ``view``'s kernel applied circularly on the
    spatial ``grid`` (default its input's): the map ``x -> (w * x)[::stride]`` with indices
    wrapping around, whose output has ``grid / stride`` positions. ``None`` where a grid size
    is not a multiple of the stride (the polyphase decomposition needs it). ``top_only``: the
    largest value only (a 1-element array), from each block's smaller Gram matrix.

    Per output frequency ``f``, the block ``[K(f + j * grid/stride) for j in phases] /
    sqrt(prod(stride))`` (``c_out x c_in * prod(stride)`` per group), ``K`` the kernel's DFT on
    the grid (a tap at ``a * dilation`` taken modulo the grid, so kernels larger than the grid
    wrap as the circular map does). A 1 x 1 kernel's DFT is the same at every frequency: its
    blocks are ``[W, ..., W] / sqrt(prod(stride))``, whose values are ``W``'s (and zeros)."""
    grid = tuple(view.input_shape[1:] if grid is None else grid)
    s = view.stride
    if any(n % st for n, st in zip(grid, s, strict=True)):
        return None
    out = [n // st for n, st in zip(grid, s, strict=True)]
    c_out, c_in_g = view.weight.shape[:2]
    g = view.groups
    if all(k == 1 for k in view.weight.shape[2:]):
        w = view.weight.to(torch.float64).reshape(g, c_out // g, c_in_g)
        with one_thread(w.device):
            S = torch.linalg.svdvals(w).cpu().numpy()
        if top_only:
            return np.array([S.max(initial=0.0)])
        per_group = min(c_out // g, c_in_g * math.prod(s))
        S = np.concatenate([S, np.zeros((g, per_group - S.shape[1]))], axis=1)
        return np.sort(np.tile(S.reshape(-1), math.prod(out)))[::-1]
    keep, times = _half(out)
    K = _blocks(view, grid, dtype)[torch.as_tensor(keep, device=view.weight.device)]
    if top_only:
        small = K @ K.mH if K.shape[-2] <= K.shape[-1] else K.mH @ K
        with one_thread(K.device):
            top = torch.linalg.eigvalsh(small)[..., -1].max()
        return np.array([math.sqrt(max(float(top), 0.0))])
    with one_thread(K.device):
        S = torch.linalg.svdvals(K).reshape(int(keep.sum()), -1)
    S = torch.repeat_interleave(S, torch.as_tensor(times, device=S.device), dim=0).reshape(-1)
    return np.sort(S.cpu().numpy())[::-1]


def zero_padding_upper_bound(view: ConvView) -> float | None:
    """An upper bound on the operator norm of a zero-padded layer: the layer is the circular
    map on the padded grid (each size rounded up to a multiple of the stride: no output
    wraps) with its input embedded and its output restricted, both of norm <= 1. ``None``
    for other padding modes (reflect / replicate padding is no isometry). The largest value
    comes from Hermitian eigenvalues of the blocks' Gram matrices, accurate relative to it
    to rounding; the bound is widened by ``1e-12`` relative to cover that."""
    if view.padding_mode == "zeros":
        grid = [
            -(-(n + p) // st) * st
            for n, p, st in zip(view.input_shape[1:], view.pad, view.stride, strict=True)
        ]
        return float(circular_spectrum(view, grid, top_only=True)[0]) * (1 + 1e-12)
    if view.padding_mode == "circular":
        S = circular_spectrum(view, top_only=True)
        return None if S is None else float(S[0]) * (1 + 1e-12)
    return None
