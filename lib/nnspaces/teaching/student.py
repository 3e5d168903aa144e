"""The student edition of the lessons: the notebooks without their solutions.

    python -m nnspaces student                 # what `make student` does: writes student/
    python -m nnspaces student --out /tmp/class

The teacher edition is ``notebooks/`` itself. A solution is a cell tagged ``solution`` (see
:mod:`nnspaces.teaching.exercise` for an exercise's cells); the student edition is written with
nbconvert's own preprocessors: ``TagRemovePreprocessor`` drops every solution cell and
``ClearOutputPreprocessor`` every output (an output could show an answer). Nothing else
changes, so the student edition runs like the teacher's and stops at no exercise: each
unanswered check prints "not answered yet" and the notebook goes on.
"""

from __future__ import annotations

from pathlib import Path

from ..files import atomic_write
from ..paths import NOTEBOOK_DIR, STUDENT_DIR
from ..runner.notebooks import NOTEBOOKS

#: The cell tag of a solution (code that answers an exercise, or its explanation).
SOLUTION_TAG = "solution"
#: The cell tag of an exercise's question and answer cells (kept in the student edition).
EXERCISE_TAG = "exercise"


def student_notebook(source: str | Path) -> str:
    """The student edition of one notebook, as JSON text."""
    from nbconvert import NotebookExporter
    from nbconvert.preprocessors import ClearOutputPreprocessor, TagRemovePreprocessor

    exporter = NotebookExporter()
    remove = TagRemovePreprocessor(remove_cell_tags={SOLUTION_TAG}, enabled=True)
    exporter.register_preprocessor(remove, enabled=True)
    exporter.register_preprocessor(ClearOutputPreprocessor(enabled=True), enabled=True)
    body, _ = exporter.from_filename(str(source))
    return body


def write_student_edition(
    out_dir: str | Path = STUDENT_DIR, notebooks: list[Path] | None = None
) -> list[Path]:
    """Write the student edition of every registered notebook
    (:data:`nnspaces.runner.notebooks.NOTEBOOKS`), or of ``notebooks``, into ``out_dir``;
    returns the paths written."""
    if notebooks is None:
        notebooks = [NOTEBOOK_DIR / f"{nb.name}.ipynb" for nb in NOTEBOOKS]
    sources = [Path(s) for s in notebooks if Path(s).is_file()]
    if not sources:
        raise FileNotFoundError(f"no notebooks to write a student edition of in {NOTEBOOK_DIR}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sources:
        target = out / Path(source).name
        atomic_write(target, student_notebook(source))
        written.append(target)
    return written
