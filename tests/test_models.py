"""Networks: the registry and the paper's three networks, and what the library asks of any
classifier (structure, parameter counts, weights versions, frozen views, cached copies)."""

import copy

import pytest
import torch
from torch import nn

from nnspaces import models
from nnspaces.models import (
    REGISTRY,
    NetworkSpec,
    build_model,
    check_network,
    frozen,
    full_float32,
    is_selu_stack,
    model_as,
    n_outputs_of,
    n_parameters,
    network_name,
    network_spec,
    networks,
    register_network,
    selu_stack_layers,
    weight_layers,
    weights_version,
)

PAPER_NETWORKS = ("fcnn1", "fcnn5", "resnet18")

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
    # patches 64*49+64, class token 64, positions 17*64; per layer two LayerNorms 2*128,
    # attention 3*64*64+192 and 64*64+64, MLP 64*128+128 and 128*64+64; final norm, head
    "vit": (64 * 49 + 64)
    + 64
    + 17 * 64
    + 4 * (2 * 128 + (3 * 64 * 64 + 192) + (64 * 64 + 64) + (64 * 128 + 128) + (128 * 64 + 64))
    + 128
    + (64 * 10 + 10),
}


@pytest.fixture
def registry():
    """The registry, restored after the test (custom networks do not leak)."""
    saved = dict(REGISTRY)
    yield REGISTRY
    REGISTRY.clear()
    REGISTRY.update(saved)


class TinyConv(nn.Module):
    """A custom classifier: one convolution, then a linear layer to 3 outputs."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.head = nn.Linear(2 * 4 * 4, 3)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).flatten(1))


def tiny_spec(name="tiny", build=TinyConv):
    return NetworkSpec(name, build, (1, 6, 6), 3, "a tiny test network", "conv")


# --------------------------------------------------------------------------- the registry


def test_registry_lists_the_papers_networks_in_order():
    assert networks() == (*PAPER_NETWORKS, "vit")
    assert tuple(REGISTRY) == networks()
    for name in networks():
        spec = network_spec(name)
        assert spec.name == name and check_network(name) == name
        assert spec.input_shape == (1, 28, 28) and spec.n_classes == 10
        assert spec.description


@pytest.mark.parametrize("name", [*PAPER_NETWORKS, "vit"])
def test_output_shape_and_parameter_count(name):
    model = build_model(name)
    assert not model.training  # built in eval mode
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert n_parameters(model) == EXPECTED_PARAMETERS[name]
    assert n_outputs_of(model) == 10
    assert network_name(model) == name
    # the signal-space view's first layer exists in the built network
    assert network_spec(name).signal_layer in weight_layers(model)


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
    assert list(layers)[0] == "conv1"
    assert tuple(layers["layer1.0.conv1"].weight.shape) == (64, 64, 3, 3)


def test_vit_is_a_one_channel_torchvision_vision_transformer():
    from torchvision.models import VisionTransformer

    model = build_model("vit")
    assert isinstance(model, VisionTransformer) and model.image_size == 28
    c = model.conv_proj
    assert (c.in_channels, c.out_channels, c.kernel_size, c.stride) == (1, 64, (7, 7), (7, 7))
    # initialised like torchvision's own patch convolution: std sqrt(1 / 49), no bias
    assert c.weight.std().item() == pytest.approx(49**-0.5, rel=0.2) and not c.bias.any()
    blocks = list(model.encoder.layers)
    assert len(blocks) == 4
    for block in blocks:
        attn = block.self_attention
        assert isinstance(attn, nn.MultiheadAttention)
        assert (attn.embed_dim, attn.num_heads) == (64, 4)
        assert [m.out_features for m in block.mlp if isinstance(m, nn.Linear)] == [128, 64]
    assert model(torch.rand(5, 1, 28, 28)).shape == (5, 10)
    # the paper's networks train with the paper's recipe; vit has its own
    assert all(not network_spec(n).training for n in PAPER_NETWORKS)
    recipe = network_spec("vit").training
    assert (recipe["optimizer"], recipe["schedule"]) == ("adamw", "one-cycle")
    with pytest.raises(TypeError):
        recipe["lr"] = 1.0  # read-only: the registry entry is the one place it lives


def test_a_spec_takes_a_dict_of_training_values():
    with pytest.raises(TypeError, match="training=.* must be a dict"):
        NetworkSpec("x", TinyConv, (1, 6, 6), 3, "x", "conv", ["adamw"])
    given = {"lr": 0.1}
    spec = NetworkSpec("x", TinyConv, (1, 6, 6), 3, "x", "conv", given)
    given["lr"] = 0.2
    assert spec.training == {"lr": 0.1}  # a copy, not the caller's dict
    assert hash(spec) == hash(NetworkSpec("x", TinyConv, (1, 6, 6), 3, "x", "conv"))


def test_seeded_initialisation():
    a, b = build_model("fcnn5", seed=3), build_model("fcnn5", seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    c = build_model("fcnn5", seed=4)
    assert not torch.equal(a[1].weight, c[1].weight)
    # seed=None leaves torch's generator alone: the next draw decides
    torch.manual_seed(3)
    d = build_model("fcnn5", seed=None)
    assert torch.equal(d[1].weight, a[1].weight)


def test_unknown_network():
    with pytest.raises(ValueError, match=r"unknown network 'vgg'.*fcnn1, fcnn5, resnet18"):
        build_model("vgg")
    with pytest.raises(ValueError, match="unknown network 'vgg'"):
        check_network("vgg")
    with pytest.raises(ValueError, match="unknown network 3"):
        network_spec(3)


def test_registered_custom_network_works_everywhere(registry):
    spec = register_network(tiny_spec())
    assert spec.name == "tiny"
    assert networks() == (*PAPER_NETWORKS, "vit", "tiny")
    assert check_network("tiny") == "tiny" and network_spec("tiny") is spec
    model = build_model("tiny", seed=5)
    assert isinstance(model, TinyConv) and not model.training
    assert network_name(model) == "tiny"
    assert model(torch.rand(2, 1, 6, 6)).shape == (2, 3)
    assert n_outputs_of(model) == 3
    assert list(weight_layers(model)) == ["conv", "head"]
    assert n_parameters(model) == (2 * 9 + 2) + (32 * 3 + 3)
    again = build_model("tiny", seed=5)
    assert torch.equal(model.conv.weight, again.conv.weight)
    assert not is_selu_stack(model)
    # the same network, made directly, has no registry name: its class name
    assert network_name(TinyConv()) == "TinyConv"


def test_register_refuses_duplicates_and_non_specs(registry):
    register_network(tiny_spec())
    with pytest.raises(ValueError, match="'tiny' is already registered; pass replace=True"):
        register_network(tiny_spec())
    with pytest.raises(ValueError, match="'fcnn1' is already registered"):
        register_network(tiny_spec("fcnn1"))
    assert network_spec("fcnn1").description.startswith("one-layer")  # untouched

    def wider():
        return nn.Sequential(nn.Flatten(), nn.Linear(36, 7))

    register_network(tiny_spec("tiny", wider), replace=True)
    assert n_outputs_of(build_model("tiny")) == 7
    assert networks().count("tiny") == 1
    with pytest.raises(TypeError, match="needs a NetworkSpec, got dict"):
        register_network({"name": "x"})


def test_network_name_of_plain_models():
    assert network_name(nn.Sequential(nn.Linear(3, 2))) == "Sequential"
    assert network_name(build_model("fcnn1")) == "fcnn1"  # a Sequential, known by its name
    assert network_name(copy.deepcopy(build_model("fcnn5"))) == "fcnn5"


# --------------------------------------------------------------------------- structure


def test_weight_layers_in_forward_order():
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 2))
    )
    layers = weight_layers(model)
    assert list(layers) == ["0", "3.0", "3.1"]
    assert layers["3.1"] is model[3][1]


def test_n_parameters_counts_trainable_only():
    model = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 3))
    assert n_parameters(model) == 5 * 4 + 4 + 4 * 3 + 3
    model[0].weight.requires_grad_(False)
    assert n_parameters(model) == 4 + 4 * 3 + 3


def test_n_outputs_of_takes_the_last_linear():
    assert n_outputs_of(nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 6))) == 6
    with pytest.raises(ValueError, match="cannot tell how many outputs Conv2d"):
        n_outputs_of(nn.Conv2d(1, 1, 3))


def test_selu_stack_layers_of_the_fcnns():
    fc5 = build_model("fcnn5")
    pairs = selu_stack_layers(fc5)
    assert [lin for lin, _ in pairs] == [m for m in fc5 if isinstance(m, nn.Linear)]
    assert [selu for _, selu in pairs] == [True, True, True, True, False]
    fc1 = build_model("fcnn1")
    assert selu_stack_layers(fc1) == [(fc1[1], True)]


@pytest.mark.parametrize(
    "widths, selu_last, flatten",
    [
        ((7, 3), False, False),
        ((7, 3), True, True),
        ((5, 9, 4, 2), False, True),
        ((4, 4, 4), True, False),
    ],
)
def test_any_linear_selu_sequential_is_a_selu_stack(widths, selu_last, flatten):
    layers = [nn.Flatten()] if flatten else []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if selu_last or i < len(widths) - 2:
            layers.append(nn.SELU())
    model = nn.Sequential(*layers)
    assert is_selu_stack(model)
    pairs = selu_stack_layers(model)
    assert len(pairs) == len(widths) - 1
    assert pairs[-1][1] is selu_last
    # nested Sequentials are the same stack
    assert is_selu_stack(nn.Sequential(nn.Sequential(*layers[:2]), *layers[2:]))


@pytest.mark.parametrize(
    "model, message",
    [
        (nn.Sequential(nn.Linear(4, 3), nn.ReLU()), "found ReLU"),
        (nn.Sequential(nn.SELU(), nn.Linear(4, 3)), "every SELU must follow a Linear"),
        (nn.Sequential(nn.Linear(4, 3), nn.SELU(), nn.SELU()), "every SELU must follow a Linear"),
        (nn.Sequential(nn.Conv2d(1, 1, 3), nn.Flatten(), nn.Linear(4, 2)), "found Conv2d"),
        (nn.Sequential(nn.Linear(4, 3), nn.Flatten()), "found Flatten"),
        (nn.Sequential(nn.Flatten()), "has no Linear layer"),
        (nn.Linear(4, 3), "got Linear"),
        (nn.Sequential(), "got Sequential"),
    ],
)
def test_what_is_not_a_selu_stack(model, message):
    assert not is_selu_stack(model)
    with pytest.raises(ValueError, match=message):
        selu_stack_layers(model)


def test_is_selu_stack_asks_the_structure_not_the_name():
    conv = build_model("resnet18")
    setattr(conv, models._NAME_ATTR, "fcnn1")  # a conv net that claims a SELU-stack name
    assert network_name(conv) == "fcnn1"
    assert not is_selu_stack(conv)
    fc = build_model("fcnn5")
    setattr(fc, models._NAME_ATTR, "resnet18")  # a SELU stack that claims a conv name
    assert is_selu_stack(fc)
    # a fresh, unregistered stack, and a registered conv net's structure
    assert is_selu_stack(nn.Sequential(nn.Linear(3, 3), nn.SELU(), nn.Linear(3, 2)))
    assert not is_selu_stack(build_model("resnet18"))
    assert is_selu_stack(build_model("fcnn1")) and is_selu_stack(build_model("fcnn5"))


# --------------------------------------------------------------------------- weights


def test_weights_version_changes_with_the_weights():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    v0 = weights_version(model)
    assert weights_version(model) == v0
    model.eval()
    model(torch.rand(4, 3))  # a forward pass in eval mode changes nothing
    assert weights_version(model) == v0
    with torch.no_grad():
        model[0].weight.add_(1.0)  # in place
    v1 = weights_version(model)
    assert v1 != v0
    model.load_state_dict(copy.deepcopy(model.state_dict()))  # copied in, in place
    v2 = weights_version(model)
    assert v2 != v1
    model[0].bias = nn.Parameter(torch.zeros(2))  # replaced
    v3 = weights_version(model)
    assert v3 != v2
    model.train()
    model(torch.rand(4, 3))  # batch-norm running statistics are buffers: they count too
    assert weights_version(model) != v3


def test_frozen_restores_mode_and_requires_grad():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2)).train()
    model[1].bias.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    assert flags == [True, True, True, False]
    with frozen(model) as m:
        assert m is model
        assert not model.training and not model[0].training
        assert not any(p.requires_grad for p in model.parameters())
    assert model.training and model[0].training
    assert [p.requires_grad for p in model.parameters()] == flags
    # restored on an error too, and an eval-mode model stays in eval mode
    with pytest.raises(RuntimeError, match="boom"), frozen(model):
        raise RuntimeError("boom")
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    model.eval()
    with frozen(model):
        pass
    assert not model.training


def test_model_as_never_changes_the_model_and_caches_its_copy():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.SELU(), nn.Linear(3, 2)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert model_as(model, torch.float32, "cpu") is model  # nothing to convert
    work = model_as(model, torch.float64, "cpu")
    assert work is not model
    assert all(p.dtype == torch.float64 for p in work.parameters())
    assert not work.training and not any(p.requires_grad for p in work.parameters())
    # the model itself: same dtype, same mode, same flags, same values
    assert model.training and all(p.dtype == torch.float32 for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    x = torch.rand(5, 4, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(work(x), _double_forward(model, x))
    # cached while the weights stay the same, one copy per dtype
    assert model_as(model, torch.float64, "cpu") is work
    half = model_as(model, torch.bfloat16, "cpu")
    assert half is not work and next(half.parameters()).dtype == torch.bfloat16
    assert model_as(model, torch.float64, "cpu") is work
    # refreshed when the weights change
    with torch.no_grad():
        model[0].weight.mul_(2.0)
    fresh = model_as(model, torch.float64, "cpu")
    assert fresh is not work
    torch.testing.assert_close(fresh[0].weight, model[0].weight.detach().double())
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), _double_forward(model, x))


def test_model_as_keys_the_cache_by_device():
    model = nn.Linear(3, 2)
    meta = model_as(model, torch.float64, "meta")
    cpu = model_as(model, torch.float64, "cpu")
    assert meta is not cpu
    assert meta.weight.device.type == "meta" and cpu.weight.device.type == "cpu"
    assert model_as(model, torch.float64, torch.device("meta")) is meta
    assert model_as(model, torch.float32, "meta") is not meta
    assert model.weight.device.type == "cpu" and model.weight.dtype == torch.float32


def _double_forward(model, x):
    """``model``'s output in float64, from an independent copy."""
    return copy.deepcopy(model).double().eval()(x)


@pytest.mark.parametrize("before", [True, False])
def test_full_float32_turns_tf32_off_and_restores_it(before):
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    was = cudnn.allow_tf32, matmul.allow_tf32
    try:
        cudnn.allow_tf32 = matmul.allow_tf32 = before
        with pytest.raises(KeyError), full_float32():
            assert not cudnn.allow_tf32 and not matmul.allow_tf32
            raise KeyError("restored on an error too")
        assert cudnn.allow_tf32 is before and matmul.allow_tf32 is before
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = was
