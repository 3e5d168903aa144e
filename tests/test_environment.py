"""environment.yml and pyproject.toml name the same packages (and the same pins)."""

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _environment_yml_pip_lines() -> list[str]:
    lines, in_pip = [], False
    for raw in (ROOT / "environment.yml").read_text().splitlines():
        line = raw.split("#")[0].rstrip()
        if line.strip() == "- pip:":
            in_pip = True
            continue
        if in_pip and line.strip().startswith("- "):
            lines.append(line.strip()[2:].strip())
        elif in_pip and line.strip():
            in_pip = False
    return lines


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_same_packages_and_pins():
    project = _project()
    extras = [r for reqs in project["optional-dependencies"].values() for r in reqs]
    deps = project["dependencies"] + [r for r in extras if _name(r) != "nnspaces"]
    env = [r for r in _environment_yml_pip_lines() if not r.startswith("-e")]
    assert "-e .[dev]" in _environment_yml_pip_lines()  # the lib itself, editable, with tools
    assert sorted(map(_name, env)) == sorted(map(_name, deps))
    pins = {_name(r): r.replace(" ", "") for r in deps if "==" in r}
    assert pins == {_name(r): r.replace(" ", "") for r in env if "==" in r}
    assert pins["torch"] == "torch==2.14.1" and pins["torchvision"] == "torchvision==0.29.1"
    assert "python=3.11" in (ROOT / "environment.yml").read_text()


# import names that differ from their distribution's name
_DISTRIBUTION = {"mlxtend": "mlxtend", "jupyter_client": "jupyter-client", "IPython": "ipython"}


def test_library_depends_on_what_it_imports_and_no_tools():
    """Every third-party module the library imports is a dependency, or (the Dask
    executor's) in the ``cluster`` extra; test and lint tools (and JupyterLab) are extras,
    not runtime dependencies."""
    deps = {_name(r) for r in _project()["dependencies"]}
    cluster = {_name(r) for r in _project()["optional-dependencies"]["cluster"]}
    imported = set()
    for path in (ROOT / "lib" / "nnspaces").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m != "nnspaces"}
    missing = {
        m for m in third_party if _DISTRIBUTION.get(m, m).replace("_", "-") not in deps | cluster
    }
    assert not missing, f"imported but not a dependency: {sorted(missing)}"
    assert not deps & {"pytest", "ruff", "playwright", "jupyterlab"}
    assert cluster == {"dask", "distributed"} and not deps & cluster
