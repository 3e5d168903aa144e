"""Residual spaces: what a layer keeps of its inputs and what it throws away.

A layer ``y = W x + b`` sees only the projection of ``x`` onto the row space of ``W``; the
rest, ``x`` minus that projection, lies in the null space and changes nothing downstream:
the **residual** the paper visualises. The bases come from :mod:`nnspaces.spaces.layer`. Inputs
are torch tensors or NumPy arrays; results are float64 NumPy arrays.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models import frozen, weight_layers
from .layer import LayerSpaces, _as_float64, row_basis


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
    V = row_basis(W)
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
    patches ``(in*kh*kw)`` and the fraction is over all patches of the batch (a Linear on
    tokens ``(B, T, E)``: over all tokens). A layer the forward pass never calls has no input
    to measure and no entry: e.g. the ``out_proj`` of an ``nn.MultiheadAttention``, whose
    weight the attention uses directly (:func:`nnspaces.spaces.analyze` analyses it per head).
    """
    layers = weight_layers(model)
    inputs: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, name=name: inputs.__setitem__(name, inp[0]))
        for name, m in layers.items()
    ]
    try:
        with frozen(model):
            model(x.to(next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    result = {}
    for name, layer in layers.items():
        if name not in inputs:  # never called as a module
            continue
        inp = inputs[name].detach().cpu().double()
        if isinstance(layer, nn.Conv2d):
            patches = F.unfold(inp, layer.kernel_size, layer.dilation, layer.padding, layer.stride)
            inp = patches.transpose(1, 2).reshape(-1, patches.shape[1])
        else:
            inp = inp.reshape(-1, layer.in_features)  # a Linear maps the last dimension
        kept = np.sum(row_space_projection(layer_matrix(layer), inp) ** 2)
        result[name] = float(kept / np.sum(inp.numpy() ** 2))
    return result
