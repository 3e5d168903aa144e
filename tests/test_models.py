"""The paper's three networks: architecture, output shapes, parameter counts."""

import pytest
import torch
from torch import nn

from nnspaces.models import NETWORKS, build_model, n_parameters, weight_layers

# counted by hand from METHOD.md's architectures
EXPECTED_PARAMETERS = {
    "fcnn1": 784 * 10 + 10,
    "fcnn5": (784 * 256 + 256)
    + (256 * 256 + 256)
    + (256 * 128 + 128)
    + (128 * 32 + 32)
    + (32 * 10 + 10),
    # torchvision resnet18 (11,689,512 for 3 channels and 1000 classes), with a one-channel
    # conv1 (64*1*7*7 instead of 64*3*7*7) and a 10-class fc (512*10+10 instead of 512*1000+1000)
    "resnet18": 11_689_512 - 64 * 2 * 49 - (512 * 990 + 990),
}


@pytest.mark.parametrize("name", NETWORKS)
def test_output_shape_and_parameter_count(name):
    model = build_model(name)
    assert not model.training  # built in eval mode
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert n_parameters(model) == EXPECTED_PARAMETERS[name]


def test_fcnn_architectures():
    fc1 = build_model("fcnn1")
    assert [type(m) for m in fc1] == [nn.Flatten, nn.Linear, nn.SELU]
    fc5 = build_model("fcnn5")
    linears = [m for m in fc5 if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (784, 256),
        (256, 256),
        (256, 128),
        (128, 32),
        (32, 10),
    ]
    assert sum(isinstance(m, nn.SELU) for m in fc5) == 4
    assert isinstance(fc5[-1], nn.Linear)  # no activation after the last layer


def test_resnet18_first_convolution_and_layers():
    model = build_model("resnet18")
    c = model.conv1
    assert (c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, c.bias) == (
        1,
        64,
        (7, 7),
        (2, 2),
        (3, 3),
        None,
    )
    layers = weight_layers(model)
    convs = [k for k, m in layers.items() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 20 and list(layers)[-1] == "fc"
    assert tuple(layers["layer1.0.conv1"].weight.shape) == (64, 64, 3, 3)


def test_seeded_initialisation():
    a, b = build_model("fcnn5", seed=3), build_model("fcnn5", seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    c = build_model("fcnn5", seed=4)
    assert not torch.equal(a[1].weight, c[1].weight)


def test_unknown_network():
    with pytest.raises(ValueError, match=r"unknown network 'vgg'.*fcnn1, fcnn5, resnet18"):
        build_model("vgg")
