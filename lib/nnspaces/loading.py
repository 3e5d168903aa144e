"""Bring your own model: any ``nn.Module`` from an import string (``package.module:factory``
or ``path/to/file.py:factory``), with its weights, for :func:`nnspaces.analyze` and the
``any_model`` notebook. Every failure names what was asked for."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import torch
from torch import nn


def load_model(spec: str, weights: str | None = None, /, **kwargs) -> nn.Module:
    """A model from an import string, ``package.module:factory`` or ``path/to/file.py:factory``
    (``factory(**kwargs)`` must return an ``nn.Module``), with its ``state_dict`` loaded from
    ``weights`` when given; in eval mode. Every failure names what was asked for. ``spec`` and
    ``weights`` are positional only, so ``kwargs`` may hold the factory's own ``weights``
    (torchvision's ``resnet18(weights=None)``)."""
    where, sep, attr = str(spec).rpartition(":")
    if not sep or not where or not attr:
        raise ValueError(f"model {spec!r} must be 'package.module:factory' or 'file.py:factory'")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise ValueError(f"model file {where!r} does not exist")
        module_spec = importlib.util.spec_from_file_location(f"nnspaces_user_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            raise ValueError(f"cannot import {where!r} for model {spec!r}: {e}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"{where!r} has no callable {attr!r} (model {spec!r})")
    model = factory(**kwargs)
    if not isinstance(model, nn.Module):
        raise TypeError(f"{spec}({kwargs}) returned {type(model).__name__}, not an nn.Module")
    if weights is not None:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise ValueError(f"weights file {str(weights)!r} does not exist") from None
        except Exception as e:
            raise ValueError(
                f"weights file {str(weights)!r} is not a torch state_dict: {e}"
            ) from None
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as e:
            raise ValueError(f"weights {str(weights)!r} do not fit {spec}: {e}") from None
    return model.eval()
