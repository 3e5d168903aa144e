"""The paper's three networks, by name.

=========  ====================================================================================
name       architecture
=========  ====================================================================================
fcnn1      flatten -> Linear(784, 10) -> SELU (its "raw outputs" are the SELU outputs)
fcnn5      flatten -> Linear(784,256) SELU Linear(256,256) SELU Linear(256,128) SELU
           Linear(128,32) SELU Linear(32,10) (no activation after the last layer)
resnet18   torchvision's resnet18(num_classes=10) with conv1 = Conv2d(1, 64, 7, 2, 3, bias=False)
=========  ====================================================================================
"""

from __future__ import annotations

import torch
from torch import nn

NETWORKS = ("fcnn1", "fcnn5", "resnet18")
FCNN5_WIDTHS = (784, 256, 256, 128, 32, 10)


def check_network(name: str) -> str:
    """Return ``name`` if it is one of :data:`NETWORKS`, else raise a clear ValueError."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; allowed: {', '.join(NETWORKS)}")
    return name


def build_model(name: str, seed: int | None = 0) -> nn.Module:
    """A freshly initialised network (seeded when ``seed`` is not None), in eval mode."""
    check_network(name)
    if seed is not None:
        torch.manual_seed(seed)
    if name == "fcnn1":
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.SELU())
    elif name == "fcnn5":
        layers: list[nn.Module] = [nn.Flatten()]
        pairs = list(zip(FCNN5_WIDTHS[:-1], FCNN5_WIDTHS[1:], strict=True))
        for i, (n_in, n_out) in enumerate(pairs):
            layers.append(nn.Linear(n_in, n_out))
            if i < len(pairs) - 1:
                layers.append(nn.SELU())
        model = nn.Sequential(*layers)
    else:
        from torchvision.models import resnet18

        model = resnet18(num_classes=10)
        model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model.eval()


def weight_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every Linear and Conv2d layer of ``model`` by its module name, in forward order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)}


def n_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
