"""The library on a GPU: the same answers as on the CPU (skipped where CUDA is missing).

Each test runs one path of the library with ``device="cuda"`` and checks what it returns
against the CPU: inverse images re-measured on the CPU by the original network, the
specialised copy against the network, trained networks' accuracy, the analysis table.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from helpers import selu_net

from nnspaces.data import Dataset
from nnspaces.inversion import invert
from nnspaces.inversion.specialise import specialise
from nnspaces.models import build_model, full_float32
from nnspaces.spaces.analysis import analyze
from nnspaces.training import TrainConfig, evaluate, get_trained, predict

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g)


def _rel_error(model, image, target) -> np.ndarray:
    """Relative output error re-measured here, on the CPU, in float64."""
    m = copy.deepcopy(model).cpu().double().eval()
    with torch.no_grad():
        out = m(image.double())
    t = target.double()
    return ((out - t).norm(dim=1) / t.norm(dim=1)).numpy()


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = build_model("resnet18", seed=0).eval()
    # BatchNorm statistics away from the defaults, so a fold done wrong on the GPU shows
    for bn in model.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("method", ["descent", "box"])
def test_resnet_inversion_on_cuda_reaches_its_targets(resnet, method):
    with torch.no_grad():
        targets = resnet(_images(10, 1))
    res = invert(resnet, targets, method=method, start=_images(10, 2), device="cuda")
    assert res.image.device.type == "cpu" and res.output.device.type == "cpu"
    assert res.settings["specialised"]  # the GPU ran the specialised copy
    err = _rel_error(resnet, res.image, targets)
    assert np.all(err <= 1e-4), err
    np.testing.assert_allclose(res.rel_error, err, rtol=1e-3, atol=1e-7)
    if method == "box":
        assert res.image.min() >= 0 and res.image.max() <= 1
    # the model the caller passed stays where it was
    assert next(resnet.parameters()).device.type == "cpu"


def test_specialised_copy_on_cuda_equals_the_network(resnet):
    x = _images(4, 3)
    spec = specialise(resnet.to("cuda"), (1, 28, 28))
    try:
        assert spec.folded and spec.trimmed
        with torch.no_grad(), full_float32():  # (TF32 convolutions differ by 1e-3)
            a = resnet(x.cuda()).cpu()
            b = spec.model(x.cuda()).cpu()
        assert next(spec.model.parameters()).device.type == "cuda"
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    finally:
        resnet.to("cpu")


def test_exact_inversion_on_cuda_equals_the_cpu():
    model = selu_net((784, 64, 10), seed=4)
    g = torch.Generator().manual_seed(5)
    targets = torch.randn(10, 10, generator=g, dtype=torch.float64) * 0.3
    start = _images(10, 6).flatten(1)
    cpu = invert(model, targets, method="exact", start=start, device="cpu")
    gpu = invert(model, targets, method="exact", start=start, device="cuda")
    assert gpu.success.all()
    torch.testing.assert_close(gpu.image, cpu.image, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("method", ["lm", "newton"])
def test_root_finders_on_cuda_reduce_the_error_like_the_cpu(method):
    model = selu_net((784, 32, 10), seed=7, dtype=torch.float32)
    with torch.no_grad():
        targets = model(_images(10, 8).flatten(1))
    start = _images(10, 9).flatten(1)
    cpu = invert(model, targets, method=method, start=start, device="cpu", steps=20)
    gpu = invert(model, targets, method=method, start=start, device="cuda", steps=20)
    assert gpu.median_rel_error <= 1e-3
    assert gpu.n_success == cpu.n_success


def test_training_on_cuda_learns(tmp_path):
    g = torch.Generator().manual_seed(0)
    # two separable classes: bright left half or bright right half
    x = torch.rand(400, 1, 28, 28, generator=g) * 0.2
    y = torch.arange(400) % 2
    x[y == 0, :, :, :14] += 0.8
    x[y == 1, :, :, 14:] += 0.8
    data = Dataset("toy", x[:300], y[:300], x[:0], y[:0], x[300:], y[300:], "made here")
    cfg = TrainConfig(network="fcnn1", epochs=2)
    net = get_trained(cfg, data, device="cuda", cache_dir=tmp_path, progress=False)
    assert next(net.model.parameters()).device.type == "cuda"
    assert net.test_accuracy >= 0.95
    # the checkpoint reloads on the CPU to the same predictions
    again = get_trained(cfg, data, device="cpu", cache_dir=tmp_path, progress=False)
    assert again.from_cache
    torch.testing.assert_close(
        predict(again.model, data.x_test), predict(net.model, data.x_test, device="cuda")
    )
    assert evaluate(again.model, data.x_test, data.y_test) == net.test_accuracy


def test_analyze_of_a_model_on_cuda_equals_the_cpu(resnet):
    cpu = analyze(resnet, input_shape=(1, 28, 28))
    try:
        gpu = analyze(resnet.to("cuda"), input_shape=(1, 28, 28))
    finally:
        resnet.to("cpu")
    assert list(gpu["layer"]) == list(cpu["layer"])
    assert gpu["analysed"].sum() == cpu["analysed"].sum() > 20
    for col in ("rank", "null_dim", "left_null_dim"):
        assert list(gpu[col].fillna(-1)) == list(cpu[col].fillna(-1))
    for col in ("condition_number", "sigma_min"):
        np.testing.assert_allclose(gpu[col].astype(float), cpu[col].astype(float), rtol=1e-6)
