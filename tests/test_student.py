"""The student edition: solution cells gone, outputs cleared, everything else kept."""

import json

import nbformat
import pytest

from nnspaces.run import main
from nnspaces.student import SOLUTION_TAG, student_notebook, write_student_edition


def _teacher(path):
    exercise, solution = {"tags": ["exercise"]}, {"tags": [SOLUTION_TAG]}
    v4 = nbformat.v4
    cells = [
        v4.new_markdown_cell("**Exercise 1.1** What is 1 + 1?", metadata=exercise),
        v4.new_code_cell("answer = None  # your answer", metadata=exercise),
        v4.new_code_cell("answer = 1 + 1  # SECRET-SOLUTION", metadata=solution),
        v4.new_markdown_cell("Because SECRET-EXPLANATION.", metadata=solution),
        v4.new_code_cell("from nnspaces.exercises import check_integer as c\nc('1.1', answer, 2)"),
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
    assert "Exercise 1.1: not answered yet" in capsys.readouterr().out


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
