"""A sweep's grid: the spec (from TOML or the command line) and its runs, one RunConfig
each (see :mod:`nnspaces.runner.sweep.engine`)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import PROFILES, RunConfig, check_folder_name
from ..notebooks import names_of_kind

#: The notebooks a sweep runs unless told otherwise: the paper's figures.
FIGURE_NOTEBOOKS = tuple(names_of_kind("figure"))
#: What a grid or the fixed values may set: every RunConfig field but the output folder.
PARAMETERS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.name != "out_dir")


# --------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class SweepSpec:
    """A sweep: ``grid`` (parameter -> values, every combination runs) over ``profile`` with
    ``fixed`` values, through ``notebooks``; written to ``results/<name>``."""

    name: str
    profile: str = "default"
    grid: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    notebooks: tuple[str, ...] = FIGURE_NOTEBOOKS

    def __post_init__(self) -> None:
        check_folder_name("sweep name", self.name)
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; allowed: {', '.join(PROFILES)}")
        for label, keys in (("grid", self.grid), ("fixed", self.fixed)):
            unknown = sorted(set(keys) - set(PARAMETERS))
            if unknown:
                raise ValueError(
                    f"unknown {label} parameter(s) {unknown}; allowed: {', '.join(PARAMETERS)}"
                )
        both = sorted(set(self.grid) & set(self.fixed))
        if both:
            raise ValueError(f"{both} given both in the grid and as fixed values; give one")
        grid = {}
        for key, values in self.grid.items():
            if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
                raise ValueError(f"grid {key}={values!r} must be a non-empty list of values")
            grid[key] = list(values)
        object.__setattr__(self, "grid", grid)
        object.__setattr__(self, "fixed", dict(self.fixed))
        from ..execute import available_notebooks

        names = available_notebooks()
        notebooks = (self.notebooks,) if isinstance(self.notebooks, str) else self.notebooks
        unknown = [n for n in notebooks if n not in names]
        if unknown or not notebooks:
            raise ValueError(f"unknown notebook(s) {unknown}; allowed: {', '.join(names)}")
        object.__setattr__(self, "notebooks", tuple(notebooks))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "profile": self.profile,
            "grid": self.grid,
            "fixed": self.fixed,
            "notebooks": list(self.notebooks),
        }


def load_spec(path: str | Path, **override: Any) -> SweepSpec:
    """A SweepSpec from a TOML file (keys ``name``, ``profile``, ``notebooks``, tables
    ``[grid]`` and ``[fixed]``; ``name`` defaults to the file's stem), with ``override``'s
    values that are not None in place of the file's."""
    path = Path(path)
    try:
        spec = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"sweep file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"sweep file {str(path)!r} is not valid TOML: {e}") from None
    allowed = {f.name for f in dataclasses.fields(SweepSpec)}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; allowed: {', '.join(sorted(allowed))}")
    spec.setdefault("name", path.stem)
    spec.update({k: v for k, v in override.items() if v is not None})
    return SweepSpec(**spec)


def parse_value(text: str) -> Any:
    """A command-line value: an integer, a float, true/false, else the text itself."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def parse_assignment(text: str, *, many: bool) -> tuple[str, Any]:
    """``key=value`` (``many``: ``key=a,b,c`` or an integer range ``key=0..4``, inclusive)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        form = "key=a,b,c or key=0..4" if many else "key=value"
        raise ValueError(f"{text!r} is not {form}")
    key = key.strip()
    if not many:
        return key, parse_value(value)
    bounds = re.fullmatch(r"\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*", value)
    if bounds:
        lo, hi = int(bounds[1]), int(bounds[2])
        if hi < lo:
            raise ValueError(f"{text!r}: the range {lo}..{hi} is empty")
        return key, list(range(lo, hi + 1))
    return key, [parse_value(v) for v in value.split(",")]


@dataclass(frozen=True)
class PlannedRun:
    """One grid point: its folder name ``id``, its ``point`` (the grid's values), its
    ``config``, or ``error`` when those values are invalid."""

    id: str
    point: dict[str, Any]
    config: RunConfig | None
    error: str = ""

    @property
    def parameters(self) -> dict[str, Any] | None:
        """The notebook parameters (out_dir left out: it is the sweep's business)."""
        return None if self.config is None else {**self.config.parameters(), "out_dir": None}


def _slug(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text) or "x"


def plan(spec: SweepSpec) -> list[PlannedRun]:
    """Every grid point of ``spec`` in order, with its RunConfig or why it has none."""
    runs, keys = [], list(spec.grid)
    for values in itertools.product(*spec.grid.values()):
        point = dict(zip(keys, values, strict=True))
        run_id = "_".join(f"{k}-{_slug(v)}" for k, v in point.items()) or "run"
        given = {**spec.fixed, **point}
        profile = given.pop("profile", spec.profile)
        try:
            config, error = RunConfig.from_profile(profile, **given), ""
        except (ValueError, TypeError) as e:
            config, error = None, f"invalid parameters: {e}"
        runs.append(PlannedRun(run_id, point, config, error))
    ids = [r.id for r in runs]
    twins = sorted({i for i in ids if ids.count(i) > 1})
    if twins:
        raise ValueError(f"grid values that give the same run folder: {twins}; make them distinct")
    return runs
