"""Small helpers shared by the tests (imported as ``from helpers import ...``)."""

from __future__ import annotations

import contextlib
import os
import stat

import torch
from torch import nn


@contextlib.contextmanager
def umask(mask: int):
    """Run the block under ``mask``, then restore the process's umask."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    """A file's permission bits."""
    return stat.S_IMODE(os.stat(path).st_mode)


def selu_net(widths, *, selu_last=False, seed=0, dtype=torch.float64) -> nn.Sequential:
    """A random Linear/SELU stack (what ``exact`` inverts), in eval mode."""
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2 or selu_last:
            layers.append(nn.SELU())
    return nn.Sequential(*layers).to(dtype).eval()


#: The paper's composite method names, written by hand (not read from the library):
#: name -> (method, start image).
PAPER_ALIASES = {
    "avg-img": ("start", "avg-img"),
    "min-img": ("start", "min-img"),
    "avg-min-img": ("start", "avg-min-img"),
    "avg-img+training": ("training", "avg-img"),
    "min-img+training": ("training", "min-img"),
    "avg-min-img+training": ("training", "avg-min-img"),
}
