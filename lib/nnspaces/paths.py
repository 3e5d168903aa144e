"""Every repository path the library uses, in one place.

The checkout's root is found from this file (``lib/nnspaces/paths.py``); the data and the
checkpoint cache can be moved with ``NNSPACES_DATA`` and ``NNSPACES_CACHE``.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Datasets (full MNIST in torchvision's layout) and caches.
DATA_DIR = Path(os.environ.get("NNSPACES_DATA", REPO_ROOT / "data"))
#: Trained networks' checkpoints.
CACHE_DIR = Path(os.environ.get("NNSPACES_CACHE", REPO_ROOT / "data" / "cache"))
#: The notebooks the runner executes.
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
#: Runs' outputs: ``results/<profile>``.
RESULTS = REPO_ROOT / "results"
#: The student edition of the lessons.
STUDENT_DIR = REPO_ROOT / "student"
README = REPO_ROOT / "README.md"
#: The README's numbers as last generated (for the test that the README matches them).
README_SNAPSHOT = REPO_ROOT / "docs" / "readme_numbers.json"
#: The HTML templates of the report and the sweep report.
TEMPLATES = Path(__file__).resolve().parent / "runner" / "templates"


def shown(path: str | Path) -> str:
    """``path`` as a page or a printout shows it: relative to the repository when it lies
    inside it (``results/default``), else ``.../<its folder>`` (no machine's absolute paths)."""
    path = Path(path).resolve()
    try:
        return path.relative_to(REPO_ROOT).as_posix() or "."
    except ValueError:
        return f".../{path.name}"
