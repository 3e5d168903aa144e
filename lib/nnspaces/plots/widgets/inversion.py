"""The inversion panel: an image the network maps onto a chosen target output.

What each method is (its start image, whether it iterates, its preset, which models it
applies to) comes from the method registry, :mod:`nnspaces.inversion.methods`.
"""

from __future__ import annotations

import html
import threading

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
from torch import nn

from ...data import N_CLASSES, Dataset
from ...inversion import api as inversion
from ...models import n_outputs_of
from .. import figures as plots
from .common import _heading, _image, _Shown, _shows_errors, render_png

#: The method the panel offers first (and falls back to when a network lacks the one chosen).
DEFAULT_METHOD = "descent"
#: The most steps a quick explorer (smoke runs) proposes.
QUICK_STEPS = 50


def default_steps(method: str, quick: bool = False) -> int:
    """The number of steps ``method`` takes by default (its preset in
    :data:`inversion.PRESETS`); at most :data:`QUICK_STEPS` when ``quick``; 0 for methods
    that do not iterate."""
    m = inversion.get_method(method)
    if not m.iterative:
        return 0
    steps = inversion.PRESETS[m.preset].steps
    return min(steps, QUICK_STEPS) if quick else steps


class InversionPanel(_Shown):
    """Find an image the network maps onto a chosen target output (:func:`inversion.invert`).

    Pick a class, a target (``min-max``: the paper's, ``percentile`` or ``notebook``), a
    method (those :func:`inversion.applicable` to the network) and, for the methods that do
    not fix one, a start image; Run shows the image beside its start, the network's output on
    both as bars against the target, and how close it got. A run happens in a thread (the
    notebook stays responsive; Stop ends it early); :meth:`run` does the same synchronously.
    ``result`` is the last :class:`~inversion.InversionResult`, ``start_result`` the start
    image measured the same way.
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
            options=list(inversion.COMPARED), value=DEFAULT_METHOD, description="method"
        )
        self.start = W.Dropdown(
            options=list(inversion.STARTS),
            value=inversion.get_method(DEFAULT_METHOD).start,
            description="start",
        )
        self.steps = W.BoundedIntText(
            value=default_steps(DEFAULT_METHOD, quick), min=1, max=100_000, description="steps"
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
        """Invert ``model`` (called ``network``) from now on; a run in progress is stopped.
        The method picker offers what :func:`inversion.applicable` says applies to ``model``."""
        self.stop()
        self.model, self.network = model, network
        methods = inversion.applicable(model)
        if list(self.method.options) != methods:
            fallback = DEFAULT_METHOD if DEFAULT_METHOD in methods else methods[0]
            keep = self.method.value if self.method.value in methods else fallback
            self.method.options = methods
            self.method.value = keep
        classes = list(range(n_outputs_of(model)))
        if list(self.label.options) != classes:
            keep_class = self.label.value if self.label.value in classes else 0
            self.label.options = classes
            self.label.value = keep_class
        self.title.value = (
            f"<b>Inverse map of {html.escape(network)}</b>: an image it maps onto the target"
        )

    def _on_target(self, change: dict) -> None:
        self.percentiles.disabled = change["new"] != "percentile"

    def _on_method(self, change: dict) -> None:
        name = change["new"]
        if name is None:
            return
        self.start.disabled = inversion.get_method(name).fixed_start
        n = default_steps(name, self.quick)
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
        m = inversion.get_method(method)
        steps = self.steps.value if m.iterative else None
        self._stop.clear()
        self.run_button.disabled, self.stop_button.disabled = True, False
        self.progress.value, self.progress.max = 0, steps or 1
        self.progress_text.value = f"{html.escape(method)}: preparing ..."

        def callback(step: int, rel_error: float) -> bool:
            self.progress.value = step + 1
            self.progress_text.value = f"step {step + 1} / {steps}: relative error {rel_error:.3g}"
            return not self._stop.is_set()

        try:
            result = inversion.invert(
                model,
                self.target.value,
                method=method,
                start=None if m.fixed_start else self.start.value,
                classes=[c],
                network=network,
                data=self.data,
                stats=self._score_stats(),
                device=self.device,
                seed=self.seed,
                callback=callback,
                progress=False,
                steps=steps,
                percentiles=tuple(self.percentiles.value),
                callback_every=max(1, (steps or 1) // 50),
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
