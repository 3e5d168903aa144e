"""Classifiers the library has never seen: a small CNN trained here on 300 embedded digits and
a SELU MLP of widths of its own go through layer_spaces, invert and comparison_table, which
ask the model, never a registry name."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnspaces.data import load_dataset
from nnspaces.inversion import COMPARED, applicable, invert
from nnspaces.inversion.crosscheck import comparison_table, run_methods
from nnspaces.models import REGISTRY, n_outputs_of, network_name, weight_layers
from nnspaces.spaces.layer import conv_as_matrix, layer_spaces


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 14 * 14, 10)

    def features(self, x):
        return F.max_pool2d(F.relu(self.conv(x)), 2).flatten(1)

    def forward(self, x):
        return self.fc(self.features(x))


class SeluMLP(nn.Sequential):
    def __init__(self):
        super().__init__(
            nn.Flatten(),
            nn.Linear(784, 24),
            nn.SELU(),
            nn.Linear(24, 16),
            nn.SELU(),
            nn.Linear(16, 10),
        )


def fit(model, data, steps=120, lr=1e-2):
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, data.n_train, (32,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(data.x_train[idx]), data.y_train[idx]).backward()
        opt.step()
    return model.eval()


def accuracy(model, x, y):
    with torch.no_grad():
        return float((model(x).argmax(1) == y).double().mean())


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one intra-op thread avoids the synchronisation that costs more than the
    arithmetic on a busy machine (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    return load_dataset("mnist-embedded", n_train=300, n_test=100)


@pytest.fixture(scope="module")
def cnn(data):
    torch.manual_seed(0)
    return fit(SmallCNN(), data)


@pytest.fixture(scope="module")
def mlp(data):
    torch.manual_seed(0)
    return fit(SeluMLP(), data)


def one_per_class(data):
    """One test image of each digit, in digit order."""
    idx = [int(torch.nonzero(data.y_test == c)[0]) for c in range(10)]
    return data.x_test[idx]


def test_the_library_sees_them_as_plain_classifiers(cnn, mlp, data):
    for model, name in ((cnn, "SmallCNN"), (mlp, "SeluMLP")):
        assert name not in REGISTRY and network_name(model) == name
        assert n_outputs_of(model) == 10
        assert accuracy(model, data.x_test, data.y_test) > 0.6  # really trained
    assert list(weight_layers(cnn)) == ["conv", "fc"]
    assert applicable(cnn) == [m for m in COMPARED if m != "exact"]
    assert applicable(mlp) == list(COMPARED)


def test_layer_spaces_of_the_cnn(cnn):
    # the conv kernels as a 4 x 9 matrix: rank 4, a 5-dimensional null space of 3x3 patches
    # to which every kernel is blind
    K = conv_as_matrix(cnn.conv.weight)
    assert K.shape == (4, 9)
    assert np.array_equal(K[2], cnn.conv.weight[2, 0].detach().double().numpy().ravel())
    spaces = layer_spaces(cnn.conv.weight.flatten(1))
    ref = layer_spaces(K)
    assert spaces.rank == ref.rank == 4 and spaces.null_space.shape == (9, 5)
    patch = torch.from_numpy(spaces.null_space[:, 0]).float().view(1, 1, 3, 3)
    blind = F.conv2d(patch, cnn.conv.weight)  # no bias, no padding: one value per kernel
    seen = F.conv2d(
        torch.from_numpy(spaces.row_space[:, 0]).float().view(1, 1, 3, 3), cnn.conv.weight
    )
    assert blind.abs().max() < 1e-6 and seen.abs().max() > 1e-2
    # the classifier layer: 10 x 784, rank 10; features moved along its null space give the
    # same outputs
    fc = layer_spaces(cnn.fc.weight)
    assert fc.shape == (10, 784) and fc.rank == 10 and fc.null_space.shape == (784, 774)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        f = cnn.features(x)
        moved = f + 5.0 * torch.from_numpy(fc.null_space[:, :2].sum(1)).float()
        assert torch.allclose(cnn.fc(moved), cnn.fc(f), atol=1e-4)
        assert not torch.allclose(moved, f)


def test_descent_reaches_the_cnns_targets(cnn, data):
    # targets the CNN does give (its outputs on real digits 3, 5, 8), from the class averages
    x = one_per_class(data)[[3, 5, 8]]
    with torch.no_grad():
        t = cnn(x)
    cnn.train()
    try:
        r = invert(
            cnn, t, method="descent", classes=[3, 5, 8], data=data, steps=300, progress=False
        )
        assert cnn.training  # handed back as it came
    finally:
        cnn.eval()
    assert r.network == "SmallCNN" and r.classes == [3, 5, 8]
    assert r.success.all(), r.reason  # relative error <= 1e-4 (the default tol)
    with torch.no_grad():
        out = cnn(r.image)
    rel = torch.linalg.vector_norm(out - t, dim=1) / torch.linalg.vector_norm(t, dim=1)
    assert rel.max() < 1e-3
    # the start was each class's average digit
    avg = torch.stack([data.x_train[data.y_train == c].mean(0) for c in (3, 5, 8)])
    assert torch.allclose(r.start, avg, atol=1e-6)


def test_exact_is_refused_for_the_cnn(cnn, data):
    with pytest.raises(ValueError) as e:
        invert(cnn, "min-max", method="exact", data=data, progress=False)
    assert str(e.value) == (
        "exact inversion needs an nn.Sequential of Linear / SELU layers; got SmallCNN"
    )


def test_exact_inverts_the_selu_mlp(mlp, data):
    x = one_per_class(data)
    with torch.no_grad():
        t = mlp(x)
    r = invert(mlp, t, method="exact", data=data, progress=False)
    assert r.network == "SeluMLP" and r.settings["hidden"] == "newton"
    assert r.success.all(), r.reason
    with torch.no_grad():
        out = copy.deepcopy(mlp).double()(r.image.double())
    rel = torch.linalg.vector_norm(out - t.double(), dim=1) / torch.linalg.vector_norm(t, dim=1)
    assert rel.max() < 1e-8
    # each image is the pre-image of its first-layer value closest to the class average
    N = layer_spaces(mlp[1].weight).null_space
    avg = torch.stack([data.x_train[data.y_train == c].mean(0) for c in range(10)])
    assert np.abs((r.image - avg).reshape(10, -1).double().numpy() @ N).max() < 1e-6


def test_comparison_table_has_rows_for_them(cnn, mlp, data):
    models = {network_name(cnn): cnn, network_name(mlp): mlp}
    results = {
        name: run_methods(m, "min-max", data=data, quick=True, progress=False)
        for name, m in models.items()
    }
    table = comparison_table(results, models)
    by_net = {}
    for row in table.rows:
        by_net.setdefault(row["network"], []).append(row["method"])
    assert by_net == {
        "SmallCNN": [m for m in COMPARED if m != "exact"] + ["best", "best-box"],
        "SeluMLP": [*COMPARED, "best", "best-box"],
    }
    for r in results["SmallCNN"].values():
        assert r.network == "SmallCNN"
    # the CNN's images are checked by the MLP alone, and the other way round
    assert set(table.cross_model["SmallCNN"]["box"]) == {"SeluMLP", "all_others"}
    box = results["SmallCNN"]["box"]
    with torch.no_grad():
        seen = int((mlp(box.image).argmax(1) == torch.arange(10)).sum())
    assert table.cross_model["SmallCNN"]["box"]["SeluMLP"] == seen
    assert any(line.startswith("SmallCNN ") for line in table.text.splitlines())
