"""Interactive explorers (ipywidgets) built from the library: signal spaces, residuals, inversion.

Each panel is a small class whose widgets are attributes and whose callbacks are plain methods,
so tests drive it without a browser (set ``panel.index.value = 3``, then read
``panel.vector``). The panels only call the library (``spaces``, ``inversion``, ``plots``) and
draw; figures are rendered to PNG and shown in ``ipywidgets.Image`` widgets, so nothing
depends on the notebook's matplotlib backend.

    explorer = Explorer.from_context(ctx)   # ctx = nnspaces.config.setup_run(...)
    explorer.controls                       # network and layer pickers
    explorer.signal                         # spectrum, and s_i v_i under a slider
    explorer.residual                       # image = row-space projection + null-space residual
    explorer.inversion                      # an image the network maps onto a chosen output
"""

from __future__ import annotations

import functools
import html
import io
import threading
import traceback
from collections.abc import Callable
from typing import Any

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import FormatStrFormatter
from torch import nn

from . import inversion, plots
from .data import N_CLASSES, Dataset, class_means
from .models import NETWORKS, check_network, weight_layers
from .spaces import (
    LayerSpaces,
    conv_as_matrix,
    energy_kept,
    energy_kept_per_layer,
    layer_spaces,
    null_space_residual,
    row_space_projection,
)
from .training import TrainedNetwork

IMAGE_SHAPE = (28, 28)
#: The layer each network shows first: the paper's Figure 1 and Figure 2 layers.
DEFAULT_LAYER = {"fcnn1": "1", "fcnn5": "1", "resnet18": "layer1.0.conv1"}
#: How many test images of a class the residual panel offers.
MAX_TEST_IMAGES = 50
_WIDGET_DPI = 90
_render_lock = threading.Lock()  # pyplot is not thread-safe; inversion runs in a thread


def render_png(draw: Callable[[], plt.Figure]) -> bytes:
    """Call ``draw()`` for a figure, return it as PNG bytes, and close it."""
    with _render_lock:
        fig = draw()
        try:
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=_WIDGET_DPI)
        finally:
            plt.close(fig)
    return buf.getvalue()


def _shows_errors(method: Callable) -> Callable:
    """Wrap a callback so an error is shown in the panel's ``error`` widget (a frontend
    otherwise hides it in its log console), then raised as usual."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        self.error.value = ""
        try:
            return method(self, *args, **kwargs)
        except Exception as e:
            last = traceback.format_exception_only(type(e), e)[-1].strip()
            self.error.value = f"<pre style='color:#b00'>{html.escape(last)}</pre>"
            raise

    return wrapper


def _image() -> W.Image:
    """An image widget shown at its PNG's own size (a flex box would stretch it), hidden
    while it has no PNG (a browser would draw a broken-image icon)."""
    image = W.Image(format="png", layout=W.Layout(align_self="flex-start", display="none"))

    def show_if_set(change: dict) -> None:
        image.layout.display = None if len(change["new"]) else "none"

    image.observe(show_if_set, names="value")
    return image


def _heading(text: str) -> W.HTML:
    return W.HTML(f"<b>{html.escape(text)}</b>")


def layer_label(name: str, layer: nn.Module) -> str:
    """A short description of a weight layer, e.g. ``"1: Linear 784 -> 10"``."""
    if isinstance(layer, nn.Conv2d):
        kh, kw = layer.kernel_size
        return f"{name}: Conv2d {layer.in_channels} -> {layer.out_channels}, {kh}x{kw}"
    return f"{name}: Linear {layer.in_features} -> {layer.out_features}"


def signal_matrix(layer: nn.Module) -> torch.Tensor | np.ndarray:
    """The matrix whose SVD gives ``layer``'s signal space: a Linear layer's weight, or a
    convolution's ``(out*in, kh*kw)`` kernel matrix (:func:`spaces.conv_as_matrix`)."""
    if isinstance(layer, nn.Conv2d):
        return conv_as_matrix(layer.weight)
    if isinstance(layer, nn.Linear):
        return layer.weight
    raise TypeError(f"expected nn.Linear or nn.Conv2d, got {type(layer).__name__}")


def signal_shape(layer: nn.Module) -> tuple[int, int] | None:
    """How one signal-space vector of ``layer`` is drawn: a kernel ``(kh, kw)`` for a
    convolution, a 28x28 image for a dense layer that reads the image, else None (bars)."""
    if isinstance(layer, nn.Conv2d):
        return tuple(layer.kernel_size)
    if isinstance(layer, nn.Linear) and layer.in_features == IMAGE_SHAPE[0] * IMAGE_SHAPE[1]:
        return IMAGE_SHAPE
    return None


def _vector_figure(vector: np.ndarray, shape: tuple[int, int] | None, title: str) -> plt.Figure:
    if shape is not None:
        return plots.image_grid(
            [vector[None]], image_shape=shape, scale="image", cell=2.6, title=title
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


class _Shown:
    """Shows as its ``widget`` in a notebook (``explorer.signal`` alone in a cell)."""

    widget: W.Widget

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        return self.widget._repr_mimebundle_(**kwargs)


class SignalSpacePanel(_Shown):
    """A layer's singular value spectrum (log scale, with its condition number) and, under a
    slider over ``i``, the scaled right singular vector ``s_i v_i``.

    ``vector`` holds the array on display: ``spaces.signal_space[i]``, reshaped to a 28x28
    image (first dense layer), a ``kh x kw`` kernel (convolution) or left flat (bars).
    """

    def __init__(self) -> None:
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
        self.layer_name, self.shape = name, signal_shape(layer)
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


def image_layer(model: nn.Module, selected: str | None = None) -> tuple[str, nn.Module] | None:
    """The dense layer that reads the image whole: ``selected`` if it does, else the network's
    first weight layer if it does, else None (a network that starts with a convolution)."""
    layers = weight_layers(model)
    n_pixels = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
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
    fraction for every layer down the network (:func:`spaces.energy_kept_per_layer`).
    """

    def __init__(self, data: Dataset) -> None:
        self.data = data
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
        self._spaces: dict[tuple[str, str], LayerSpaces] = {}
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
        """The image on display, ``(1, 28, 28)``."""
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
        self.image = x.numpy().reshape(IMAGE_SHAPE).astype(np.float64)
        found = image_layer(self.model, self.layer_name)
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
                f"{self.network} starts with a convolution: it reads the image in small "
                "patches, never whole, so there is no single image to project. The chart "
                "shows the fraction of patch energy each layer keeps."
            )
        else:
            name, layer = found
            spaces = self._layer_spaces(name, layer)
            flat = self.image.reshape(-1)
            self.decomposed = name
            self.projection = row_space_projection(spaces, flat).reshape(IMAGE_SHAPE)
            self.residual = null_space_residual(spaces, flat).reshape(IMAGE_SHAPE)
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
        key = (self.network, name)
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


#: Methods solved directly, without iterations (no steps to choose).
_NO_STEPS = ("exact",)


def default_steps(method: str, quick: bool = False) -> int:
    """The number of steps ``method`` takes by default (:data:`inversion.PRESETS`); at most
    50 when ``quick``; 0 for methods without steps."""
    if method in inversion.STARTS or method in _NO_STEPS:
        return 0
    preset = inversion.PRESETS["original" if "+training" in method else method]
    return min(preset.steps, 50) if quick else preset.steps


class InversionPanel(_Shown):
    """Find an image the network maps onto a chosen target output (:func:`inversion.invert`).

    Pick a class, a target (``min-max``: the paper's, ``percentile`` or ``notebook``), a
    method and, for the methods that do not name one, a start image; Run shows the image
    beside its start, the network's output on both as bars against the target, and how close
    it got. A run happens in a thread (the notebook stays responsive; Stop ends it early);
    :meth:`run` does the same synchronously. ``result`` is the last
    :class:`~inversion.InversionResult`, ``start_result`` the start image measured the same way.
    """

    def __init__(
        self,
        data: Dataset,
        *,
        quick: bool = False,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        self.data = data
        self.quick = quick
        self.device = torch.device(device)
        self.seed = seed
        self.title = _heading("Inverse map")
        self.label = W.Dropdown(options=list(range(N_CLASSES)), value=0, description="class")
        self.target = W.Dropdown(
            options=list(inversion.TARGETS), value="min-max", description="target"
        )
        self.percentiles = W.FloatRangeSlider(
            value=(25.0, 75.0),
            min=0.0,
            max=100.0,
            step=5.0,
            readout_format=".0f",
            description="percentiles",
            disabled=True,
            continuous_update=False,
        )
        self.method = W.Dropdown(
            options=list(inversion.METHODS), value="descent", description="method"
        )
        self.start = W.Dropdown(
            options=list(inversion.STARTS), value="avg-img", description="start"
        )
        self.steps = W.BoundedIntText(
            value=default_steps("descent", quick), min=1, max=100_000, description="steps"
        )
        self.run_button = W.Button(description="Run", button_style="primary", icon="play")
        self.run_button.add_class("nnspaces-invert-run")
        self.stop_button = W.Button(description="Stop", icon="stop", disabled=True)
        self.stop_button.add_class("nnspaces-invert-stop")
        self.progress = W.IntProgress(value=0, min=0, max=1, layout=W.Layout(width="14em"))
        self.progress_text = W.HTML("press Run to invert")
        self.images = _image()
        self.bars = _image()
        self.history = _image()
        self.numbers = W.HTML()
        self.numbers.add_class("nnspaces-invert-result")
        self.error = W.HTML()
        self.widget = W.VBox(
            [
                self.title,
                W.HBox([self.label, self.target, self.percentiles]),
                W.HBox([self.method, self.start, self.steps]),
                W.HBox([self.run_button, self.stop_button, self.progress, self.progress_text]),
                self.error,
                W.HBox([self.images, self.bars]),
                W.HBox([self.numbers, self.history]),
            ]
        )
        self.model: nn.Module | None = None
        self.network = ""
        self.result: inversion.InversionResult | None = None
        self.start_result: inversion.InversionResult | None = None
        self.thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._stats: dict[tuple[str, int], inversion.ScoreStats] = {}
        self.target.observe(self._on_target, names="value")
        self.method.observe(self._on_method, names="value")
        self.run_button.on_click(lambda _: self.run_in_thread())
        self.stop_button.on_click(lambda _: self.stop())
        self._on_method({"new": self.method.value})

    def set_network(self, model: nn.Module, network: str) -> None:
        """Invert ``model`` (called ``network``) from now on; a run in progress is stopped."""
        self.stop()
        self.model, self.network = model, network
        methods = [m for m in inversion.METHODS if m != "exact" or network in ("fcnn1", "fcnn5")]
        if list(self.method.options) != methods:
            keep = self.method.value if self.method.value in methods else "descent"
            self.method.options = methods
            self.method.value = keep
        self.title.value = (
            f"<b>Inverse map of {html.escape(network)}</b>: an image it maps onto the target"
        )

    def _on_target(self, change: dict) -> None:
        self.percentiles.disabled = change["new"] != "percentile"

    def _on_method(self, change: dict) -> None:
        method = change["new"]
        if method is None:
            return
        names_start = method.partition("+")[0] in inversion.STARTS
        self.start.disabled = names_start
        n = default_steps(method, self.quick)
        self.steps.disabled = n == 0
        if n:
            self.steps.value = n

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def stop(self) -> None:
        """Ask a run in progress to stop after its current step."""
        self._stop.set()

    def run_in_thread(self) -> threading.Thread:
        """Start :meth:`run` in a thread (what the Run button does); returns the thread."""
        if self.running:
            raise RuntimeError("an inversion is already running; stop it first")
        self.thread = threading.Thread(target=self._run_quietly, daemon=True)
        self.thread.start()
        return self.thread

    def _run_quietly(self) -> None:
        try:
            self.run()
        except Exception:  # shown in the panel by run(); nothing else to do in this thread
            pass

    def _score_stats(self) -> inversion.ScoreStats:
        key = (self.network, id(self.model))
        if key not in self._stats:
            self._stats[key] = inversion.score_stats(
                self.model, self.data.x_train, self.data.y_train, device=self.device
            )
        return self._stats[key]

    @_shows_errors
    def run(self) -> inversion.InversionResult:
        """Invert for the chosen class, target, method, start and steps; show and return it."""
        if self.model is None:
            raise RuntimeError("no network chosen yet: call set_network() first")
        model, network, method, c = self.model, self.network, self.method.value, self.label.value
        steps = self.steps.value if default_steps(method) else None
        self._stop.clear()
        self.run_button.disabled, self.stop_button.disabled = True, False
        self.progress.value, self.progress.max = 0, steps or 1
        self.progress_text.value = f"{html.escape(method)}: preparing ..."
        every = max(1, (steps or 1) // 50)

        def callback(step: int, rel_error: float) -> bool:
            self.progress.value = step + 1
            self.progress_text.value = f"step {step + 1} / {steps}: relative error {rel_error:.3g}"
            return not self._stop.is_set()

        try:
            result = inversion.invert(
                model,
                self.target.value,
                method=method,
                start=None if self.start.disabled else self.start.value,
                classes=[c],
                network=network,
                data=self.data,
                stats=self._score_stats(),
                steps=steps,
                percentiles=self.percentiles.value,
                device=self.device,
                seed=self.seed,
                callback=callback,
                callback_every=every,
                progress=False,
            )
            start = inversion.evaluate_images(
                model,
                result.start,
                result.target,
                result.classes,
                network=network,
                method="start",
                device=self.device,
            )
        finally:
            self.run_button.disabled, self.stop_button.disabled = False, True
        stopped = self._stop.is_set() and steps is not None and result.steps < steps
        self.progress.value = self.progress.max if not stopped else self.progress.value
        self.progress_text.value = (
            f"stopped at step {result.steps} of {steps}"
            if stopped
            else f"done: {result.steps} steps, {result.seconds:.2g} s"
            if steps
            else f"done in {result.seconds:.2g} s"
        )
        self.result, self.start_result = result, start
        self._show(result, start)
        return result

    def _show(self, result: inversion.InversionResult, start: inversion.InversionResult) -> None:
        c, method = result.classes[0], result.method
        pair = [torch.stack([result.start[0], result.image[0]])]
        captions = [[f"[{float(x.min()):.2f}, {float(x.max()):.2f}]" for x in pair[0]]]
        start_name = result.settings.get("start", "start")
        self.images.value = render_png(
            lambda: plots.image_grid(
                pair,
                scale="row",
                cell=2.0,
                captions=captions,
                col_labels=[f"start: {start_name}", f"result: {method}"],
            )
        )
        series = {
            "target": result.target[0].numpy(),
            "start": start.output[0].numpy(),
            "result": result.output[0].numpy(),
        }
        labels = [str(k) for k in range(len(series["target"]))]
        self.bars.value = render_png(
            lambda: plots.grouped_bars(
                series,
                labels,
                ylabel="raw output",
                figsize=(5.0, 2.6),
                title=f"{result.network}, class {c}: output against the target",
            )
        )
        self.history.value = (
            render_png(lambda: _history_figure(result.history)) if result.history else b""
        )
        self.numbers.value = _result_table(result, start)


def _history_figure(history: list[tuple[int, float]]) -> plt.Figure:
    steps, errors = zip(*history, strict=True)
    fig, ax = plt.subplots(figsize=(3.6, 2.4))
    ax.plot(steps, errors, "-", c="C0")
    if min(errors) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("relative error")
    ax.set_title("convergence")
    fig.tight_layout()
    return fig


def _result_table(result: inversion.InversionResult, start: inversion.InversionResult) -> str:
    """The numbers of a one-class result beside those of its start image, as HTML."""
    rows = [
        ("relative error ||f(x) - t|| / ||t||", "rel_error", "{:.3g}"),
        (f"probability of class {result.classes[0]}", "prob", "{:.3f}"),
        ("predicted class", "predicted", "{}"),
        ("pixels outside [0, 1]", "outside", "{:.1%}"),
    ]
    cells = "".join(
        f"<tr><td>{label}</td><td>{fmt.format(getattr(start, key)[0])}</td>"
        f"<td><b>{fmt.format(getattr(result, key)[0])}</b></td></tr>"
        for label, key, fmt in rows
    )
    ok = "reached" if result.success[0] else f"not reached ({html.escape(result.reason[0])})"
    return (
        f"<table class='nnspaces-result' data-rel-error='{result.rel_error[0]:.6g}'>"
        f"<tr><th></th><th>start</th><th>result</th></tr>{cells}"
        f"<tr><td>distance to the start</td><td></td><td>{result.start_distance[0]:.3g}</td></tr>"
        f"</table><p>target {ok}; {result.steps} steps, {result.seconds:.2g} s</p>"
    )


def _module(net: TrainedNetwork | nn.Module) -> nn.Module:
    return (net.model if isinstance(net, TrainedNetwork) else net).eval()


class Explorer(_Shown):
    """The three panels and the network / layer pickers that drive them.

    ``load_network(name)`` returns a trained network (a :class:`TrainedNetwork` or a plain
    module), e.g. ``ctx.trained`` from :func:`nnspaces.config.setup_run`: a checkpoint from
    the cache, or trained now with a progress bar (shown under the pickers). Networks load
    when first picked.
    """

    def __init__(
        self,
        load_network: Callable[[str], TrainedNetwork | nn.Module],
        data: Dataset,
        *,
        network: str = "fcnn1",
        quick: bool = False,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        check_network(network)
        self.load_network = load_network
        self.data = data
        self.quick = quick
        self.device = torch.device(device)
        self.seed = seed
        self.networks: dict[str, TrainedNetwork | nn.Module] = {}
        self.network = W.Dropdown(options=list(NETWORKS), value=network, description="network")
        self.network.add_class("nnspaces-network")
        self.layer = W.Dropdown(description="layer", layout=W.Layout(width="28em"))
        self.status = W.HTML()
        self.error = W.HTML()
        self.log = W.Output()
        self.controls = W.VBox(
            [W.HBox([self.network, self.layer]), self.status, self.error, self.log]
        )
        self.signal = SignalSpacePanel()
        self.residual = ResidualPanel(data)
        self.inversion = InversionPanel(data, quick=quick, device=device, seed=seed)
        self.panels: list[Any] = [self.signal, self.residual, self.inversion]
        #: everything in one box: the pickers, then each panel
        self.widget = W.VBox([self.controls, *[p.widget for p in self.panels]])
        self._updating = False
        self.shown: str | None = None  # the network on display
        self.select(network)
        self.network.observe(self._on_network, names="value")
        self.layer.observe(self._on_layer, names="value")

    @classmethod
    def from_context(cls, ctx: Any, *, network: str = "fcnn1", quick: bool = False) -> Explorer:
        """An explorer over a run's data and networks (``ctx`` from ``setup_run``)."""
        return cls(
            ctx.trained, ctx.data, network=network, quick=quick, device=ctx.device, seed=ctx.seed
        )

    @property
    def model(self) -> nn.Module:
        """The network on display (eval mode)."""
        return _module(self.networks[self.network.value])

    @_shows_errors
    def select(self, network: str, layer: str | None = None) -> None:
        """Show ``network`` (loading or training it first if needed) at ``layer``
        (default: :data:`DEFAULT_LAYER`)."""
        check_network(network)
        if network not in self.networks:
            self.status.value = f"loading {network} (training it if no checkpoint is cached) ..."
            self.log.clear_output()
            try:
                with self.log:
                    self.networks[network] = self.load_network(network)
            except Exception:
                self.status.value = f"could not load {network}"
                if self.shown is not None:  # go back to the network on display
                    self._updating = True
                    self.network.value = self.shown
                    self._updating = False
                raise
        net = self.networks[network]
        layers = weight_layers(_module(net))
        if layer is None:
            layer = DEFAULT_LAYER.get(network, next(iter(layers)))
        if layer not in layers:
            raise ValueError(f"{network} has no layer {layer!r}; allowed: {', '.join(layers)}")
        self._updating = True
        try:
            self.network.value = network
            self.layer.options = [(layer_label(n, m), n) for n, m in layers.items()]
            self.layer.value = layer
        finally:
            self._updating = False
        acc = f", test accuracy {net.test_accuracy:.3f}" if isinstance(net, TrainedNetwork) else ""
        self.status.value = f"<b>{network}</b>{acc}; data: {html.escape(self.data.describe())}"
        self.shown = network
        self._show()

    def _on_network(self, change: dict) -> None:
        if not self._updating:
            self.select(change["new"])

    def _on_layer(self, change: dict) -> None:
        if not self._updating and change["new"] is not None:
            self._show()

    def _show(self) -> None:
        model, name = self.model, self.layer.value
        self.signal.set_layer(name, weight_layers(model)[name], self.network.value)
        self.residual.set_network(model, self.network.value, name)
        for panel in self.panels[2:]:
            panel.set_network(model, self.network.value)
