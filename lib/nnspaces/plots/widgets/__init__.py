"""Interactive explorers (ipywidgets) built from the library: signal spaces, residuals, inversion.

Each panel is a small class whose widgets are attributes and whose callbacks are plain methods,
so tests drive it without a browser (set ``panel.index.value = 3``, then read
``panel.vector``). The panels only call the library and draw; figures are rendered to PNG
(in the library's figure style) and shown in ``ipywidgets.Image`` widgets, so nothing depends
on the notebook's matplotlib backend. What the panels offer comes from the registries: the
networks from :func:`nnspaces.models.networks` (and the layer each shows first from its
:class:`~nnspaces.models.NetworkSpec`), the inversion methods from
:func:`nnspaces.inversion.applicable`, asked of the loaded model.

    explorer = Explorer.from_context(ctx)   # ctx = nnspaces.runner.config.setup_run(...)
    explorer.controls                       # network and layer pickers
    explorer.signal                         # spectrum, and s_i v_i under a slider
    explorer.residual                       # image = row-space projection + null-space residual
    explorer.inversion                      # an image the network maps onto a chosen output

Modules: :mod:`.common` (rendering, shared widgets), :mod:`.signal`, :mod:`.residual` and
:mod:`.inversion` (one panel each); :class:`Explorer` ties them to the pickers.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as W
import torch
from torch import nn

from ...data import Dataset
from ...models import networks, weight_layers
from ...training import TrainedNetwork
from .common import (
    IMAGE_SHAPE,
    _Shown,
    _shows_errors,
    as_module,
    image_shape,
    layer_label,
    render_png,
)
from .inversion import DEFAULT_METHOD, InversionPanel, default_steps
from .residual import MAX_TEST_IMAGES, ResidualPanel, image_layer
from .signal import SignalSpacePanel, first_layer, signal_matrix, signal_shape

__all__ = [
    "DEFAULT_METHOD",
    "IMAGE_SHAPE",
    "MAX_TEST_IMAGES",
    "Explorer",
    "InversionPanel",
    "ResidualPanel",
    "SignalSpacePanel",
    "as_module",
    "default_steps",
    "first_layer",
    "image_layer",
    "image_shape",
    "layer_label",
    "render_png",
    "signal_matrix",
    "signal_shape",
]


class Explorer(_Shown):
    """The three panels and the network / layer pickers that drive them.

    ``load_network(name)`` returns a trained network (a :class:`TrainedNetwork` or a plain
    module), e.g. ``ctx.trained`` from :func:`nnspaces.runner.config.setup_run`: a checkpoint from
    the cache, or trained now with a progress bar (shown under the pickers). Networks load
    when first picked. ``names``: what the network picker offers (default: every registered
    network, :func:`nnspaces.models.networks`); a loader may serve names the registry does not
    know: everything the panels need is asked of the model it returns. ``network``: the one
    shown first (default: the first name).
    """

    def __init__(
        self,
        load_network: Callable[[str], TrainedNetwork | nn.Module],
        data: Dataset,
        *,
        network: str | None = None,
        names: Sequence[str] | None = None,
        quick: bool = False,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        names = list(networks() if names is None else names)
        if not names or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"names={names!r} must be a non-empty list of network names")
        network = names[0] if network is None else network
        self.names = names
        self._check_name(network)
        self.load_network = load_network
        self.data = data
        self.quick = quick
        self.device = torch.device(device)
        self.seed = seed
        self.networks: dict[str, TrainedNetwork | nn.Module] = {}
        self.network = W.Dropdown(options=names, value=network, description="network")
        self.network.add_class("nnspaces-network")
        self.layer = W.Dropdown(description="layer", layout=W.Layout(width="28em"))
        self.status = W.HTML()
        self.error = W.HTML()
        self.log = W.Output()
        self.controls = W.VBox(
            [W.HBox([self.network, self.layer]), self.status, self.error, self.log]
        )
        self.signal = SignalSpacePanel(image_shape(data))
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
    def from_context(
        cls, ctx: Any, *, network: str | None = None, quick: bool | None = None
    ) -> Explorer:
        """An explorer over a run's data and networks (``ctx`` from ``setup_run``);
        ``quick`` defaults to the run's own (``ctx.config.quick``)."""
        if quick is None:
            quick = bool(getattr(getattr(ctx, "config", None), "quick", False))
        return cls(
            ctx.trained, ctx.data, network=network, quick=quick, device=ctx.device, seed=ctx.seed
        )

    def _check_name(self, network: str) -> None:
        if network not in self.names:
            raise ValueError(f"unknown network {network!r}; allowed: {', '.join(self.names)}")

    @property
    def model(self) -> nn.Module:
        """The network on display (eval mode)."""
        return as_module(self.networks[self.network.value])

    @_shows_errors
    def select(self, network: str, layer: str | None = None) -> None:
        """Show ``network`` (loading or training it first if needed) at ``layer`` (default:
        the registry's ``signal_layer`` for it, else its first weight layer)."""
        self._check_name(network)
        if network not in self.networks:
            self.status.value = f"loading {network} (training it if no checkpoint is cached) ..."
            self.log.clear_output()
            try:
                with self.log:
                    net = self.load_network(network)
                    as_module(net)  # a clear error for anything but a network
                self.networks[network] = net
            except Exception:
                self.status.value = f"could not load {html.escape(network)}"
                if self.shown is not None:  # go back to the network on display
                    self._updating = True
                    self.network.value = self.shown
                    self._updating = False
                raise
        net = self.networks[network]
        model = as_module(net)
        layers = weight_layers(model)
        if layer is None:
            layer = first_layer(model, network)
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
        self.status.value = (
            f"<b>{html.escape(network)}</b>{acc}; data: {html.escape(self.data.describe())}"
        )
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
