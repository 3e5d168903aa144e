"""Fixtures shared by test modules: the smoke run of every notebook (once per session)."""

import os

import pytest

from nnspaces.runner.config import RunConfig
from nnspaces.runner.execute import run_notebooks
from nnspaces.teaching.exercise import LOG_ENV


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """Every notebook the runner knows, run once with the smoke profile: (folder, rows)."""
    out = tmp_path_factory.mktemp("smoke")
    old = os.umask(0o022)  # a shared machine's usual umask; the kernels inherit it
    # every exercise check logs its expected value there (tests/test_lessons.py reads it)
    os.environ[LOG_ENV] = str(out / "exercises.jsonl")
    try:
        rows = run_notebooks(RunConfig.from_profile("smoke", out_dir=str(out)), progress=False)
    finally:
        os.umask(old)
        del os.environ[LOG_ENV]
    return out, rows
