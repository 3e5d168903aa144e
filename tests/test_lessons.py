"""Every lesson notebook has the lesson format (issue 8): a first cell with a title,
objectives, prerequisites linked to the glossary and a time estimate; at least three exercises,
each the five cells of :mod:`nnspaces.teaching.exercises`; a "What to notice" after
every figure; and, executed by the smoke run, every exercise's check prints "correct"."""

from __future__ import annotations

import ast
import json
import re

import nbformat
import pytest

from nnspaces.paths import NOTEBOOK_DIR
from nnspaces.runner.notebooks import lessons, runner_notebooks
from nnspaces.teaching.exercises import CORRECT, EXERCISES, TOO_EASY
from nnspaces.teaching.student import EXERCISE_TAG, SOLUTION_TAG

#: The lessons checked here: the notebook registry's.
LESSONS = [nb.name for nb in lessons()]
#: The glossary's anchors a prerequisite may link to.
ANCHORS = {
    "svd", "pseudo-inverse", "row-space", "null-space", "condition-number", "jacobian",
    "selu", "relu", "softmax", "residual", "signal-space", "pre-image", "gauss-newton",
    "levenberg-marquardt", "total-variation", "deepinversion", "projected-gradient",
    "convolution-operator", "attention",
}  # fmt: skip
NOTICE = "**What to notice.**"


def lesson_number(name: str) -> int:
    """fig3_... is lesson 3, lesson4_... lesson 4."""
    return int(re.match(r"(?:fig|lesson)(\d+)_", name).group(1))


def tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def read(name: str):
    return nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)


def assert_check_cell(ident: str, source: str) -> None:
    """The check cell is exactly ``ns.ex("<id>").check(answer, name=name, ...)`` with the
    names the exercise needs: no expected value, no expression that computes it."""
    (statement,) = ast.parse(source).body
    call = statement.value
    assert isinstance(statement, ast.Expr) and isinstance(call, ast.Call), ident
    assert isinstance(call.func, ast.Attribute) and call.func.attr == "check", ident
    made = call.func.value
    assert ast.unparse(made) == f"ns.ex({ident!r})", f"{ident}: {ast.unparse(made)}"
    assert [ast.unparse(a) for a in call.args] == ["answer"], ident
    passed = {k.arg: ast.unparse(k.value) for k in call.keywords}
    assert passed == {n: n for n in EXERCISES[ident].needs}, (ident, passed)


def exercises(nb, number: int) -> list[tuple[str, list]]:
    """(id, cells) of each exercise, checked to be the five-cell form; fails otherwise."""
    found = []
    cells = nb.cells
    for i, cell in enumerate(cells):
        head = re.match(r"\*\*Exercise (\d+)\.(\d+)\*\*", cell.source)
        if cell.cell_type != "markdown" or not head:
            continue
        ident = f"{head.group(1)}.{head.group(2)}"
        assert int(head.group(1)) == number, f"exercise {ident} in lesson {number}"
        assert tags(cell) == [EXERCISE_TAG], f"{ident}: the question is tagged {EXERCISE_TAG!r}"
        answer, solution = cells[i + 1], cells[i + 2]
        assert answer.cell_type == "code" and tags(answer) == [EXERCISE_TAG], ident
        assert re.match(r"answer = None\b", answer.source), f"{ident}: answer cell"
        assert solution.cell_type == "code" and tags(solution) == [SOLUTION_TAG], ident
        assigned = {
            t.id
            for node in ast.walk(ast.parse(solution.source))
            if isinstance(node, ast.Assign)
            for t in node.targets
            if isinstance(t, ast.Name)
        }
        assert "answer" in assigned, f"{ident}: the solution sets `answer`"
        j = i + 3
        if cells[j].cell_type == "markdown":
            assert tags(cells[j]) == [SOLUTION_TAG], f"{ident}: an explanation is a solution"
            j += 1
        check = cells[j]
        assert check.cell_type == "code" and not tags(check), f"{ident}: the check cell"
        assert_check_cell(ident, check.source)
        assert solution.source == EXERCISES[ident].solution, f"{ident}: the registry's solution"
        # no later cell may use `answer` (the student edition leaves it None)
        found.append((ident, cells[i : j + 1]))
    return found


def test_the_lessons_are_in_the_runners_list():
    assert [lesson_number(n) for n in LESSONS] == list(range(1, 7))
    assert all(n in runner_notebooks() for n in LESSONS)


def test_every_registered_exercise_is_in_its_lesson():
    found = [i for name in LESSONS for i, _ in exercises(read(name), lesson_number(name))]
    assert found == list(EXERCISES)


def test_minutes_per_lesson_come_from_the_registry():
    """The registry holds each lesson's minutes; the lesson's header and docs/TEACHING.md's
    table say the same (they disagreed before the registry)."""
    table = (NOTEBOOK_DIR.parent / "docs" / "TEACHING.md").read_text()
    for nb in lessons():
        header = read(nb.name).cells[0].source
        assert f"**Time.** About {nb.minutes} minutes" in header, nb.name
        row = next(line for line in table.splitlines() if f"| `{nb.name}` |" in line)
        assert row.rstrip().endswith(f"| {nb.minutes} min |"), nb.name


@pytest.mark.parametrize("name", LESSONS)
def test_a_lesson_opens_with_objectives_prerequisites_and_time(name):
    first = read(name).cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    text = first.source
    objectives = text.split("**Objectives.**", 1)[1].split("**Prerequisites.**", 1)[0]
    assert "After this lesson you can" in objectives
    assert len(re.findall(r"^- ", objectives, flags=re.M)) >= 3
    prerequisites = text.split("**Prerequisites.**", 1)[1].split("**Time.**", 1)[0]
    links = re.findall(r"\]\(\.\./docs/GLOSSARY\.md#([a-z-]+)\)", prerequisites)
    assert links and set(links) <= ANCHORS, links
    assert re.search(r"\*\*Time\.\*\* About \d+ minutes", text)


@pytest.mark.parametrize("name", LESSONS)
def test_a_lesson_has_three_exercises_in_the_five_cell_form(name):
    nb = read(name)
    found = exercises(nb, lesson_number(name))
    idents = [i for i, _ in found]
    assert len(found) >= 3 and len(set(idents)) == len(idents), idents
    n = lesson_number(name)
    assert idents == [f"{n}.{k}" for k in range(1, len(idents) + 1)]
    last = max(nb.cells.index(cells[-1]) for _, cells in found)
    later = [c for c in nb.cells if nb.cells.index(c) > last and c.cell_type == "code"]
    for c in later:
        names = {x.id for x in ast.walk(ast.parse(c.source)) if isinstance(x, ast.Name)}
        assert "answer" not in names, "a cell after the exercises uses `answer`"


@pytest.mark.parametrize("name", LESSONS)
def test_every_figure_is_followed_by_what_to_notice(name):
    """After each code cell that saves a figure, the next text says what to notice: a
    markdown cell, or a code cell that renders it from this run's numbers with ``Markdown``
    (code cells that print numbers may come between)."""
    cells = read(name).cells
    figures = [
        i for i, c in enumerate(cells) if c.cell_type == "code" and "save_figure(" in c.source
    ]
    assert figures, name

    def notices(c) -> bool:
        if c.cell_type == "markdown":
            return c.source.startswith(NOTICE)
        return re.search(r"Markdown\(\s*f?[\"']" + re.escape(NOTICE), c.source) is not None

    for i in figures:
        following = next(
            (c for c in cells[i + 1 :] if c.cell_type == "markdown" or notices(c)), None
        )
        assert following is not None and notices(following), (
            f"{name} cell {i} ({cells[i].id}) makes a figure with no {NOTICE} after it"
        )


def rendered(cell) -> str:
    """A cell as a reader sees it: its source and every text its outputs show."""
    parts = [cell.source]
    for o in cell.get("outputs", []):
        parts.append(o.get("text", ""))
        for kind in ("text/plain", "text/markdown", "text/html"):
            parts.append(str(o.get("data", {}).get(kind, "")))
    return "\n".join(parts)


def significant(form: str) -> int:
    """The significant digits of a printed number: 3 in "0.0128", "1.28%" and "-1.28e-05"."""
    return len(re.sub(r"[^\d]", "", form.split("e")[0]).lstrip("0"))


def shown_forms(value) -> list[str]:
    """How a printed number equal to ``value`` could look: an integer of 3 or more digits as
    is; a real number to 3 to 6 significant digits, and a fraction as a percentage with 2 or 3
    significant digits (fewer would match unrelated numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return []
    if float(value).is_integer():
        return [str(int(value))] if abs(value) >= 100 else []
    forms = {f for f in (f"{value:.{d}g}" for d in range(3, 7)) if significant(f) >= 3}
    if 0 < value < 1:
        percent = (f"{100 * value:.{d}g}%" for d in (2, 3))
        forms |= {f for f in percent if significant(f) >= 2}
    return sorted(forms)


def test_shown_forms():
    assert shown_forms(0.0127551) == ["0.012755", "0.0127551", "0.01276", "0.0128", "1.28%", "1.3%"]
    assert shown_forms(774) == ["774"] and shown_forms(16) == [] and shown_forms("b") == []
    assert "0.0%" not in shown_forms(7.756e-05)


def expected_values(out) -> dict[str, object]:
    """Each exercise's expected value, as the checks of the smoke run logged it."""
    lines = (out / "exercises.jsonl").read_text().splitlines()
    return {row["id"]: row["expected"] for row in map(json.loads, lines)}


@pytest.mark.notebook
@pytest.mark.parametrize("name", LESSONS)
def test_every_check_prints_correct_in_the_smoke_run(smoke_run, name):
    out, _ = smoke_run
    executed = nbformat.read(out / "notebooks" / f"{name}.ipynb", as_version=4)
    idents = [i for i, _ in exercises(read(name), lesson_number(name))]
    text = "".join(
        o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs
    )
    for ident in idents:
        assert f"Exercise {ident}: {CORRECT}." in text, f"{name}: exercise {ident}"
        assert f"Exercise {ident}: {TOO_EASY}" not in text, f"{name}: {ident}: a naive guess passes"


@pytest.mark.notebook
@pytest.mark.parametrize("name", LESSONS)
def test_no_expected_value_is_shown_before_its_check(smoke_run, name):
    """Rendered as the teacher edition runs (solutions aside, which the student edition
    drops), nothing before an exercise's check shows its expected value: no printed number,
    table entry or sentence to copy."""
    out, _ = smoke_run
    executed = nbformat.read(out / "notebooks" / f"{name}.ipynb", as_version=4)
    expected = expected_values(out)
    for ident, cells in exercises(read(name), lesson_number(name)):
        check = next(i for i, c in enumerate(executed.cells) if c.id == cells[-1].id)
        before = "\n".join(
            rendered(c) for c in executed.cells[:check] if SOLUTION_TAG not in tags(c)
        )
        for form in shown_forms(expected[ident]):
            hit = re.search(rf"(?<![\d.]){re.escape(form)}(?![\d])", before)
            assert hit is None, f"{name}: exercise {ident}'s answer is shown before it: {form}"
