"""The README's result tables, written from a run's metrics, never typed by hand.

    python -m nnspaces readme --run results/default

reads ``<run>/metrics/*.json`` through :mod:`nnspaces.runner.metrics` (the metrics files' one
reader), saves what the tables show as ``docs/readme_numbers.json`` (the snapshot), and
rewrites the part of ``README.md`` between :data:`START` and :data:`END` from that snapshot.
``tests/test_readme.py`` renders the snapshot again and checks that the README holds exactly
that, so the README cannot drift from the numbers it was made from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..files import atomic_write, write_json
from ..paths import README, README_SNAPSHOT
from .decide import evaluate_claims
from .ledger import paper_ledger
from .metrics import Fig3Metrics, Lesson5Metrics
from .notebooks import lessons
from .numbers import (
    VERDICTS_PREFIX,
    inversion_table,
    key_numbers,
    read_back,
    read_metrics,
    verdict_table,
)

SNAPSHOT = README_SNAPSHOT
START = "<!-- nnspaces:numbers:start (written by `python -m nnspaces readme`; do not edit) -->"
END = "<!-- nnspaces:numbers:end -->"
LESSONS_START = "<!-- nnspaces:lessons:start (from the notebook registry; do not edit) -->"
LESSONS_END = "<!-- nnspaces:lessons:end -->"


def snapshot(out_dir: str | Path) -> dict[str, Any]:
    """What the README's tables show, read from a run's metrics files."""
    out_dir = Path(out_dir)
    metrics = read_metrics(out_dir)
    if not metrics:
        raise FileNotFoundError(f"{out_dir}/metrics holds no metrics: run the notebooks first")
    inside = verdict_table(metrics)
    networks, table = inversion_table(metrics.get("fig3"), metrics.get("lesson5"))
    lesson5 = read_back(Lesson5Metrics, metrics.get(Lesson5Metrics.name))
    natural = lesson5.natural if lesson5 else {}
    data = next(iter(metrics.values()))
    return {
        "run": {k: data.get(k) for k in ("profile", "dataset", "n_train", "n_test", "source")},
        "key_numbers": [
            {"label": k.label, "text": k.text, "paper": k.reference.value, "percent": k.percent}
            for k in key_numbers(metrics)
        ],
        "networks": networks,
        "inversion": table,
        "box_reached": box_reached(metrics.get("fig3")),
        "natural": {
            net: {k: n.get(k) for k in ("n_recognised", "chosen_weight", "targets")}
            for net, n in natural.items()
        },
        "ledger": paper_ledger(metrics)[["says", "source", "this_run", "verdict", "why"]].to_dict(
            "records"
        ),
        "claims": evaluate_claims(metrics)[["id", "subject", "holds", "sentence"]].to_dict(
            "records"
        ),
        "judges": next(
            (m.get("judges") for n, m in metrics.items() if n.startswith(VERDICTS_PREFIX)), []
        ),
        "judged": {
            label: {net: [read, inside[label][net]] for net, read in by.items()}
            for label, by in verdict_table(metrics, "every judge").items()
            if label.startswith("inversions:") or "natural" in label or "robust" in label
        },
        "times": run_times(out_dir),
        "wall": run_wall(out_dir),
    }


def box_reached(fig3: dict | None) -> dict[str, list[int]]:
    """Per network, how many of ``best-box``'s digits reach their targets (within the solvers'
    tolerance) with every pixel in [0, 1], and of how many: ``[reached, digits]``."""
    m = read_back(Fig3Metrics, fig3)
    out = {}
    for net, by in (m.results if m else {}).items():
        success = (by.get("best-box") or {}).get("success")
        if success is not None:
            out[net] = [int(sum(bool(v) for v in success)), len(success)]
    return out


def _run_record(out_dir: Path) -> dict:
    path = Path(out_dir) / "run.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def run_times(out_dir: Path) -> dict[str, float]:
    """Seconds per notebook of the run, from its ``run.json`` (empty when there is none)."""
    return {row["notebook"]: row["seconds"] for row in _run_record(out_dir).get("notebooks", [])}


def run_wall(out_dir: Path) -> dict[str, float] | None:
    """The whole run's wall-clock ``seconds`` and its ``jobs`` (notebooks at a time), from
    its ``run.json``; None for a run that did not record them."""
    record = _run_record(out_dir)
    if "seconds" not in record:
        return None
    return {"seconds": record["seconds"], "jobs": record.get("jobs", 1)}


def _error(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"


def render(snap: dict[str, Any]) -> str:
    """The README block for a snapshot: the key numbers beside the paper's, and the median
    inversion error of every method on every network."""
    run = snap["run"]
    lines = [
        START,
        f"Run: profile `{run['profile']}`, {run['dataset']} ({run['n_train']} training / "
        f"{run['n_test']} test images: {run['source']}).",
        "",
        "| | this run | the paper (full MNIST) |",
        "|---|---|---|",
    ]
    for k in snap["key_numbers"]:
        paper = f"{100 * k['paper']:.0f}%" if k["percent"] else f"{k['paper']:g}"
        lines.append(f"| {k['label']} | {k['text']} | {paper} |")
    nets = snap["networks"]
    lines += [
        "",
        "Median relative output error `||f(x) - t|| / ||t||` over the ten digits, the paper's",
        "min/max targets (natural pre-images: how many digits both other networks read, the rule",
        "that chooses them, and the targets; the judges' verdict is further down):",
        "",
        "| method | " + " | ".join(nets) + " |",
        "|---|" + "---|" * len(nets),
    ]
    for method, by in snap["inversion"].items():
        cells = []
        for net in nets:
            text = _error(by.get(net)) if net in by else "-"
            nat = snap["natural"].get(net)
            if method == "natural pre-images" and nat and net in by:
                text += f" ({nat['n_recognised']}/10, {nat['targets']})"
            cells.append(text)
        lines.append(f"| `{method}` | " + " | ".join(cells) + " |")
    if snap.get("box_reached"):
        each = ", ".join(f"{net} {k}/{n}" for net, (k, n) in snap["box_reached"].items())
        lines += [
            "",
            f"Digits whose targets `best-box` reaches (within the tolerance) with every pixel in "
            f"[0, 1]: {each}.",
        ]
    lines += _judged_lines(snap)
    lines += _claims_lines(snap)
    times = snap.get("times") or {}
    if times:
        each = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in times.items())
        wall = snap.get("wall")
        took = (
            f"The run took {wall['seconds']:.0f} s, {wall['jobs']} notebook"
            f"{'s' if wall['jobs'] > 1 else ''} at a time; its notebooks "
            f"{sum(times.values()):.0f} s together"
            if wall
            else f"The run's notebooks took {sum(times.values()):.0f} s in all"
        )
        lines += [
            "",
            f"{took} ({each}; training is included where the checkpoint cache was cold).",
        ]
    lines.append(END)
    return "\n".join(lines)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _judged_lines(snap: dict[str, Any]) -> list[str]:
    """The judges' verdicts on Figure 3's image sets and the natural pre-images: the share of
    each set's digits that every judge reads as intended, every pixel in [0, 1]."""
    judged = snap.get("judged")
    if not judged:
        return []
    nets = sorted({net for by in judged.values() for net in by}, key=_net_order(snap))
    panel = "; ".join(
        f"`{j['name']}` ({j['description']}, held-out accuracy {j['held_out_accuracy']:.3f})"
        for j in snap.get("judges", [])
    )
    lines = [
        "",
        f"The judges, classifiers that take no part in making or choosing any image: {panel}.",
        "The share of each image set's digits that every judge reads as the intended digit",
        "(`notebook file: set`), and in brackets where it is less, the share that is also",
        'inside the pixel box [0, 1] (the paper\'s "+training" steps leave tiny excursions):',
        "",
        "| image set | " + " | ".join(nets) + " |",
        "|---|" + "---|" * len(nets),
    ]
    for label, by in judged.items():
        cells = [_share(*by[n]) if n in by else "-" for n in nets]
        lines.append(f"| {_cell(label)} | " + " | ".join(cells) + " |")
    return lines


def _share(read: float | None, inside: float | None) -> str:
    """``90%``, or ``90% (box 0%)`` where fewer of them are inside [0, 1]."""
    if read is None:
        return "-"
    text = f"{100 * read:.0f}%"
    return text if inside is None or inside >= read else f"{text} (box {100 * inside:.0f}%)"


def _net_order(snap: dict[str, Any]):
    order = list(snap.get("networks") or [])
    return lambda net: (order.index(net) if net in order else len(order), net)


def _claims_lines(snap: dict[str, Any]) -> list[str]:
    """The paper's claims ledger and our claims' verdicts (a snapshot made before they
    existed has neither, and shows neither)."""
    lines = []
    if snap.get("ledger"):
        lines += [
            "",
            "The paper's claims, checked on this run (`nnspaces.paper.CLAIMS`, "
            "`nnspaces.runner.ledger`):",
            "",
            "| the paper says | where | this run | verdict | why |",
            "|---|---|---|---|---|",
        ]
        lines += [
            "| "
            + " | ".join(_cell(r[k]) for k in ("says", "source", "this_run", "verdict", "why"))
            + " |"
            for r in snap["ledger"]
        ]
    if snap.get("claims"):
        lines += [
            "",
            "Our claims, each decided by this run's numbers (`nnspaces.runner.claims`):",
            "",
        ]
        lines += [f"- `{r['id']}` ({r['subject']}): {r['sentence']}" for r in snap["claims"]]
    return lines


def lessons_block() -> str:
    """The README's table of lessons, from the notebook registry."""
    lines = [LESSONS_START, "| # | notebook | what it teaches | time |", "|---|---|---|---|"]
    for i, nb in enumerate(lessons(), 1):
        lines.append(f"| {i} | `{nb.name}` | {nb.teaches} | {nb.minutes} min |")
    return "\n".join([*lines, LESSONS_END])


def readme_block(text: str, start: str = START, end: str = END) -> str:
    """The generated block of a README's text between ``start`` and ``end`` (included)."""
    a, b = text.find(start), text.find(end)
    if a < 0 or b < a:
        raise ValueError(f"the README has no generated block: {start!r} ... {end!r}")
    return text[a : b + len(end)]


def update(out_dir: str | Path, readme: Path = README, snap_path: Path = SNAPSHOT) -> Path:
    """Write the snapshot of ``out_dir``'s metrics and the README blocks: the numbers made
    from it, and the lessons from the notebook registry."""
    snap = snapshot(out_dir)
    write_json(snap_path, snap)
    text = readme.read_text()
    text = text.replace(readme_block(text), render(snap))
    text = text.replace(readme_block(text, LESSONS_START, LESSONS_END), lessons_block())
    atomic_write(readme, text)
    return readme
