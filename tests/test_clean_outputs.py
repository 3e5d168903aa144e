"""Clean sources and outputs: no control character in a notebook's source (a Python string
escape such as "\\r" of "\\rVert" turns a formula into "Vert"), and nothing in an executed
lesson or the report that a reader should not see: this machine's absolute paths, object reprs
("<... at 0x7f...>", "TrainedNetwork(...)"), or a bare True / False left under a cell."""

from __future__ import annotations

import re

import nbformat
import pytest

from nnspaces.paths import NOTEBOOK_DIR
from nnspaces.runner.notebooks import lessons

NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
LESSONS = [nb.name for nb in lessons()]
#: Control characters other than tab and newline.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
#: An object's default repr, or a dataclass repr of the library's run objects.
REPR = re.compile(r" at 0x[0-9a-f]+>|\b(TrainedNetwork|RunConfig|VBox|HBox)\(")


def control_characters(text: str) -> list[str]:
    """Each control character in ``text`` with a little context, e.g. ``'...$\\x07pprox...'``."""
    return [repr(text[max(m.start() - 10, 0) : m.end() + 10]) for m in CONTROL.finditer(text)]


def test_control_characters_are_found():
    assert control_characters("a \\rVert b") == []
    assert control_characters("a \rVert b") == ["'a \\rVert b'"]
    assert control_characters("f(x) \x07pprox 1") == ["'f(x) \\x07pprox 1'"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_no_control_character_in_a_notebook_source(path):
    nb = nbformat.read(path, as_version=4)
    found = {c.id: control_characters(c.source) for c in nb.cells if CONTROL.search(c.source)}
    assert not found, f"{path.name}: control characters in cells {found}"


def shown_text(output) -> str:
    """What an output shows as text: a stream, or the plain and markdown forms of a result."""
    if "text" in output:
        return output["text"]
    data = output.get("data", {})
    return "\n".join(str(data.get(k, "")) for k in ("text/plain", "text/markdown"))


def noise(text: str, out_dir: str) -> list[str]:
    """What a reader should not see in ``text``: absolute paths (of the run's folder, the
    repository, a home or temporary folder), object reprs, a bare True or False."""
    found = []
    for path in {out_dir, str(NOTEBOOK_DIR.parent), "/tmp/", "/home/", "/root/"}:
        if path in text:
            found.append(f"absolute path {path}")
    found += [f"repr {m.group(0)!r}" for m in REPR.finditer(text)]
    if text.strip() in ("True", "False"):
        found.append(f"bare {text.strip()}")
    return found


def test_noise_is_found():
    assert "absolute path /tmp/x" in noise("saved /tmp/x/metrics/fig1.json", "/tmp/x")
    assert noise("<pandas.io.formats.style.Styler at 0x7f654f94b250>", "/o") == [
        "repr ' at 0x7f654f94b250>'"
    ]
    assert noise("TrainedNetwork(fcnn1, epochs=1)", "/o") == ["repr 'TrainedNetwork('"]
    assert noise("True\n", "/o") == ["bare True"]
    assert noise("saved metrics/fig1.json; True positives: 3", "/o") == []


#: The cell that prints the run's configuration (checked apart: its text is the runner's).
CONFIG_CELL = "print(ctx.config)"


def lesson_noise(out, name: str, config_cell: bool) -> dict[str, list[str]]:
    """The noise under each cell of an executed lesson: of the configuration cell only, or of
    every other cell."""
    executed = nbformat.read(out / "notebooks" / f"{name}.ipynb", as_version=4)
    return {
        f"cell {i} ({c.id})": noise(shown_text(o), str(out))
        for i, c in enumerate(executed.cells)
        if (CONFIG_CELL in c.source) == config_cell
        for o in c.get("outputs", [])
        if noise(shown_text(o), str(out))
    }


@pytest.mark.notebook
@pytest.mark.parametrize("name", LESSONS)
def test_no_path_repr_or_bare_boolean_in_an_executed_lesson(smoke_run, name):
    out, _ = smoke_run
    found = lesson_noise(out, name, config_cell=False)
    assert not found, f"{name}: {found}"


@pytest.mark.notebook
@pytest.mark.parametrize("name", LESSONS)
def test_the_run_configuration_is_printed_without_paths(smoke_run, name):
    out, _ = smoke_run
    found = lesson_noise(out, name, config_cell=True)
    assert not found, f"{name}: {found}"
