"""The signal-space panel: a layer's singular value spectrum and, under a slider, ``s_i v_i``."""

from __future__ import annotations

import html

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import FormatStrFormatter
from torch import nn

from ...models import network_spec, networks, weight_layers
from ...spaces.layer import LayerSpaces, conv_as_matrix, layer_spaces
from .. import figures as plots
from .common import IMAGE_SHAPE, _heading, _image, _Shown, _shows_errors, layer_label, render_png


def first_layer(model: nn.Module, network: str | None = None) -> str:
    """The layer a signal-space view of ``model`` shows first: the registry's
    ``signal_layer`` of ``network`` (:class:`nnspaces.models.NetworkSpec`) when the model has
    it, else the model's first weight layer."""
    layers = weight_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Linear or Conv2d layer to show")
    if isinstance(network, str) and network in networks():
        layer = network_spec(network).signal_layer
        if layer in layers:
            return layer
    return next(iter(layers))


def signal_matrix(layer: nn.Module) -> torch.Tensor | np.ndarray:
    """The matrix whose SVD gives ``layer``'s signal space: a Linear layer's weight, or a
    convolution's ``(out*in, kh*kw)`` kernel matrix (:func:`spaces.conv_as_matrix`)."""
    if isinstance(layer, nn.Conv2d):
        return conv_as_matrix(layer.weight)
    if isinstance(layer, nn.Linear):
        return layer.weight
    raise TypeError(f"expected nn.Linear or nn.Conv2d, got {type(layer).__name__}")


def signal_shape(
    layer: nn.Module, image_shape: tuple[int, int] = IMAGE_SHAPE
) -> tuple[int, int] | None:
    """How one signal-space vector of ``layer`` is drawn: a kernel ``(kh, kw)`` for a
    convolution, an image for a dense layer that reads the image, else None (bars)."""
    if isinstance(layer, nn.Conv2d):
        return tuple(layer.kernel_size)
    if isinstance(layer, nn.Linear) and layer.in_features == image_shape[0] * image_shape[1]:
        return tuple(image_shape)
    return None


def _vector_figure(vector: np.ndarray, shape: tuple[int, int] | None, title: str) -> plt.Figure:
    if shape is not None:
        return plots.image_grid(
            [vector[None]],
            image_shape=shape,
            scale="signed-image",  # a signed vector: white is zero
            colorbar=True,
            cell=2.6,
            title=title,
        )
    fig, ax = plt.subplots(figsize=(4.2, 2.4))
    ax.bar(np.arange(len(vector)), vector, width=1.0, color="C0")
    ax.axhline(0, c="k", lw=0.6)
    ax.set_xlabel("input index")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def _spectrum_figure(spaces: LayerSpaces, i: int, title: str) -> plt.Figure:
    fig = plots.spectrum(spaces.S, condition_number=spaces.condition_number)
    ax = fig.axes[0]
    ax.plot([i], [spaces.S[i]], "o", c="C3", ms=8, mfc="none", mew=1.5)
    if spaces.S[0] < 10 * spaces.S[-1]:  # within one decade: plain tick labels read better
        ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%.3g"))
    ax.set_title(f"{title}\n{ax.get_title()}")
    fig.tight_layout()
    return fig


class SignalSpacePanel(_Shown):
    """A layer's singular value spectrum (log scale, with its condition number) and, under a
    slider over ``i``, the scaled right singular vector ``s_i v_i``.

    ``vector`` holds the array on display: ``spaces.signal_space[i]``, reshaped to an image
    (a dense layer that reads the image, ``image_shape``), a ``kh x kw`` kernel (convolution)
    or left flat (bars).
    """

    def __init__(self, image_shape: tuple[int, int] = IMAGE_SHAPE) -> None:
        self.image_shape = tuple(image_shape)
        self.title = _heading("Signal space")
        self.title.add_class("nnspaces-signal-title")
        self.index = W.IntSlider(value=0, min=0, max=0, description="i", continuous_update=False)
        self.index.add_class("nnspaces-signal-slider")
        self.info = W.HTML()
        self.info.add_class("nnspaces-signal-info")
        self.spectrum = _image()
        self.vector_image = _image()
        self.vector_image.add_class("nnspaces-signal-vector")
        self.error = W.HTML()
        self.widget = W.VBox(
            [
                self.title,
                W.HBox([self.spectrum, W.VBox([self.index, self.vector_image, self.info])]),
                self.error,
            ]
        )
        self.layer_name: str | None = None
        self.spaces: LayerSpaces | None = None
        self.shape: tuple[int, int] | None = None
        self.vector: np.ndarray | None = None
        self._resetting = False
        self.index.observe(self._on_index, names="value")

    @_shows_errors
    def set_layer(self, name: str, layer: nn.Module, network: str = "") -> None:
        """Show ``layer`` (a Linear or Conv2d called ``name``): compute its SVD, reset i to 0."""
        self.spaces = layer_spaces(signal_matrix(layer), full_matrices=False)
        self.layer_name, self.shape = name, signal_shape(layer, self.image_shape)
        where = f"{network} " if network else ""
        what = "kernel matrix (out*in) x (kh*kw)" if isinstance(layer, nn.Conv2d) else "weight"
        m, n = self.spaces.shape
        self.title.value = (
            f"<b>Signal space of {html.escape(where + layer_label(name, layer))}</b> "
            f"({what} {m} x {n}, rank {self.spaces.rank})"
        )
        self._resetting = True
        try:
            self.index.value = 0
            self.index.max = len(self.spaces.S) - 1
        finally:
            self._resetting = False
        self.show(0)

    def _on_index(self, change: dict) -> None:
        if not self._resetting and self.spaces is not None:
            self.show(change["new"])

    @_shows_errors
    def show(self, i: int) -> None:
        """Draw ``s_i v_i`` and mark ``s_i`` on the spectrum."""
        spaces = self.spaces
        if spaces is None:
            raise RuntimeError("no layer chosen yet: call set_layer() first")
        if not 0 <= i < len(spaces.S):
            raise ValueError(f"i={i} is out of range 0..{len(spaces.S) - 1}")
        flat = spaces.signal_space[i]
        self.vector = flat.reshape(self.shape) if self.shape is not None else flat
        s_i = float(spaces.S[i])
        self.spectrum.value = render_png(lambda: _spectrum_figure(spaces, i, "singular values"))
        self.vector_image.value = render_png(
            lambda: _vector_figure(flat, self.shape, f"$s_{{{i}}} v_{{{i}}}$")
        )
        self.info.value = (
            f"<span data-i='{i}'>i = {i}, s_i = {s_i:.4g}</span>; condition number "
            f"s_max / s_min = {spaces.condition_number:.4g}"
        )
