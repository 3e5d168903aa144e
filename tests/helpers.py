"""Small helpers shared by the tests (imported as ``from helpers import ...``)."""

from __future__ import annotations

import base64
import contextlib
import os
import stat
from pathlib import Path

import nbformat
import torch
from torch import nn

# a 1x1 PNG, enough for an <img>
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63000100000500010d0a2db40000000049454e44ae426082"
)


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


def formulas_notebook(path: Path) -> None:
    """An executed notebook with an inline and a displayed formula, and a figure."""
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell(
                "# Formulas\n\nInline $x^2$, and on a line of its own\n\n$$\\sigma_1 = \\|W\\|_2$$"
            ),
            nbformat.v4.new_code_cell(
                "show()",
                execution_count=1,
                outputs=[
                    nbformat.v4.new_output(
                        "display_data",
                        data={"image/png": base64.b64encode(PNG).decode(), "text/plain": "<Fig>"},
                    )
                ],
            ),
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
