"""A sweep's aggregate: every metric of every run in one tidy table, the spread across seeds,
and the sweep's report page.

:func:`write_sweep_report` reads ``results/<sweep>/`` (its ``sweep.json`` and each finished
run's ``metrics/*.json``) and writes

    table.csv     one row per run and metric (every number of every metrics file)
    summary.csv   per group of runs that differ only in their seed: n, mean, standard
                  deviation and a 95% interval of each quantity, with the paper's value
    figures/      the spread of accuracies, condition numbers, inversion errors and
                  recognition rates, one dot per run
    index.html    all of it, with every run's status, error and own report

The quantities are read through :mod:`nnspaces.runner.metrics` (the metrics files' one reader), the
paper's numbers from :mod:`nnspaces.paper`.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import io
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from ... import paper
from ...files import atomic_write
from ...paths import TEMPLATES
from ..metrics import inversion_table, key_numbers, read_metrics, recognition_table

#: The quantities shown with their spread, in this order; inversion errors on a log scale.
KINDS = ("test accuracy", "condition number", "inversion error", "recognised")
LOG_KINDS = ("inversion error",)
#: The grid parameter whose values are repetitions rather than settings.
REPEAT = "seed"


@dataclass(frozen=True)
class Quantity:
    """One number of one run: ``kind`` (one of :data:`KINDS`), on ``network``, ``name``
    (the method or the layer), with the paper's value where the paper gives one."""

    kind: str
    network: str
    name: str
    value: float | None
    paper: float | None = None


def quantities(metrics: Mapping[str, dict]) -> list[Quantity]:
    """A run's accuracies and condition numbers (with the paper's), and per network and
    method the median inversion error and the fraction of digits recognised."""
    out = []
    for k in key_numbers(metrics):
        network, _, rest = k.label.partition(" ")
        kind = "test accuracy" if rest == "test accuracy" else "condition number"
        name = rest.removesuffix("test accuracy").removesuffix(" condition number")
        out.append(Quantity(kind, network, name, k.value, k.reference.value))
    fig3, lesson5 = metrics.get("fig3"), metrics.get("lesson5")
    for kind, table in (
        ("inversion error", inversion_table(fig3, lesson5)[1]),
        ("recognised", recognition_table(fig3, lesson5)),
    ):
        out += [
            Quantity(kind, net, method, v) for method, by in table.items() for net, v in by.items()
        ]
    return out


def _leaves(obj: Any, path: str = "") -> Iterator[tuple[str, float]]:
    """Every number in a metrics file as (path, value); a list of numbers gives one per
    element (``path[i]``); settings and text are not metrics."""
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if key != "settings":
                yield from _leaves(value, f"{path}/{key}" if path else str(key))
    elif isinstance(obj, list):
        if all(isinstance(v, int | float | bool) or v is None for v in obj):
            for i, v in enumerate(obj):
                if v is not None:
                    yield f"{path}[{i}]", float(v)
    elif isinstance(obj, int | float | bool):
        yield path, float(obj)


def tidy_rows(metrics: Mapping[str, dict]) -> list[dict[str, Any]]:
    """Every number of a run's metrics files: file, network (where the path names one),
    metric, value."""
    rows = []
    for file, content in metrics.items():
        for path, value in _leaves(content):
            network = content.get("network", "") if isinstance(content, Mapping) else ""
            parts = path.split("/")
            if parts[0] == "networks" and len(parts) > 2:
                network, path = parts[1], "/".join(parts[2:])
            rows.append({"file": file, "network": network, "metric": path, "value": value})
    return rows


@dataclass(frozen=True)
class Spread:
    """``n`` values' mean, sample standard deviation and 95% interval for the mean
    (Student's t; None with fewer than two values)."""

    n: int
    mean: float | None
    std: float | None
    low: float | None
    high: float | None


def spread(values: Sequence[float | None]) -> Spread:
    """The spread of the finite ``values`` (missing and infinite ones are not counted)."""
    from scipy import stats

    x = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if len(x) == 0:
        return Spread(0, None, None, None, None)
    mean = float(x.mean())
    if len(x) < 2:
        return Spread(1, mean, None, None, None)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.975, len(x) - 1)) * std / math.sqrt(len(x))
    return Spread(len(x), mean, std, mean - half, mean + half)


def _csv(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _group_label(group: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} = {v}" for k, v in group.items()) or "all runs"


def collect(folder: Path) -> dict[str, Any]:
    """Everything the sweep report shows, read from ``folder``: the spec, per run its
    status and quantities, the tidy rows and the spreads."""
    from .folder import read_record, run_folder
    from .grid import SweepSpec, plan

    spec = SweepSpec(**json.loads((folder / "sweep.json").read_text()))
    keys = list(spec.grid)
    group_keys = [k for k in keys if k != REPEAT]
    runs, tidy, values = [], [], {}
    for run in plan(spec):
        record = read_record(folder, run.id) or {}
        status = record.get("status", "not run")
        ok = status == "ok"
        metrics = read_metrics(run_folder(folder, run.id)) if ok else {}
        runs.append(
            {
                "id": run.id,
                "point": run.point,
                "status": status,
                "error": record.get("error", "") or run.error,
                "seconds": record.get("seconds"),
                "report": f"runs/{run.id}/index.html" if ok else None,
            }
        )
        tag = {"run": run.id, **{k: run.point[k] for k in keys}}
        tidy += [{**tag, **row} for row in tidy_rows(metrics)]
        group = tuple((k, run.point[k]) for k in group_keys)
        for q in quantities(metrics):
            values.setdefault(group, {}).setdefault((q.kind, q.network, q.name), []).append(q)
    summary = []
    for group, by in values.items():
        for (kind, network, name), qs in by.items():
            s = spread([q.value for q in qs])
            if s.n == 0:  # a quantity of a notebook this sweep did not run
                continue
            summary.append(
                {
                    **dict(group),
                    "group": _group_label(dict(group)),
                    "kind": kind,
                    "network": network,
                    "name": name,
                    "values": [q.value for q in qs],
                    "paper": qs[0].paper,
                    **dataclasses.asdict(s),
                }
            )
    return {
        "spec": spec,
        "keys": keys,
        "group_keys": group_keys,
        "runs": runs,
        "tidy": tidy,
        "summary": summary,
    }


def write_sweep_report(folder: str | Path) -> Path:
    """Write the sweep's table.csv, summary.csv, figures and index.html; return its path."""
    import matplotlib.pyplot as plt

    from ...plots.figures import save_figure, spread_figure

    folder = Path(folder)
    if not (folder / "sweep.json").is_file():
        raise FileNotFoundError(f"{folder} holds no sweep.json; run `python -m nnspaces sweep`")
    data = collect(folder)
    keys, group_keys = data["keys"], data["group_keys"]
    atomic_write(
        folder / "table.csv",
        _csv(data["tidy"], ["run", *keys, "file", "network", "metric", "value"]),
    )
    stat_cols = ["n", "mean", "std", "low", "high", "paper"]
    atomic_write(
        folder / "summary.csv",
        _csv(
            [
                {k: r[k] for k in [*group_keys, "kind", "network", "name", *stat_cols]}
                for r in data["summary"]
            ],
            [*group_keys, "kind", "network", "name", *stat_cols],
        ),
    )
    figures = []
    for kind in KINDS:
        if any(r["kind"] == kind and r["n"] for r in data["summary"]):
            name = kind.replace(" ", "_")
            fig = spread_figure(data["summary"], kind, log=kind in LOG_KINDS)
            save_figure(fig, folder / "figures" / f"{name}.png")
            plt.close(fig)
            figures.append({"kind": kind, "src": f"figures/{name}.png"})
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    page = env.get_template("sweep.html").render(
        spec=data["spec"],
        written=_dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        citation=paper.CITATION,
        keys=keys,
        runs=data["runs"],
        failed=[r for r in data["runs"] if r["status"] != "ok"],
        groups=_by_group(data["summary"]),
        figures=figures,
        fmt=_fmt,
    )
    return atomic_write(folder / "index.html", page)


def _by_group(summary: list[dict]) -> list[tuple[str, list[dict]]]:
    groups: dict[str, list[dict]] = {}
    for r in summary:
        groups.setdefault(r["group"], []).append(r)
    order = {k: i for i, k in enumerate(KINDS)}
    return [(g, sorted(rs, key=lambda r: order[r["kind"]])) for g, rs in groups.items()]


def _fmt(value: float | None, kind: str = "") -> str:
    if value is None:
        return "-"
    if kind == "test accuracy" or kind == "recognised":
        return f"{100 * value:.1f}%"
    return f"{value:.3g}"
