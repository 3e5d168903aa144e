"""The student edition: solution cells gone, outputs cleared, everything else kept."""

import json

import nbformat
import pytest

from nnspaces.cli import main
from nnspaces.paths import NOTEBOOK_DIR
from nnspaces.runner.config import RunConfig
from nnspaces.runner.execute import available_notebooks, run_notebooks
from nnspaces.teaching.exercises import CORRECT, NOT_ANSWERED
from nnspaces.teaching.student import SOLUTION_TAG, student_notebook, write_student_edition


def _teacher(path):
    exercise, solution = {"tags": ["exercise"]}, {"tags": [SOLUTION_TAG]}
    v4 = nbformat.v4
    cells = [
        v4.new_markdown_cell("**Exercise 1.1** What is 1 + 1?", metadata=exercise),
        v4.new_code_cell("answer = None  # your answer", metadata=exercise),
        v4.new_code_cell("answer = 1 + 1  # SECRET-SOLUTION", metadata=solution),
        v4.new_markdown_cell("Because SECRET-EXPLANATION.", metadata=solution),
        v4.new_code_cell("import nnspaces as ns\nns.ex('2.3').check(answer)"),
    ]
    cells[4].outputs = [v4.new_output("stream", name="stdout", text="Exercise 1.1: correct.\n")]
    nb = nbformat.v4.new_notebook(cells=cells)
    nbformat.write(nb, path)
    return nb


def test_student_notebook_drops_solutions_and_outputs(tmp_path):
    teacher = _teacher(tmp_path / "lesson.ipynb")
    student = nbformat.reads(student_notebook(tmp_path / "lesson.ipynb"), as_version=4)
    nbformat.validate(student)
    assert "SECRET" not in json.dumps(student)
    kept = [c.source for c in teacher.cells if SOLUTION_TAG not in c.metadata.get("tags", [])]
    assert [c.source for c in student.cells] == kept
    assert all(c.get("outputs", []) == [] for c in student.cells)


def test_student_notebook_runs_to_the_unanswered_check(tmp_path, capsys):
    _teacher(tmp_path / "lesson.ipynb")
    student = nbformat.reads(student_notebook(tmp_path / "lesson.ipynb"), as_version=4)
    namespace = {}
    for cell in student.cells:
        if cell.cell_type == "code":
            exec(cell.source, namespace)
    assert "Exercise 2.3: not answered yet" in capsys.readouterr().out


def test_write_student_edition_and_cli(tmp_path, capsys):
    _teacher(tmp_path / "a.ipynb")
    written = write_student_edition(tmp_path / "out", [tmp_path / "a.ipynb"])
    assert [p.name for p in written] == ["a.ipynb"]
    assert "SECRET" not in written[0].read_text()
    assert main(["student", "--out", str(tmp_path / "cli")]) == 0
    assert "student edition:" in capsys.readouterr().out
    assert any((tmp_path / "cli").glob("fig1*.ipynb"))
    with pytest.raises(FileNotFoundError, match="no notebooks"):
        write_student_edition(tmp_path / "none", [])


# --------------------------------------------------------------------------- the real lessons


def _tags(cell):
    return cell.metadata.get("tags", [])


def _lessons():
    """The runner's notebooks that hold exercises, with their solution cells' sources."""
    found = {}
    for name in available_notebooks():
        nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
        solutions = [c for c in nb.cells if SOLUTION_TAG in _tags(c)]
        if solutions:
            found[name] = solutions
    return found


def test_the_student_edition_holds_no_solution(tmp_path):
    lessons = _lessons()
    written = write_student_edition(tmp_path)
    assert {p.stem for p in written} >= set(lessons)
    for name, solutions in lessons.items():
        text = (tmp_path / f"{name}.ipynb").read_text()
        student = nbformat.reads(text, as_version=4)
        assert not [c for c in student.cells if SOLUTION_TAG in _tags(c)], name
        # no solution's text survives anywhere (e.g. copied into another cell)
        kept = "".join(c.source for c in student.cells)
        leaked = [c.source for c in solutions if c.source.strip() and c.source.strip() in kept]
        assert not leaked, (name, leaked)
        # every exercise is still there for the student to answer: one answer cell each
        asked = [c for c in student.cells if "exercise" in _tags(c) and c.cell_type == "code"]
        assert len(asked) == sum(c.cell_type == "code" for c in solutions) >= 3, name


@pytest.mark.notebook
def test_the_student_edition_runs_through_every_unanswered_exercise(tmp_path):
    """Executed as a student gets it (smoke profile): every notebook runs to its end, each
    exercise's check says "not answered yet" (never "correct": the solutions are gone)."""
    lessons = _lessons()
    assert lessons, "no notebook holds exercises"
    folder = tmp_path / "student"
    write_student_edition(folder, [NOTEBOOK_DIR / f"{n}.ipynb" for n in lessons])
    config = RunConfig.from_profile("smoke", out_dir=str(tmp_path / "out"))
    rows = run_notebooks(config, only=list(lessons), progress=False, notebook_dir=folder)
    assert [(r["notebook"], r["status"]) for r in rows] == [(n, "ok") for n in lessons]
    for name in lessons:
        nb = nbformat.read(tmp_path / "out" / "notebooks" / f"{name}.ipynb", as_version=4)
        printed = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        unanswered = [p for p in printed if NOT_ANSWERED in p]
        n_exercises = sum(1 for c in nb.cells if "exercise" in _tags(c) and c.cell_type == "code")
        assert len(unanswered) == n_exercises >= 3, (name, unanswered)
        assert not [p for p in printed if f": {CORRECT}." in p], name
