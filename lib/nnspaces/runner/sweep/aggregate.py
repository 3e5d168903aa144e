"""A sweep's aggregate: every metric of every run in one tidy table, the spread across seeds,
and the sweep's report page.

:func:`write_sweep_report` reads ``results/<sweep>/`` (its ``sweep.json`` and each finished
run's ``metrics/*.json``) and writes

    table.csv     one row per run and metric (every number of every metrics file)
    summary.csv   per group of runs that differ only in their seed: n, mean, standard
                  deviation and a 95% interval of each quantity, with the paper's value
    figures/      the spread of accuracies, condition numbers, inversion errors and
                  recognition rates, one dot per run
    claims.csv    per group of runs and claim (ours and the paper's) and subject: in how
                  many of the group's runs it holds (k of n)
    index.html    all of it, with every run's status, error and own report

The quantities are read through :mod:`nnspaces.runner.metrics` (the metrics files' one reader), the
paper's numbers from :mod:`nnspaces.paper`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ... import paper
from ...files import atomic_write, leaves
from ..decide import claims, evaluate_claims
from ..html import now, write_page
from ..ledger import FAILS, HOLDS, paper_ledger
from ..numbers import KEY_KINDS, inversion_table, key_numbers, read_metrics, verdict_table

#: The quantities shown with their spread, in this order; inversion errors on a log scale.
KINDS = (*KEY_KINDS, "inversion error", "judged digits")
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
    method the median inversion error; per image set the fraction of its digits that every
    judge reads as intended (:func:`~..numbers.verdict_table`)."""
    out = [
        Quantity(k.kind, k.network, k.name, k.value, k.reference.value)
        for k in key_numbers(metrics)
    ]
    fig3, lesson5 = metrics.get("fig3"), metrics.get("lesson5")
    for kind, table in (
        ("inversion error", inversion_table(fig3, lesson5)[1]),
        ("judged digits", verdict_table(metrics)),
    ):
        out += [
            Quantity(kind, net, method, v) for method, by in table.items() for net, v in by.items()
        ]
    return out


def _is_metric(path: tuple) -> bool:
    """Settings are not metrics, and lists are leaves (a list of numbers gives one per entry)."""
    return path[-1] != "settings" and not isinstance(path[-1], int)


def _number(v: Any) -> bool:
    return isinstance(v, int | float | bool)


def tidy_rows(metrics: Mapping[str, dict]) -> list[dict[str, Any]]:
    """Every number of a run's metrics files: file, network (where the path names one),
    metric, value. A list of numbers gives one row per entry (``metric[i]``; missing ones
    are left out); other lists and text are not metrics."""
    rows = []
    for file, content in metrics.items():
        for keys, value in leaves(content, keep=_is_metric):
            path = "/".join(map(str, keys))
            if _number(value):
                numbers = [(path, value)]
            elif isinstance(value, list) and all(_number(v) or v is None for v in value):
                numbers = [(f"{path}[{i}]", v) for i, v in enumerate(value) if v is not None]
            else:
                continue
            network = content.get("network", "")
            if keys[0] == "networks" and len(keys) > 2:
                network = keys[1]
                numbers = [(p.split("/", 2)[2], v) for p, v in numbers]
            rows += [
                {"file": file, "network": network, "metric": p, "value": float(v)}
                for p, v in numbers
            ]
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
    x = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return Spread(0, None, None, None, None)
    mean = float(x.mean())
    if len(x) < 2:
        return Spread(1, mean, None, None, None)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.975, len(x) - 1)) * std / math.sqrt(len(x))
    return Spread(len(x), mean, std, mean - half, mean + half)


def summarise(table: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Per group of ``table``'s rows with the same ``by`` (in the order the groups first
    appear): ``values`` (every row's ``value``), ``paper`` (the first row's) and the
    :class:`Spread` of the values; groups with no finite value are left out."""
    rows = []
    for key, group in table.groupby(list(by), sort=False, dropna=False):
        s = spread(group["value"].tolist())
        if s.n:
            values = group["value"].tolist()
            first = group["paper"].iloc[0]
            rows.append(
                {
                    **dict(zip(by, key, strict=True)),
                    "values": values,
                    "paper": None if pd.isna(first) else first,
                    **dataclasses.asdict(s),
                }
            )
    return pd.DataFrame(rows, columns=[*by, "values", "paper", *Spread.__dataclass_fields__])


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
    runs, tidy, values, verdicts = [], [], [], []
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
        group = {k: run.point[k] for k in group_keys}
        values += [{**group, **dataclasses.asdict(q)} for q in quantities(metrics)]
        verdicts += [{**group, **row} for row in claim_rows(metrics)] if metrics else []
    by = [*group_keys, "kind", "network", "name"]
    table = pd.DataFrame(values, columns=[*by, "value", "paper"], dtype=object)
    summary = summarise(table, by)
    labels = [_group_label({k: r[k] for k in group_keys}) for r in summary.to_dict("records")]
    summary.insert(len(group_keys), "group", labels)
    # every group's rows together, the groups in the order they first appear
    first = {g: i for i, g in enumerate(dict.fromkeys(labels))}
    summary = summary.sort_values("group", key=lambda g: g.map(first), kind="stable")
    return {
        "spec": spec,
        "keys": keys,
        "group_keys": group_keys,
        "runs": runs,
        "tidy": tidy,
        "claims": claims_k_of_n(verdicts, group_keys),
        "summary": [
            {k: None if _missing(v) else v for k, v in r.items()}
            for r in summary.to_dict("records")
        ],
    }


def claim_rows(metrics: Mapping[str, dict]) -> list[dict[str, Any]]:
    """A run's verdicts: every claim of ours (``claims.py``) per subject, and every claim of
    the paper's ledger that is testable on the run: ``source`` ("ours" or "paper"), ``claim``,
    ``subject``, ``holds``."""
    ours = evaluate_claims(metrics)
    says = {c.id: c.says for c in claims().values()}
    rows = [
        {
            "source": "ours",
            "claim": r.id,
            "subject": r.subject,
            "holds": bool(r.holds),
            "says": says[r.id],
        }
        for r in ours.itertuples()
    ]
    ledger = paper_ledger(metrics)
    rows += [
        {
            "source": "paper",
            "claim": r.id,
            "subject": "run",
            "holds": r.verdict == HOLDS,
            "says": r.says,
        }
        for r in ledger.itertuples()
        if r.verdict in (HOLDS, FAILS)
    ]
    return rows


def claims_k_of_n(verdicts: list[dict[str, Any]], group_keys: Sequence[str]) -> list[dict]:
    """Per group of runs (e.g. a dataset), claim and subject (e.g. a network): ``k`` runs
    where it holds of the ``n`` that decided it."""
    by = [*group_keys, "source", "claim", "subject", "says"]
    if not verdicts:
        return []
    frame = pd.DataFrame(verdicts)
    out = frame.groupby(by, sort=False, dropna=False)["holds"].agg(k="sum", n="count")
    return [{**r, "k": int(r["k"]), "n": int(r["n"])} for r in out.reset_index().to_dict("records")]


def robustness(claims_rows: list[dict], group_keys: Sequence[str]) -> list[dict]:
    """One row per claim and subject across the groups (e.g. datasets): ``source``,
    ``claim``, ``subject``, ``says``, ``k_of_n`` (per group label, "k of n") and ``pattern``:
    whether it holds in every run, in none, on some groups and not others, or depends on the
    seed within a group (then the pattern names those groups)."""
    found: dict[tuple, dict[str, tuple[int, int]]] = {}
    says: dict[tuple, str] = {}
    for r in claims_rows:
        key = (r["source"], r["claim"], r["subject"])
        found.setdefault(key, {})[_group_label({k: r[k] for k in group_keys})] = (r["k"], r["n"])
        says[key] = r["says"]
    return [
        {
            "source": source,
            "claim": claim_id,
            "subject": subject,
            "says": says[(source, claim_id, subject)],
            "k_of_n": {g: f"{k} of {n}" for g, (k, n) in by.items()},
            "pattern": _pattern(by),
        }
        for (source, claim_id, subject), by in found.items()
    ]


def _pattern(by: Mapping[str, tuple[int, int]]) -> str:
    every = [g for g, (k, n) in by.items() if k == n]
    none = [g for g, (k, n) in by.items() if k == 0]
    seed = [g for g in by if g not in every and g not in none]
    if seed:
        return "depends on the seed (" + "; ".join(seed) + ")"
    if not none:
        return "holds in every run"
    if not every:
        return "holds in no run"
    return f"holds in every run of {'; '.join(every)}, in none of {'; '.join(none)}"


def _missing(v: Any) -> bool:
    return not isinstance(v, list) and v is not None and pd.isna(v)


def _csv(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    return pd.DataFrame(rows, columns=list(columns)).to_csv(index=False, lineterminator="\n")


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
    columns = [*group_keys, "kind", "network", "name", "n", "mean", "std", "low", "high", "paper"]
    atomic_write(folder / "summary.csv", _csv(data["summary"], columns))
    claim_columns = [*group_keys, "source", "claim", "subject", "k", "n", "says"]
    atomic_write(folder / "claims.csv", _csv(data["claims"], claim_columns))
    figures = []
    for kind in KINDS:
        if any(r["kind"] == kind and r["n"] for r in data["summary"]):
            name = kind.replace(" ", "_")
            fig = spread_figure(data["summary"], kind, log=kind in LOG_KINDS)
            save_figure(fig, folder / "figures" / f"{name}.png")
            plt.close(fig)
            figures.append({"kind": kind, "src": f"figures/{name}.png"})
    return write_page(
        folder / "index.html",
        "sweep.html",
        spec=data["spec"],
        written=now(),
        citation=paper.CITATION,
        keys=keys,
        runs=data["runs"],
        failed=[r for r in data["runs"] if r["status"] != "ok"],
        groups=_by_group(data["summary"]),
        claims=robustness(data["claims"], group_keys),
        group_labels=list(
            dict.fromkeys(_group_label({k: r[k] for k in group_keys}) for r in data["claims"])
        ),
        figures=figures,
        fmt=_fmt,
    )


def _by_group(summary: list[dict]) -> list[tuple[str, list[dict]]]:
    groups: dict[str, list[dict]] = {}
    for r in summary:
        groups.setdefault(r["group"], []).append(r)
    order = {k: i for i, k in enumerate(KINDS)}
    return [(g, sorted(rs, key=lambda r: order[r["kind"]])) for g, rs in groups.items()]


def _fmt(value: float | None, kind: str = "") -> str:
    if value is None:
        return "-"
    if kind == "test accuracy" or kind == "judged digits":
        return f"{100 * value:.1f}%"
    return f"{value:.3g}"
