"""environment.yml and pyproject.toml name the same packages (and the same pins)."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


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


def test_same_packages_and_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"]
    env = [r for r in _environment_yml_pip_lines() if not r.startswith("-e")]
    assert "-e ." in _environment_yml_pip_lines()  # the lib itself, editable
    assert sorted(map(_name, env)) == sorted(map(_name, deps))
    pins = {_name(r): r.replace(" ", "") for r in deps if "==" in r}
    assert pins == {_name(r): r.replace(" ", "") for r in env if "==" in r}
    assert pins["torch"] == "torch==2.14.1" and pins["torchvision"] == "torchvision==0.29.1"
    assert "python=3.11" in (ROOT / "environment.yml").read_text()
