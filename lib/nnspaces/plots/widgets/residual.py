"""The residual panel: an image = its row-space projection + the null-space residual."""

from __future__ import annotations

import html

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from ...data import N_CLASSES, Dataset, class_means
from ...models import weight_layers
from ...spaces.layer import LayerSpaces, layer_spaces
from ...spaces.residuals import (
    energy_kept,
    energy_kept_per_layer,
    null_space_residual,
    row_space_projection,
)
from .. import figures as plots
from .common import IMAGE_SHAPE, _heading, _image, _Shown, _shows_errors, image_shape, render_png

#: How many test images of a class the residual panel offers.
MAX_TEST_IMAGES = 50


def image_layer(
    model: nn.Module, selected: str | None = None, image_shape: tuple[int, int] = IMAGE_SHAPE
) -> tuple[str, nn.Module] | None:
    """The dense layer that reads the image whole: ``selected`` if it does, else the network's
    first weight layer if it does, else None (a network that starts with a convolution)."""
    layers = weight_layers(model)
    n_pixels = image_shape[0] * image_shape[1]
    candidates = ([selected] if selected in layers else []) + list(layers)[:1]
    for name in candidates:
        layer = layers[name]
        if isinstance(layer, nn.Linear) and layer.in_features == n_pixels:
            return name, layer
    return None


class ResidualPanel(_Shown):
    """What a layer keeps of an image and what it throws away.

    Pick a class and an image (the class average over the training set, or one test image).
    The panel shows the image ``x``, its projection onto the row space of the dense layer that
    reads it, and the null-space residual (``x = projection + residual``; the layer's output
    depends on the projection only), with the fraction of the energy kept, and below, that
    fraction for every layer down the network (:func:`residuals.energy_kept_per_layer`).
    """

    def __init__(self, data: Dataset) -> None:
        self.data = data
        self.image_shape = image_shape(data)
        self.means = class_means(data.x_train, data.y_train)
        self.title = _heading("Residual space")
        self.label = W.Dropdown(options=list(range(N_CLASSES)), value=0, description="class")
        self.source = W.Dropdown(description="image", layout=W.Layout(width="22em"))
        self.images = _image()
        self.per_layer_image = _image()
        self.info = W.HTML()
        self.info.add_class("nnspaces-residual-info")
        self.error = W.HTML()
        self.widget = W.VBox(
            [
                self.title,
                W.HBox([self.label, self.source]),
                self.images,
                self.info,
                self.per_layer_image,
                self.error,
            ]
        )
        self.model: nn.Module | None = None
        self.network = ""
        self.layer_name: str | None = None
        self.decomposed: str | None = None
        self.image: np.ndarray | None = None
        self.projection: np.ndarray | None = None
        self.residual: np.ndarray | None = None
        self.energy: float | None = None
        self.per_layer: dict[str, float] = {}
        self._spaces: dict[tuple, LayerSpaces] = {}
        self._per_layer_cache: dict[tuple, dict[str, float]] = {}
        self._filling = False
        self._fill_sources()
        self.label.observe(self._on_label, names="value")
        self.source.observe(self._on_source, names="value")

    def _fill_sources(self) -> None:
        idx = torch.nonzero(self.data.y_test == self.label.value).flatten()[:MAX_TEST_IMAGES]
        options = [("class average (training set)", -1)]
        options += [(f"test image {k} (#{int(i)})", int(i)) for k, i in enumerate(idx)]
        self._filling = True
        try:
            self.source.options = options
            self.source.value = -1
        finally:
            self._filling = False

    def _on_label(self, change: dict) -> None:
        self._fill_sources()
        self.update()

    def _on_source(self, change: dict) -> None:
        if not self._filling and change["new"] is not None:
            self.update()

    def selected_image(self) -> torch.Tensor:
        """The image on display, one input of the data (``(1, 28, 28)`` for digits)."""
        if self.source.value is None or self.source.value < 0:
            return self.means[self.label.value]
        return self.data.x_test[self.source.value]

    def set_network(self, model: nn.Module, network: str, layer_name: str | None = None) -> None:
        """Show ``model`` (called ``network``), highlighting ``layer_name``."""
        self.model, self.network, self.layer_name = model, network, layer_name
        self.update()

    @_shows_errors
    def update(self) -> None:
        """Recompute and redraw for the current class, image, network and layer."""
        if self.model is None:
            return
        x = self.selected_image()
        shape = self.image_shape
        self.image = x.numpy().reshape(shape).astype(np.float64)
        found = image_layer(self.model, self.layer_name, shape)
        what = "class average" if self.source.value in (None, -1) else f"test #{self.source.value}"
        if found is None:
            self.decomposed = None
            self.projection = self.residual = None
            self.energy = None
            self.images.value = render_png(
                lambda: plots.image_grid(
                    [x[None]], scale="unit", cell=2.0, col_labels=[f"{self.label.value}: {what}"]
                )
            )
            self.info.value = (
                f"{html.escape(self.network)} starts with a convolution: it reads the image in "
                "small patches, never whole, so there is no single image to project. The chart "
                "shows the fraction of patch energy each layer keeps."
            )
        else:
            name, layer = found
            spaces = self._layer_spaces(name, layer)
            flat = self.image.reshape(-1)
            self.decomposed = name
            self.projection = row_space_projection(spaces, flat).reshape(shape)
            self.residual = null_space_residual(spaces, flat).reshape(shape)
            self.energy = float(energy_kept(spaces, flat))
            rows = [np.stack([self.image, self.projection, self.residual])]
            labels = [f"{self.label.value}: {what}", "row-space projection", "null-space residual"]
            self.images.value = render_png(
                lambda: plots.image_grid(rows, scale="image", cell=2.0, col_labels=labels)
            )
            note = ""
            if self.layer_name is not None and name != self.layer_name:
                note = (
                    f" (layer {html.escape(self.layer_name)} reads activations, not the image: "
                    "its share is in the chart below)"
                )
            self.info.value = (
                f"<span data-energy='{self.energy:.6f}'>layer {html.escape(name)} keeps "
                f"{100 * self.energy:.1f}% of this image's energy</span> (rank "
                f"{spaces.rank} of {spaces.shape[1]} pixels); the residual, "
                f"{100 * (1 - self.energy):.1f}%, it cannot see{note}."
            )
        self.per_layer = self._energy_per_layer(x)
        self.per_layer_image.value = render_png(self._per_layer_figure)
        self.title.value = (
            f"<b>Residual space of {html.escape(self.network)}</b>: what each layer keeps"
        )

    def _layer_spaces(self, name: str, layer: nn.Module) -> LayerSpaces:
        key = (self.network, id(self.model), name)
        if key not in self._spaces or self._spaces[key].shape != tuple(layer.weight.shape):
            self._spaces[key] = layer_spaces(layer.weight, full_matrices=False)
        return self._spaces[key]

    def _energy_per_layer(self, x: torch.Tensor) -> dict[str, float]:
        key = (self.network, id(self.model), self.source.value, self.label.value)
        if key not in self._per_layer_cache:
            self._per_layer_cache[key] = energy_kept_per_layer(self.model, x[None])
        return self._per_layer_cache[key]

    def _per_layer_figure(self) -> plt.Figure:
        names = list(self.per_layer)
        width = min(9.0, max(3.5, 0.35 * len(names) + 1.5))
        fig = plots.grouped_bars(
            {"energy kept": list(self.per_layer.values())},
            names,
            ylabel="fraction of input\nenergy kept",
            title=f"{self.network}: energy kept, layer by layer",
            figsize=(width, 2.6),
            reference=1.0,
        )
        ax = fig.axes[0]
        ax.set_ylim(0, 1.08)
        if self.layer_name in self.per_layer:
            ax.patches[names.index(self.layer_name)].set_color("C3")
        return fig
