"""The library's layers, checked on its import graph: every ``import`` and ``from ... import``
in every module (deferred ones inside functions too), resolved to the module it names.

- the science (``paths``, ``paper``, ``files``, ``progress``, ``data``, ``models``,
  ``training``, ``spaces``, ``inversion``) never imports ``plots``, ``runner``, ``teaching``
  or ``cli``; ``plots`` never imports ``runner``, ``teaching`` or ``cli``; ``runner`` never
  imports ``teaching`` or ``cli``; nothing but ``__main__`` imports ``cli``;
- no cycles anywhere: a submodule imports its siblings, not its own package's ``__init__``;
- no module of the science reaches the judges (``inversion.judges``; ``inversion.verdicts`` is
  their side), even through others: an
  inversion, prior or selection rule cannot use a judge.

A planted upward import and a planted cycle, in a copy of the package, must fail the check.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

import nnspaces

PACKAGE = Path(nnspaces.__file__).resolve().parent
#: Layers from the bottom; a module may import its own layer and the ones below it.
LAYERS = (
    (
        "paths",
        "paper",
        "files",
        "progress",
        "data",
        "augment",
        "models",
        "loading",
        "training",
        "spaces",
        "inversion",
    ),  # fmt: skip
    ("plots",),
    ("runner",),
    ("teaching",),
    ("cli", "__main__"),
)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the library modules it imports (``from pkg import sub`` names ``pkg.sub``
    when ``sub`` is a module, else ``pkg``)."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    packages = {module_name(p, root) for p in root.rglob("__init__.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        here = name if name in packages else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name.split(".")[0] == root.name}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.split(".")[0] != root.name:
                    continue
                subs = [f"{target}.{a.name}" for a in node.names]
                found = [s for s in subs if s in files]
                edges |= set(found)
                if len(found) < len(subs):
                    edges.add(target)
        graph[name] = {e for e in edges if e in files and e != name}
    return graph


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    return -1  # the package's own __init__ (the front door) imports lazily, by name


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for a, targets in graph.items():
        for b in targets:
            la, lb = layer_of(a), layer_of(b)
            if lb > la >= 0 or (b.endswith(".cli") and not a.endswith("__main__")):
                bad.append(f"{a} imports {b}")
    return sorted(bad)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_is_in_a_layer():
    assert [m for m in import_graph(PACKAGE) if layer_of(m) < 0] == ["nnspaces"]


def test_imports_point_down_only():
    assert upward_imports(import_graph(PACKAGE)) == []


def test_no_import_cycles():
    assert cycles(import_graph(PACKAGE)) == []


def test_the_graph_sees_deferred_and_relative_imports():
    """The checker is only as good as its graph: known edges of each kind are in it."""
    graph = import_graph(PACKAGE)
    assert "nnspaces.runner.execute" in graph["nnspaces.runner.sweep.engine"]  # deferred
    assert "nnspaces.spaces.layer" in graph["nnspaces.inversion.exact"]  # from ..spaces.layer
    assert "nnspaces.paper" in graph["nnspaces.runner.numbers"]  # from .. import paper


JUDGES = "nnspaces.inversion.judges"
#: The judges' side: the panel and the verdicts it gives (which import each other freely).
JUDGE_SIDE = (JUDGES, "nnspaces.inversion.verdicts")


def reaching_judges(graph: dict[str, set[str]]) -> list[str]:
    """The science's modules (other than the judges) from which the judges can be imported."""
    reach: dict[str, set[str]] = {}

    def seen(v: str) -> set[str]:
        if v not in reach:
            reach[v] = set()
            for w in graph.get(v, ()):
                reach[v] |= {w} | seen(w)
        return reach[v]

    return sorted(
        m for m in graph if layer_of(m) == 0 and m not in JUDGE_SIDE and JUDGES in seen(m)
    )


def test_no_science_module_reaches_the_judges():
    graph = import_graph(PACKAGE)
    assert JUDGES in graph and reaching_judges(graph) == []


@pytest.fixture
def copy(tmp_path) -> Path:
    root = tmp_path / "nnspaces"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__", "templates"))
    return root


@pytest.mark.parametrize(
    "module, line, expected",
    [
        ("spaces/operators.py", "from ..runner.config import RunConfig", "operators imports"),
        ("inversion/natural.py", "    from ..plots.figures import save_figure", "natural imports"),
        ("plots/figures.py", "from ..runner import report", "figures imports"),
        ("runner/report.py", "from ..teaching import student", "report imports"),
        ("teaching/student.py", "import nnspaces.cli", "student imports nnspaces.cli"),
    ],
)
def test_a_planted_upward_import_fails(copy, module, line, expected):
    path = copy / module
    path.write_text(path.read_text() + f"\n\ndef _planted():\n    {line.strip()}\n")
    bad = upward_imports(import_graph(copy))
    assert len(bad) == 1 and expected in bad[0]


def test_a_planted_judge_import_fails_even_through_another_module(copy):
    path = copy / "augment.py"
    path.write_text(path.read_text() + "\n\ndef _planted():\n    from .inversion import judges\n")
    assert "nnspaces.inversion.robust" in reaching_judges(import_graph(copy))  # robust > augment


def test_a_planted_cycle_fails(copy):
    """models -> training is in one layer, so only the cycle check can catch it."""
    path = copy / "models.py"
    path.write_text(path.read_text() + "\n\nfrom .training import predict  # noqa\n")
    assert upward_imports(import_graph(copy)) == []
    assert any(
        "nnspaces.models" in c and "nnspaces.training" in c for c in cycles(import_graph(copy))
    )


def test_a_submodule_importing_its_own_package_is_a_cycle(copy):
    path = copy / "inversion" / "natural.py"
    path.write_text(path.read_text() + "\n\nfrom . import invert  # noqa\n")
    assert any("nnspaces.inversion" in c for c in cycles(import_graph(copy)))


def test_the_student_command_needs_no_torch():
    """``python -m nnspaces student`` imports the front door, the cli and the student edition
    only: none of them imports torch when loaded."""
    import subprocess
    import sys

    code = (
        "import sys, nnspaces, nnspaces.cli, nnspaces.teaching.student;"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_test_files_have_unique_basenames():
    """pytest imports each test file by its basename (the folders have no __init__.py): two
    files with one name stop the whole collection."""
    names = [p.name for p in (PACKAGE.parents[1] / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
