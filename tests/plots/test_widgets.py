"""The explorer's callbacks, driven without a browser: set a widget's value, check the arrays
and numbers the panel shows against the library's own functions."""

from __future__ import annotations

import time
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

from nnspaces import inversion
from nnspaces.data import class_means, load_dataset
from nnspaces.models import build_model, network_spec, networks, weight_layers
from nnspaces.plots import figures as plots
from nnspaces.plots.widgets import Explorer, InversionPanel, default_steps, render_png
from nnspaces.spaces import layer as spaces
from nnspaces.spaces import residuals

PNG_MAGIC = b"\x89PNG"


@pytest.fixture(scope="module")
def data():
    return load_dataset("mnist-embedded", n_train=200, n_test=100, seed=0)


@pytest.fixture(scope="module")
def models():
    """Untrained networks (seeded): the panels work on any weights."""
    return {name: build_model(name, seed=0) for name in ("fcnn1", "fcnn5", "resnet18")}


@pytest.fixture
def explorer(data, models):
    return Explorer(models.__getitem__, data, network="fcnn1", quick=True)


def test_opens_on_the_first_dense_layer(explorer):
    assert list(explorer.network.options) == list(networks())  # the network registry
    assert explorer.network.value == "fcnn1"
    assert explorer.layer.value == network_spec("fcnn1").signal_layer == "1"
    assert bytes(explorer.signal.spectrum.value).startswith(PNG_MAGIC)
    assert explorer.signal.index.max == 9  # a 10 x 784 weight has 10 singular vectors
    assert "i = 0" in explorer.signal.info.value
    assert not plt.get_fignums(), "rendering must close its figures"


def test_slider_shows_s_i_v_i_of_the_chosen_i(explorer, models):
    W = weight_layers(models["fcnn1"])["1"].weight
    expected = spaces.layer_spaces(W).signal_space
    before = bytes(explorer.signal.vector_image.value)
    explorer.signal.index.value = 3
    assert explorer.signal.vector.shape == (28, 28)
    np.testing.assert_allclose(explorer.signal.vector, expected[3].reshape(28, 28))
    s = np.linalg.svd(W.detach().double().numpy(), compute_uv=False)
    assert np.linalg.norm(explorer.signal.vector) == pytest.approx(s[3])
    assert f"i = 3, s_i = {s[3]:.4g}" in explorer.signal.info.value
    assert bytes(explorer.signal.vector_image.value) != before


def test_conv_layer_shows_kernels(explorer, models):
    explorer.network.value = "resnet18"
    assert explorer.layer.value == "layer1.0.conv1"  # the paper's Figure 2 layer
    assert explorer.layer.value == network_spec("resnet18").signal_layer
    sig = explorer.signal
    assert sig.index.max == 8  # (64*64) x 9 kernel matrix: 9 signal-space kernels
    sig.index.value = 8
    assert sig.vector.shape == (3, 3)
    w = weight_layers(models["resnet18"])["layer1.0.conv1"].weight
    s = np.linalg.svd(spaces.conv_as_matrix(w), compute_uv=False)
    assert np.linalg.norm(sig.vector) == pytest.approx(s[8])
    assert f"{s[0] / s[-1]:.4g}" in sig.info.value  # the condition number

    explorer.layer.value = "conv1"  # 64 x 1 x 7 x 7: 49 kernels of 7x7
    assert sig.index.max == 48 and sig.vector.shape == (7, 7)


def test_hidden_dense_layer_shows_bars(explorer):
    explorer.select("fcnn5", "3")
    assert explorer.signal.vector.shape == (256,)
    assert explorer.signal.index.max == 255


def test_residual_is_image_minus_projection(explorer, models, data):
    res = explorer.residual
    res.label.value = 4
    W = weight_layers(models["fcnn1"])["1"].weight
    mean4 = class_means(data.x_train, data.y_train)[4].numpy().reshape(28, 28)
    np.testing.assert_allclose(res.image, mean4, rtol=1e-6)
    np.testing.assert_allclose(res.projection + res.residual, res.image, atol=1e-12)
    np.testing.assert_allclose(
        res.projection, residuals.row_space_projection(W, res.image.reshape(-1)).reshape(28, 28)
    )
    assert res.energy == pytest.approx(float(residuals.energy_kept(W, res.image.reshape(-1))))
    assert f"{100 * res.energy:.1f}%" in res.info.value
    # the residual is invisible to the layer: W r = 0
    assert np.abs(W.detach().double().numpy() @ res.residual.reshape(-1)).max() < 1e-10
    expected = residuals.energy_kept_per_layer(models["fcnn1"], torch.as_tensor(mean4)[None, None])
    assert res.per_layer == pytest.approx(expected)


def test_residual_of_one_test_image(explorer, data):
    res = explorer.residual
    res.label.value = 7
    options = [v for _, v in res.source.options]
    assert options[0] == -1 and len(options) > 1
    res.source.value = options[1]
    np.testing.assert_allclose(res.image, data.x_test[options[1]].numpy().reshape(28, 28))
    assert int(data.y_test[options[1]]) == 7
    np.testing.assert_allclose(res.projection + res.residual, res.image, atol=1e-12)


def test_deeper_layer_still_decomposes_the_image_at_the_first(explorer):
    explorer.select("fcnn5", "5")
    res = explorer.residual
    assert res.decomposed == "1"
    assert set(res.per_layer) == {"1", "3", "5", "7", "9"}
    assert all(0 <= v <= 1 + 1e-9 for v in res.per_layer.values())
    assert "layer 5 reads activations" in res.info.value


def test_convolutional_network_has_no_image_projection(explorer):
    explorer.network.value = "resnet18"
    res = explorer.residual
    assert res.decomposed is None and res.projection is None
    assert "starts with a convolution" in res.info.value
    assert len(res.per_layer) == 21 and res.per_layer["conv1"] == pytest.approx(1.0)


def test_the_vision_transformer_opens_on_its_patch_convolution(data):
    vit = build_model("vit", seed=0)
    ex = Explorer(lambda name: vit, data, network="vit", quick=True)
    assert ex.shown == "vit" and not ex.error.value
    assert ex.layer.value == network_spec("vit").signal_layer == "conv_proj"
    assert ex.signal.index.max == 48 and ex.signal.vector.shape == (7, 7)  # 49 7x7 patches
    # energy kept: the patch convolution, two MLP layers a block, the head (out_proj never
    # runs as a module: the attention uses its weight)
    per_layer = ex.residual.per_layer
    assert len(per_layer) == 10 and per_layer["conv_proj"] == pytest.approx(1.0)
    assert not any("out_proj" in n for n in per_layer)
    assert "descent" in ex.inversion.method.options and "exact" not in ex.inversion.method.options


def test_bad_layer_is_a_clear_error(explorer):
    with pytest.raises(ValueError, match="no layer 'nope'"):
        explorer.select("fcnn1", "nope")
    assert "nope" in explorer.error.value


def test_unknown_network_is_a_clear_error(data, models):
    with pytest.raises(ValueError, match="unknown network 'nope'; allowed: fcnn1"):
        Explorer(models.__getitem__, data, network="nope")
    ex = Explorer(models.__getitem__, data)
    assert ex.network.value == networks()[0]
    with pytest.raises(ValueError, match="unknown network 'nope'"):
        ex.select("nope")
    assert "unknown network" in ex.error.value and ex.shown == networks()[0]


def test_a_loader_that_returns_no_network_is_a_clear_error(data, models):
    with pytest.raises(TypeError, match="must return an nn.Module"):
        Explorer(lambda name: "not a network", data)


def test_failed_load_goes_back_to_the_network_on_display(data, models):
    def load(name):
        if name == "fcnn5":
            raise RuntimeError("no checkpoint and no time")
        return models[name]

    ex = Explorer(load, data)
    with pytest.raises(RuntimeError):
        ex.network.value = "fcnn5"
    assert ex.network.value == "fcnn1" and "no checkpoint" in ex.error.value
    assert ex.shown == "fcnn1"


def test_from_context_uses_the_runs_networks(data, models):
    loaded = []

    def trained(name, progress=True):
        loaded.append(name)
        return models[name]

    ctx = SimpleNamespace(trained=trained, data=data, device=torch.device("cpu"), seed=0)
    ex = Explorer.from_context(ctx)
    assert loaded == ["fcnn1"]  # networks load when first picked
    ex.network.value = "fcnn5"
    ex.network.value = "fcnn1"
    assert loaded == ["fcnn1", "fcnn5"]
    assert ex.widget.children[0] is ex.controls


def test_render_png_closes_its_figure():
    def draw():
        fig, ax = plt.subplots()
        ax.plot([0, 1])
        return fig

    assert render_png(draw).startswith(PNG_MAGIC)
    assert not plt.get_fignums()


def test_render_png_draws_in_the_library_style_and_leaves_none_behind():
    seen = {}

    def draw():
        seen.update({k: plt.rcParams[k] for k in plots.STYLE})
        fig, ax = plt.subplots()
        ax.plot([0, 1])
        return fig

    before = {k: plt.rcParams[k] for k in plots.STYLE}
    render_png(draw)
    assert seen == {
        k: pytest.approx(v) if isinstance(v, float) else v for k, v in plots.STYLE.items()
    }
    assert {k: plt.rcParams[k] for k in plots.STYLE} == before


# ----------------------------------------------------------------------------- inversion panel


def test_run_brings_the_output_closer_to_the_target(explorer, models):
    inv = explorer.inversion
    inv.label.value = 3
    inv.method.value = "descent"
    assert not inv.start.disabled and not inv.steps.disabled
    inv.steps.value = 40
    result = inv.run()
    assert result is inv.result and result.classes == [3] and result.network == "fcnn1"
    assert result.rel_error[0] < inv.start_result.rel_error[0]
    assert inv.progress.value == inv.progress.max == 40
    assert "done: 40 steps" in inv.progress_text.value
    assert f"{result.rel_error[0]:.3g}" in inv.numbers.value
    for image in (inv.images, inv.bars, inv.history):
        assert bytes(image.value).startswith(PNG_MAGIC)
    # the target is the paper's: min over the data of every other output, max of output 3
    stats = inversion.score_stats(models["fcnn1"], explorer.data.x_train, explorer.data.y_train)
    expected = inversion.make_targets(stats, "min-max", [3])
    torch.testing.assert_close(result.target, expected)


def test_controls_follow_the_method_and_target(explorer):
    inv = explorer.inversion
    inv.method.value = "min-img+training"
    assert inv.start.disabled  # the method names its start image
    assert inv.steps.value == default_steps("min-img+training", quick=True) == 50
    assert inv.steps.value == min(
        50, inversion.PRESETS[inversion.get_method("training").preset].steps
    )
    inv.method.value = "avg-min-img"
    assert inv.steps.disabled
    assert inv.percentiles.disabled
    inv.target.value = "percentile"
    assert not inv.percentiles.disabled
    inv.percentiles.value = (10.0, 90.0)
    result = inv.run()
    assert result.steps == 0 and "done in" in inv.progress_text.value
    stats = inv._score_stats()
    expected = inversion.make_targets(stats, "percentile", [0], percentiles=(10.0, 90.0))
    torch.testing.assert_close(result.target, expected)


def test_default_steps_come_from_the_method_registry():
    for name in inversion.COMPARED:
        method = inversion.get_method(name)
        if method.iterative:
            steps = inversion.PRESETS[method.preset].steps
            assert default_steps(name) == steps
            assert default_steps(name, quick=True) == min(steps, 50)
        else:
            assert default_steps(name) == default_steps(name, quick=True) == 0
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        default_steps("nope")


def test_method_picker_offers_what_applies_to_the_model(data, models):
    inv = InversionPanel(data, quick=True)
    for name, model in models.items():
        inv.set_network(model, name)
        assert list(inv.method.options) == inversion.applicable(model)
        for method in inv.method.options:
            inv.method.value = method
            m = inversion.get_method(method)
            assert inv.start.disabled == m.fixed_start
            assert inv.steps.disabled == (not m.iterative)


def test_exact_inversion_only_for_selu_networks(explorer):
    inv = explorer.inversion
    assert "exact" in inv.method.options
    inv.method.value = "exact"
    assert not inv.start.disabled and inv.steps.disabled  # exact: from a start, no steps
    result = inv.run()
    assert result.rel_error[0] < 1e-6 and "reached" in inv.numbers.value
    explorer.network.value = "resnet18"
    assert "exact" not in inv.method.options and inv.method.value == "descent"


def test_methods_and_first_layer_are_asked_of_the_model_not_its_name(data):
    """An unregistered SELU stack is offered exact inversion; a small convolutional network
    served under the name "fcnn1" is not, and opens on its own first layer (fcnn1's "1" is
    not a weight layer of it)."""
    torch.manual_seed(0)
    tiny = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.SELU(), nn.Linear(32, 10))
    conv = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    served = {"tiny-selu": tiny, "fcnn1": conv}
    ex = Explorer(served.__getitem__, data, names=["tiny-selu", "fcnn1"], quick=True)
    assert ex.network.value == "tiny-selu" and list(ex.network.options) == ["tiny-selu", "fcnn1"]
    assert ex.layer.value == "1"  # its first weight layer
    assert ex.signal.vector.shape == (28, 28) and ex.residual.decomposed == "1"
    inv = ex.inversion
    assert "exact" in inv.method.options
    inv.method.value = "exact"
    result = inv.run()
    assert result.network == "tiny-selu"
    assert result.rel_error[0] < 1e-6 and "reached" in inv.numbers.value

    ex.network.value = "fcnn1"
    assert ex.layer.value == "0" != network_spec("fcnn1").signal_layer
    assert ex.signal.vector.shape == (3, 3)
    assert "exact" not in inv.method.options and inv.method.value == "descent"
    assert list(inv.method.options) == inversion.applicable(conv)
    assert ex.residual.decomposed is None  # it starts with a convolution


def test_run_button_runs_in_a_thread(explorer):
    inv = explorer.inversion
    inv.method.value = "box"
    inv.steps.value = 20
    inv.run_button.click()
    inv.thread.join(timeout=60)
    assert not inv.running and inv.result is not None and inv.result.method == "box"
    assert inv.result.outside[0] == 0  # box keeps the pixels in [0, 1]
    assert not inv.run_button.disabled and inv.stop_button.disabled


def test_stop_ends_a_long_run_early(explorer):
    inv = explorer.inversion
    inv.method.value = "avg-img+training"  # the paper's small SGD steps: never converges
    inv.steps.value = 100_000
    inv.run_in_thread()
    deadline = time.monotonic() + 60
    while inv.progress.value < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert inv.running and inv.stop_button.disabled is False
    inv.stop_button.click()
    inv.thread.join(timeout=60)
    assert not inv.running
    assert inv.result.steps < 100_000
    assert "stopped at step" in inv.progress_text.value
    with pytest.raises(RuntimeError, match="no network"):
        InversionPanel(explorer.data).run()


def test_images_stay_hidden_until_drawn(explorer):
    inv = explorer.inversion
    assert inv.images.layout.display == "none"  # no broken-image icon before the first run
    assert explorer.signal.spectrum.layout.display is None
    inv.method.value = "exact"
    inv.run()
    assert inv.images.layout.display is None
    assert inv.history.layout.display == "none"  # exact has no iterations to plot
