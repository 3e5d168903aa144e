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


def fake_run(job: dict) -> dict:
    """A sweep worker that runs no notebook: it writes a fig1 metrics file whose accuracy
    and condition number are made from the run's seed (accuracy 0.9 + seed / 100,
    condition number 2 + seed), so aggregates can be checked by hand. Seed 13 crashes
    inside the run; seed 66 kills its worker process."""
    import json

    seed = job["parameters"]["seed"]
    if seed == 13:
        raise RuntimeError("run 13 crashed")
    if seed == 66:
        os._exit(3)
    metrics = {
        "profile": job["parameters"]["profile"],
        "dataset": job["parameters"]["dataset"],
        "network": "fcnn1",
        "test_accuracy": 0.9 + seed / 100,
        "condition_number": 2.0 + seed,
        "singular_values": [3.0, 1.0],
    }
    return {
        "id": job["id"],
        "status": "ok",
        "error": "",
        "notebooks": [{"notebook": n, "status": "ok", "seconds": 0.0} for n in job["notebooks"]],
        "notebook_seconds": 0.0,
        "seconds": 0.0,
        "host": "test",
        "files": {"metrics/fig1.json": json.dumps(metrics).encode(), "index.html": b"<html>"},
    }


def interrupting_run(job: dict) -> dict:
    """:func:`fake_run`, but the run with seed 1 is interrupted (as by Ctrl-C)."""
    if job["parameters"]["seed"] == 1:
        raise KeyboardInterrupt
    return fake_run(job)
