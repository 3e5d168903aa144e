"""The progress policy (nnspaces.progress): bars on interactively, off in batch runs, explicit
values unchanged; a loop that stops early at its goal ends with a finished bar."""

import os

import pytest
import torch
from torch import nn

from nnspaces import progress
from nnspaces.inversion import roots
from nnspaces.progress import BATCH_ENV, batch_run, finish, in_batch, show_progress


def test_default_follows_the_batch_marker(monkeypatch):
    monkeypatch.delenv(BATCH_ENV, raising=False)
    assert not in_batch() and show_progress() is True and show_progress(None) is True
    for value in ("1", "yes"):
        monkeypatch.setenv(BATCH_ENV, value)
        assert in_batch() and show_progress() is False
    for value in ("", "0"):  # set but empty or "0": not a batch run
        monkeypatch.setenv(BATCH_ENV, value)
        assert show_progress() is True


@pytest.mark.parametrize("batch", [None, "1"])
def test_explicit_values_are_kept(monkeypatch, batch):
    if batch is None:
        monkeypatch.delenv(BATCH_ENV, raising=False)
    else:
        monkeypatch.setenv(BATCH_ENV, batch)
    assert show_progress(True) is True and show_progress(False) is False


def test_batch_run_marks_and_restores_the_environment(monkeypatch):
    monkeypatch.delenv(BATCH_ENV, raising=False)
    with batch_run():
        assert os.environ[BATCH_ENV] == "1" and show_progress() is False
    assert BATCH_ENV not in os.environ
    monkeypatch.setenv(BATCH_ENV, "0")
    with pytest.raises(RuntimeError), batch_run():
        raise RuntimeError
    assert os.environ[BATCH_ENV] == "0"


def test_bars_follow_the_policy(monkeypatch):
    monkeypatch.setenv(BATCH_ENV, "1")
    assert progress.progress_bar(5, desc="x").disable
    assert not progress.progress_bar(5, desc="x", progress=True).disable
    monkeypatch.delenv(BATCH_ENV)
    assert not progress.progress_bar(5, desc="x").disable
    assert progress.progress_bar(5, desc="x", progress=False).disable


def test_finish_completes_a_bar_that_stopped_early():
    from tqdm.notebook import tqdm as notebook_tqdm  # a notebook bar turns red when unfinished

    for leave in (False, True):
        bar = notebook_tqdm(total=10, leave=leave, display=False)
        bar.update(3)
        finish(bar)
        widget = bar.container.children[1]
        assert (bar.n, bar.total, widget.value, widget.max) == (3, 3, 3, 3)
        assert widget.bar_style == ("success" if leave else "")
    bar = progress.progress_bar(10, desc="x", progress=True, leave=False)
    bar.update(10)
    finish(bar)  # a bar that ran to the end is left as it is
    assert (bar.n, bar.total) == (10, 10)
    finish(progress.progress_bar(10, desc="x", progress=False))  # a disabled bar: no error


def test_a_solver_that_reaches_its_tolerance_finishes_its_bar(monkeypatch):
    bars = []

    def recording_bar(*args, **kwargs):
        bars.append(progress.progress_bar(*args, **kwargs))
        return bars[-1]

    monkeypatch.setattr(roots, "progress_bar", recording_bar)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 2)).double().eval()
    x0 = torch.rand(2, 4, dtype=torch.float64)
    with torch.no_grad():
        t = model(x0)  # reached at the start
    _, steps, _ = roots.newton(
        model, x0, t, steps=50, callback=None, callback_every=1, progress=True, stop_tol=1e-12
    )
    assert steps == 1 and (bars[-1].n, bars[-1].total) == (1, 1)
