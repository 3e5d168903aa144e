"""No number about a run is typed by hand into a notebook's markdown: every number there is a
definition (an architecture's size, a formula's constant), the paper's own, or a lesson's
label and time (the registry's). Numbers about a run are rendered by code cells and claims."""

from __future__ import annotations

import json
import re

import pytest

from nnspaces import paper
from nnspaces.paths import NOTEBOOK_DIR, REPO_ROOT
from nnspaces.runner.notebooks import NOTEBOOKS

NUMBER = re.compile(r"(?<![\w.\-/^{])(\d[\d,]*\d|\d)(\.\d+)?(e[-+]?\d+)?(\\?%?)")
#: Numbers that are definitions, not results, and why.
DEFINITIONS = {
    "784": "28 x 28 pixels",
    "774": "784 - 10: fcnn1's null space",
    "28": "an image's side",
    "256": "fcnn5's widths",
    "128": "fcnn5's widths",
    "32": "fcnn5's widths",
    "64": "ResNet18's / the ViT's channels",
    "16": "a head's width",
    "48": "64 - 16",
    "49": "a 7 x 7 kernel",
    "512": "ResNet18's layer4 channels",
    "262144": "512 x 512",
    "262,144": "512 x 512",
    "1.012": "(512 + 3) / (512 - 3)",
    "3136": "56 x 56 (an operator's size)",
    "5184": "64 x 81",
    "81": "9 x 9",
    "3200": "128 x 25",
    "25": "5 x 5; the 25th percentile",
    "1984": "5184 - 3200",
    "75": "the 75th percentile",
    "36": "an exercise's image side",
    "224": "ImageNet's image side",
    "4096": "64 x 64 kernels",
    "1.758": "SELU's lower bound",
    "1.0507009873554805": "SELU's lambda",
    "1.6732632423543772": "SELU's alpha",
    "2.197": "log 9",
    "1.3%": "10 / 784",
    "0.9": "the probability level; SGD's momentum",
    "2603.20461": "an arXiv id",
    "50,000": "the paper's training images",
    "100": "the paper's +training steps",
    "15": "lines",
    "30": "minutes (the explorer's suggestions)",
    "20": "the paper's epochs; ResNet18's convolutions",
}
#: "Exercise 4.2", "About 30 minutes": a label, and the registry's time (checked below).
LABELS = re.compile(r"(?i)exercises? \d\.\d|about \d+ minutes|\d+th percentile")


def _paper_numbers() -> set[str]:
    values = [r.value for r in (*paper.ACCURACY.values(), *paper.CONDITION_NUMBER.values())]
    values += [v for v in (*paper.TRAINING.values(), *paper.PLUS_TRAINING.values())]
    return {f"{v:g}" for v in values if isinstance(v, int | float)}


def numbers_in(text: str) -> list[str]:
    text = LABELS.sub("", text)
    out = []
    for m in NUMBER.finditer(text):
        whole = m[1] + (m[2] or "") + (m[3] or "")
        if whole.isdigit() and int(whole) <= 10:
            continue  # counts: digits, layers, lessons
        out.append(whole + m[4].lstrip("\\"))
    return out


def unexplained(text: str) -> list[str]:
    allowed = set(DEFINITIONS) | _paper_numbers()
    return [n for n in numbers_in(text) if n not in allowed]


@pytest.mark.parametrize("path", sorted(NOTEBOOK_DIR.glob("*.ipynb")), ids=lambda p: p.stem)
def test_markdown_cells_hold_no_number_about_a_run(path):
    cells = json.loads(path.read_text())["cells"]
    found = {
        c.get("id"): bad
        for c in cells
        if c["cell_type"] == "markdown" and (bad := unexplained("".join(c["source"])))
    }
    assert found == {}, f"{path.stem}: numbers typed by hand (render them, or define them): {found}"


def test_the_scan_catches_numbers_about_a_run():
    assert unexplained("the first layer's 528-dimensional null space") == ["528"]
    assert unexplained("ResNet18 reaches 97.3% here, in 111 s") == ["97.3%", "111"]
    assert unexplained("differences 0.72 against 594") == ["0.72", "594"]
    assert unexplained("a $784 \\times 256$ layer, Exercise 4.2, About 30 minutes") == []
    assert unexplained("the paper's 7.22 and 1.07") == []


def test_each_lessons_time_is_the_registrys_in_its_header_and_teaching_md():
    teaching = (REPO_ROOT / "docs" / "TEACHING.md").read_text()
    for nb in NOTEBOOKS:
        if nb.minutes is None:
            continue
        head = "".join(
            json.loads((NOTEBOOK_DIR / f"{nb.name}.ipynb").read_text())["cells"][0]["source"]
        )
        assert f"About {nb.minutes} minutes" in head, nb.name
        row = next((ln for ln in teaching.splitlines() if f"`{nb.name}`" in ln), None)
        if row is not None:
            assert row.rstrip(" |").endswith(f"{nb.minutes} min"), (nb.name, row)
