"""What every panel shares: PNG rendering in the library's figure style, image and heading
widgets, errors shown in the panel, and the network a loader returned as a plain module."""

from __future__ import annotations

import functools
import html
import io
import math
import threading
import traceback
from collections.abc import Callable
from typing import Any

import ipywidgets as W
import matplotlib.pyplot as plt
from torch import nn

from ...data import Dataset
from ...training import TrainedNetwork
from .. import figures as plots

#: How an image is drawn when the data does not say: the paper's 28x28 digits.
IMAGE_SHAPE = (28, 28)
_WIDGET_DPI = 90
_render_lock = threading.Lock()  # pyplot is not thread-safe; inversion runs in a thread


def render_png(draw: Callable[[], plt.Figure]) -> bytes:
    """Call ``draw()`` for a figure inside :func:`nnspaces.plots.figures.style`, return it as PNG
    bytes, and close it."""
    with _render_lock, plots.style():
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


class _Shown:
    """Shows as its ``widget`` in a notebook (``explorer.signal`` alone in a cell)."""

    widget: W.Widget

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        return self.widget._repr_mimebundle_(**kwargs)


def image_shape(data: Dataset | None) -> tuple[int, int]:
    """How one input of ``data`` is drawn: its last two dimensions when it has one channel
    (``(1, 28, 28)`` -> ``(28, 28)``), else :data:`IMAGE_SHAPE`."""
    if data is None:
        return IMAGE_SHAPE
    shape = tuple(data.x_train.shape[1:])
    if len(shape) >= 2 and math.prod(shape) == math.prod(shape[-2:]):
        return (int(shape[-2]), int(shape[-1]))
    return IMAGE_SHAPE


def layer_label(name: str, layer: nn.Module) -> str:
    """A short description of a weight layer, e.g. ``"1: Linear 784 -> 10"``."""
    if isinstance(layer, nn.Conv2d):
        kh, kw = layer.kernel_size
        return f"{name}: Conv2d {layer.in_channels} -> {layer.out_channels}, {kh}x{kw}"
    return f"{name}: Linear {layer.in_features} -> {layer.out_features}"


def as_module(net: TrainedNetwork | nn.Module) -> nn.Module:
    """The module of what a loader returned (a :class:`TrainedNetwork` or a module), in
    eval mode."""
    module = net.model if isinstance(net, TrainedNetwork) else net
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"a network loader must return an nn.Module or a TrainedNetwork, "
            f"got {type(net).__name__}"
        )
    return module.eval()
