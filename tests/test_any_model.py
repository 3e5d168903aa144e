"""Bring your own model: load_model's import strings and errors, and the any_model notebook
run through papermill on models the library never saw."""

from __future__ import annotations

import csv
import json
import textwrap

import numpy as np
import pytest
import torch

from nnspaces.loading import load_model
from nnspaces.paths import NOTEBOOK_DIR

MODELS = textwrap.dedent(
    """
    import torch
    import torch.nn.functional as F
    from torch import nn


    class Tiny(nn.Module):
        def __init__(self, width=4):
            super().__init__()
            self.conv = nn.Conv2d(1, width, 3, stride=2, padding=1)
            self.fc = nn.Linear(width * 14 * 14, 10)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).flatten(1))


    def make(width=4):
        return Tiny(width)


    def colour():
        return nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 5))


    def not_a_model():
        return 42


    class LazyCNN(nn.Module):
        # lazy layers, BatchNorm, Dropout and a functional forward: sized by the data

        def __init__(self):
            super().__init__()
            self.conv = nn.LazyConv2d(4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.drop = nn.Dropout(0.3)
            self.fc = nn.LazyLinear(10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
            return self.fc(self.drop(x.flatten(1)))


    def make_cnn():
        torch.manual_seed(0)
        return LazyCNN()
    """
)


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "my_models.py"
    path.write_text(MODELS)
    return path


def test_load_model_from_a_file_with_weights(model_file, tmp_path):
    torch.manual_seed(3)
    trained = load_model(f"{model_file}:make", width=3)
    with torch.no_grad():
        trained.fc.weight.mul_(7.0)
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    again = load_model(f"{model_file}:make", str(tmp_path / "w.pt"), width=3)
    assert torch.equal(again.fc.weight, trained.fc.weight) and not again.training
    assert type(load_model("torch.nn:Identity")).__name__ == "Identity"
    # the factory's own `weights` keyword reaches the factory (torchvision's convention)
    assert load_model("torchvision.models:resnet18", None, weights=None).fc.out_features == 1000


@pytest.mark.parametrize(
    ("spec", "kwargs", "message"),
    [
        ("no_colon", {}, "must be 'package.module:factory'"),
        ("no_such_package_xyz:f", {}, "cannot import 'no_such_package_xyz'"),
        ("torch.nn:NoSuchThing", {}, "has no callable 'NoSuchThing'"),
        ("{file}:not_a_model", {}, "returned int, not an nn.Module"),
        ("/no/such/file.py:make", {}, "model file '/no/such/file.py' does not exist"),
    ],
)
def test_load_model_errors_name_what_was_asked(model_file, spec, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message.replace(".", r"\.")):
        load_model(spec.format(file=model_file), **kwargs)


def test_bad_weights_are_named(model_file, tmp_path):
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="is not a torch state_dict"):
        load_model(f"{model_file}:make", str(tmp_path / "junk.pt"))
    torch.save(load_model(f"{model_file}:make", width=5).state_dict(), tmp_path / "w5.pt")
    with pytest.raises(ValueError, match="do not fit"):
        load_model(f"{model_file}:make", str(tmp_path / "w5.pt"), width=3)


def _run(tmp_path, **parameters):
    import papermill as pm

    out = tmp_path / "out"
    pm.execute_notebook(
        NOTEBOOK_DIR / "any_model.ipynb",
        tmp_path / "any_model.ipynb",
        parameters={
            "out_dir": str(out),
            "n_train": 200,
            "n_test": 100,
            "resnet": None,
            **parameters,
        },
        kernel_name="nnspaces" if _has_kernel() else "python3",
        cwd=str(NOTEBOOK_DIR),
        progress_bar=False,
    )
    rows = list(csv.DictReader((out / "layers.csv").open()))
    return rows, json.loads((out / "inversions.json").read_text())


def _has_kernel() -> bool:
    from jupyter_client.kernelspec import KernelSpecManager

    return "nnspaces" in KernelSpecManager().find_kernel_specs()


@pytest.mark.notebook
def test_the_notebook_analyses_and_inverts_a_model_it_never_saw(model_file, tmp_path):
    torch.manual_seed(0)
    model = load_model(f"{model_file}:make")
    torch.save(model.state_dict(), tmp_path / "tiny.pt")
    rows, inv = _run(
        tmp_path, model=f"{model_file}:make", model_kwargs={}, weights=str(tmp_path / "tiny.pt")
    )
    conv = next(r for r in rows if r["layer"] == "conv")
    assert conv["matrix"] == "convolution operator on 1 x 28 x 28"
    assert (conv["shape"], conv["analysed"]) == ("784 x 784", "True")
    assert 0 < float(conv["input_energy_in_row_space"]) <= 1
    fc = next(r for r in rows if r["layer"] == "fc")  # the saved weights, read back
    W = model.fc.weight.detach().double().numpy()
    assert float(fc["sigma_max"]) == pytest.approx(np.linalg.norm(W, 2), rel=1e-9)
    assert inv["fits"] is True and "exact" not in inv["methods"]  # not a SELU stack
    assert {"descent", "box", "newton"} <= set(inv["methods"])
    assert inv["methods"]["descent"]["median_rel_error"] < 1


@pytest.mark.notebook
def test_a_model_for_other_inputs_is_analysed_and_the_notebook_says_why_not_inverted(
    model_file, tmp_path
):
    rows, inv = _run(tmp_path, model=f"{model_file}:colour", model_kwargs={}, input_shape=[3, 8, 8])
    conv = next(r for r in rows if r["layer"] == "0")
    assert conv["matrix"] == "convolution operator on 3 x 8 x 8" and conv["shape"] == "72 x 192"
    assert inv["fits"] is False and inv["methods"] == {}
    assert "does not take (1, 28, 28) images" in inv["why_not"]


def _papermill_cli(tmp_path, *args: str) -> tuple[list[dict], dict]:
    """The notebook run exactly as the README shows it: the papermill command line."""
    import subprocess
    import sys

    out = tmp_path / "out"
    kernel = ["-k", "nnspaces"] if _has_kernel() else []
    command = [sys.executable, "-m", "papermill", *kernel, str(NOTEBOOK_DIR / "any_model.ipynb"),
               str(tmp_path / "out.ipynb"), "--cwd", str(NOTEBOOK_DIR), "-p", "out_dir", str(out),
               *args]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.DictReader((out / "layers.csv").open()))
    return rows, json.loads((out / "inversions.json").read_text())


@pytest.mark.notebook
def test_the_readme_command_runs_a_lazy_factory_that_takes_no_name(model_file, tmp_path):
    rows, inv = _papermill_cli(
        tmp_path, "-p", "model", f"{model_file}:make_cnn", "-p", "n_train", "200",
        "-p", "n_test", "100", "-p", "resnet", "None",
    )  # fmt: skip
    by_layer = {r["layer"]: r for r in rows}
    assert by_layer["conv"]["shape"] == "3136 x 784"  # the lazy conv sized to 1 channel
    assert by_layer["fc"]["shape"] == "10 x 784" and by_layer["fc"]["analysed"] == "True"
    assert by_layer["bn"]["analysed"] == "False" and "normalisation" in by_layer["bn"]["reason"]
    assert by_layer["drop"]["analysed"] == "False"
    assert inv["fits"] is True and inv["model_kwargs"] == {}
    assert {"descent", "box", "newton"} <= set(inv["methods"])


@pytest.mark.notebook
def test_a_torchvision_model_at_224_is_analysed_not_inverted_and_its_conv_table_labelled(
    tmp_path,
):
    rows, inv = _papermill_cli(
        tmp_path, "-p", "model", "torchvision.models:resnet18",
        "-y", "model_kwargs: {weights: null}", "-y", "input_shape: [3, 224, 224]",
        "-p", "n_train", "200", "-p", "n_test", "100",
        "-p", "max_steps", "6", "-p", "resnet_layers", "1",
    )  # fmt: skip
    conv1 = next(r for r in rows if r["layer"] == "conv1")
    assert conv1["matrix"] == "convolution operator on 3 x 224 x 224"
    assert conv1["shape"] == "802816 x 150528" and conv1["method"].startswith("lanczos")
    assert "sigma_max is a lower bound" in conv1["reason"]  # 6 steps certify nothing
    down = next(r for r in rows if r["layer"] == "layer2.0.downsample.0")
    assert down["method"] == "structure (1 x 1)"
    assert float(down["null_dim"]) == 64 * 56 * 56 - 64 * 28 * 28  # rank: 64 per output pixel
    assert inv["fits"] is False and inv["methods"] == {}
    assert "does not take (1, 28, 28) images" in inv["why_not"]
    table = list(csv.DictReader((tmp_path / "out" / "resnet_conv_spectra.csv").open()))
    assert [r["layer"] for r in table] == ["conv1"]
    assert table[0]["circular_norm_label"] == "exact-for-circular"
    assert float(table[0]["sigma_max_upper"]) >= float(table[0]["sigma_max"])


def test_lazy_layers_are_sized_by_one_pass_and_counted_only_then(model_file):
    from nnspaces.models import materialize, n_parameters

    model = load_model(f"{model_file}:make_cnn").train()
    with pytest.raises(ValueError, match=r"lazy parameters not sized yet \(conv\.weight"):
        n_parameters(model)
    assert materialize(model, (1, 28, 28)) is model and model.training  # its mode restored
    # conv 1 -> 4 channels 3 x 3 (+ bias), BatchNorm 4 + 4, fc (4 * 14 * 14) -> 10 (+ bias)
    assert n_parameters(model) == (4 * 9 + 4) + 8 + (4 * 14 * 14 * 10 + 10)
    assert torch.all(model.bn.running_mean == 0)  # eval mode: no statistics updated
    with pytest.raises(ValueError, match=r"cannot size the lazy layers .* shape \(3, 2\)"):
        materialize(load_model(f"{model_file}:make_cnn"), (3, 2))
