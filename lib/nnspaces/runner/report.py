"""One HTML page for a run: every figure with its caption, the key numbers beside the paper's,
the data used, run times, and each executed notebook rendered to HTML.

    python -m nnspaces run --profile default   # ends by calling write_report(results/default)

:func:`write_report` reads what a run left in its folder (``run.json``, ``metrics/*.json``,
``figures/*.png``, ``notebooks/*.ipynb``) and renders ``templates/report.html`` (jinja2,
autoescaped) to ``index.html`` beside them, with the notebooks rendered under ``html/``
(nbconvert, ``templates/nbconvert/nnspaces-lab``: the lab template with nothing from a CDN; the
formulas typeset by the copy of MathJax under ``_static/mathjax``, so it all works offline). The
numbers come from the metrics files through :func:`nnspaces.runner.numbers.key_numbers` and
:func:`nnspaces.runner.numbers.inversion_table`, the paper's from :mod:`nnspaces.paper`. Links and
images are relative, so the folder can be moved or zipped whole. Anything missing or
unreadable (a failed notebook, a metrics file that was never written) is listed on the page,
never silently dropped.
"""

from __future__ import annotations

import filecmp
import importlib.util
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .. import paper
from ..data import classes_note
from ..files import atomic_write, leaves
from ..paths import TEMPLATES, shown
from .decide import evaluate_claims
from .html import now, write_page
from .ledger import paper_ledger
from .metrics import MetricsLayoutError
from .notebooks import caption, figure_rank, names_of_kind, notebook, runner_notebooks
from .numbers import VERDICTS_PREFIX, inversion_table, key_numbers

#: What :meth:`nnspaces.runner.config.RunContext.save_metrics` writes beside each figure's metrics.
DATA_KEYS = ("profile", "dataset", "n_train", "n_val", "n_test", "source")
#: The nbconvert template the notebooks are rendered with (under ``templates/nbconvert``).
NBCONVERT_TEMPLATE = "nnspaces-lab"
#: Where in a report's folder MathJax goes, and the part of jupyter-server-mathjax's MathJax 2
#: the rendered notebooks load: TeX input, HTML-CSS output with its STIX-Web fonts (not the SVG
#: output, the accessibility extensions or the translations of its menus).
MATHJAX_DIR = Path("_static") / "mathjax"
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe"
MATHJAX_FILES = (
    "LICENSE",
    "MathJax.js",
    "config/TeX-AMS-MML_HTMLorMML-full.js",
    "config/Safe.js",
    "extensions/*.js",
    "extensions/TeX/*.js",
    "extensions/HTML-CSS/*.js",
    "extensions/MathML/*.js",
    "jax/input/TeX/*.js",
    "jax/element/mml/**/*.js",
    "jax/output/HTML-CSS/**/*.js",
    "fonts/HTML-CSS/STIX-Web/woff/*.woff",
)


@dataclass
class _Folder:
    """A run's folder as it is read, and the problems found on the way."""

    out_dir: Path
    problems: list[str] = field(default_factory=list)
    mathjax: Path | None = None  # MathJax.js, once copied into the folder

    def read_json(self, path: Path) -> Any:
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            self.problems.append(f"{path.name} could not be read: {e}")
            return None

    def href(self, path: Path) -> str:
        """``path`` relative to the page, as a URL (spaces, ``#`` and ``?`` escaped)."""
        return quote(Path(os.path.relpath(path, self.out_dir)).as_posix())

    def holds(self, path: Path) -> bool:
        return path.resolve().is_relative_to(self.out_dir.resolve())


def _text(value: Any) -> str:
    """A metrics value as shown on the page (floats to 4 significant digits)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return str(value) if not math.isfinite(value) else f"{value:.4g}"
    if isinstance(value, dict):
        return "{}"  # an empty one: leaves() walks the others
    if isinstance(value, list):
        flat = list(_flatten(value))
        nested = len(flat) != len(value)
        if len(flat) <= 10 and not nested:
            return "[" + ", ".join(_text(v) for v in flat) + "]"
        return "[" + ", ".join(_text(v) for v in flat[:5]) + f", ...] ({len(flat)} values)"
    return str(value)


def _flatten(values: list) -> Iterator[Any]:
    for v in values:
        if isinstance(v, list):
            yield from _flatten(v)
        else:
            yield v


# --------------------------------------------------------------------------- the sections


def _ran(folder: _Folder, run: dict | None) -> list:
    """The registered notebooks this folder holds a run of (run.json's rows or an executed
    notebook), in the runner's order; the paper's figures when it holds no record of any."""
    names = {nb.stem for nb in (folder.out_dir / "notebooks").glob("*.ipynb")}
    if isinstance(run, dict) and isinstance(run.get("notebooks"), list):
        names |= {str(r.get("notebook")) for r in run["notebooks"] if isinstance(r, dict)}
    ran = [notebook(n) for n in runner_notebooks() if n in names]
    return ran or [notebook(n) for n in names_of_kind("figure")]


def _read_metrics(folder: _Folder, run: dict | None) -> dict[str, dict]:
    metrics: dict[str, dict] = {}
    for path in sorted((folder.out_dir / "metrics").glob("*.json")):
        m = folder.read_json(path)
        if m is not None and not isinstance(m, dict):
            folder.problems.append(f"{path.name} is not a JSON object")
        elif m is not None:
            metrics[path.stem] = m
    for name in [nb.metrics for nb in _ran(folder, run) if nb.metrics]:
        # an unreadable one is reported as such above
        if not (folder.out_dir / "metrics" / f"{name}.json").is_file():
            folder.problems.append(f"metrics/{name}.json is missing")
    profile = (run or {}).get("profile")
    for name, m in metrics.items():
        if profile is not None and m.get("profile") not in (None, profile):
            folder.problems.append(
                f"metrics/{name}.json is from profile {m['profile']!r}, run.json from {profile!r}"
            )
    return metrics


def _numbers(folder: _Folder, metrics: dict[str, dict]) -> tuple[list[dict], dict[str, Any]]:
    """The key-numbers rows and the inversion table, from the metrics readers."""
    keys = key_numbers(metrics)  # a file of another layout: its numbers are missing
    rows = [
        {
            "label": k.label,
            "text": k.text,
            "missing": k.value is None,
            "paper": k.reference.text,
            "source": k.source,
        }
        for k in keys
    ]
    missing = [k.label for k in keys if k.value is None]
    if missing:
        folder.problems.append(f"key numbers missing: {', '.join(missing)}")

    fig3 = metrics.get("fig3")
    try:
        networks, table = inversion_table(fig3, metrics.get("lesson5"))
    except MetricsLayoutError as e:
        folder.problems.append(str(e))
        networks, table = [], {}
    inversion = {
        "networks": networks,
        "rows": [(m, [_median(row, n) for n in networks]) for m, row in table.items()],
        "why_empty": "fig3.json is missing" if fig3 is None else "fig3.json has no results",
        "note": paper.INVERSION_NOTE,
    }
    return rows, inversion


def _median(row: Mapping[str, float | None], network: str) -> str:
    if network not in row:
        return "-"
    value = row[network]
    return "n/a" if value is None else f"{value:.3g}"


def _notebook_path(folder: _Folder, row: dict) -> Path | None:
    """The executed notebook of a run.json row, inside the folder (run.json's ``output``,
    else ``notebooks/<name>.ipynb``: the folder may have moved since)."""
    candidates = []
    if isinstance(row.get("output"), str) and row["output"]:
        candidates.append(folder.out_dir / row["output"])  # an absolute output stays absolute
    candidates.append(folder.out_dir / "notebooks" / f"{row['notebook']}.ipynb")
    return next((p for p in candidates if p.is_file() and folder.holds(p)), None)


def _copy_mathjax(out_dir: Path) -> Path:
    """Copy :data:`MATHJAX_FILES` from jupyter-server-mathjax into ``out_dir/MATHJAX_DIR``
    (only those missing or different there) and return the copy's ``MathJax.js``."""
    spec = importlib.util.find_spec("jupyter_server_mathjax")  # not imported: it loads a server
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("jupyter-server-mathjax is not installed: it ships MathJax")
    source = Path(next(iter(spec.submodule_search_locations))) / "static"
    for pattern in MATHJAX_FILES:
        files = sorted(source.glob(pattern))
        if not files:
            raise FileNotFoundError(f"jupyter-server-mathjax has no {pattern} in {source}")
        for src in files:
            dest = out_dir / MATHJAX_DIR / src.relative_to(source)
            if not (dest.is_file() and filecmp.cmp(src, dest, shallow=False)):
                atomic_write(dest, src.read_bytes())
    return out_dir / MATHJAX_DIR / "MathJax.js"


def _render_notebook(folder: _Folder, ipynb: Path) -> tuple[Path | None, str]:
    """Render an executed notebook to ``html/<name>.html``; (path, "") or (None, why not)."""
    target = folder.out_dir / "html" / f"{ipynb.stem}.html"
    try:
        from nbconvert import HTMLExporter

        if folder.mathjax is None:
            folder.mathjax = _copy_mathjax(folder.out_dir)
        mathjax = quote(Path(os.path.relpath(folder.mathjax, target.parent)).as_posix())
        body, _ = HTMLExporter(
            template_name=NBCONVERT_TEMPLATE,
            extra_template_basedirs=[str(TEMPLATES / "nbconvert")],
            mathjax_url=f"{mathjax}?config={MATHJAX_CONFIG}",
            embed_images=True,  # a markdown image of a local file: in the page, as data
        ).from_filename(str(ipynb))
    except Exception as e:  # a corrupt notebook, no MathJax to copy: say so, keep going
        return None, f"could not render: {type(e).__name__}: {e}"
    return atomic_write(target, body), ""


def _notebooks(folder: _Folder, run: dict | None, render: bool) -> tuple[list[dict], str]:
    """One row per notebook of run.json, then the executed notebooks it does not list (a run
    with --only rewrites run.json with its own rows); and the total seconds."""
    rows: list[dict] = []
    if isinstance(run, dict) and isinstance(run.get("notebooks"), list):
        rows = [dict(r) for r in run["notebooks"] if isinstance(r, dict) and "notebook" in r]
    listed = {str(r["notebook"]) for r in rows}
    for nb in sorted((folder.out_dir / "notebooks").glob("*.ipynb")):
        if nb.stem not in listed:
            rows.append({"notebook": nb.stem, "status": "earlier run", "output": str(nb)})
    out, total = [], 0.0
    for row in rows:
        name, status = str(row["notebook"]), str(row.get("status", "unknown"))
        seconds = row.get("seconds")
        timed = isinstance(seconds, int | float) and not isinstance(seconds, bool)
        total += seconds if timed else 0.0
        cls = {"ok": "ok", "earlier run": "old"}.get(status, "failed")
        if cls == "failed":
            folder.problems.append(f"notebook {name} failed: {status.removeprefix('failed: ')}")
        ipynb = _notebook_path(folder, row)
        links, note = [], ""
        if ipynb is None:
            note = "no executed notebook"
            if cls != "failed":
                folder.problems.append(f"notebook {name}: no executed notebook in notebooks/")
        else:
            if render:
                rendered, note = _render_notebook(folder, ipynb)
                if rendered is not None:
                    links.append((folder.href(rendered), "HTML"))
                else:
                    folder.problems.append(f"notebook {name}: {note}")
            links.append((folder.href(ipynb), ".ipynb"))
        out.append(
            {
                "name": name,
                "title": _title(name),
                "status": status,
                "cls": cls,
                "seconds": f"{seconds:.1f}" if timed else "-",
                "links": links,
                "note": note,
            }
        )
    return out, f"{total:.1f}"


def _title(name: str) -> str:
    try:
        return notebook(name).title
    except ValueError:
        return ""


def _figures(folder: _Folder, run: dict | None) -> list[dict]:
    figures_dir = folder.out_dir / "figures"
    pngs = sorted(figures_dir.glob("*.png"), key=lambda png: figure_rank(png.stem))
    for nb in _ran(folder, run):
        for fig in nb.figures:
            if "{network}" not in fig.stem and not (figures_dir / f"{fig.stem}.png").is_file():
                folder.problems.append(f"figure {fig.stem}.png ({nb.name}) is missing")
    return [
        {
            "stem": png.stem,
            "name": png.name,
            "src": folder.href(png),
            "pdf": folder.href(png.with_suffix(".pdf"))
            if png.with_suffix(".pdf").is_file()
            else "",
            "caption": caption(png.stem) or f"{png.stem}: a figure no notebook registers.",
        }
        for png in pngs
    ]


# --------------------------------------------------------------------------- the page


def _verdicts(metrics: Mapping[str, dict]) -> list[dict]:
    """Per file of image sets: the judges (with their held-out accuracy) and, per set, how
    many images each judge, every judge, and every judge with pixels in [0, 1] read as the
    intended digit (``k/n``)."""
    out = []
    for name, m in metrics.items():
        if not name.startswith(VERDICTS_PREFIX) or not isinstance(m.get("sets"), dict):
            continue
        judges = [j for j in m.get("judges", []) if isinstance(j, dict)]
        columns = [j.get("name", "?") for j in judges] + ["every judge", "digit and inside"]
        rows = [
            [key, *(f"{row.get(c, '-')}/{row.get('images', '-')}" for c in columns)]
            for key, row in m["sets"].items()
        ]
        out.append({"file": name[len(VERDICTS_PREFIX) :], "judges": judges, "columns": columns,
                    "rows": rows})  # fmt: skip
    return out


def write_report(out_dir: str | Path, *, render_notebooks: bool = True) -> Path:
    """Write ``<out_dir>/index.html`` (and ``<out_dir>/html/<notebook>.html`` for each executed
    notebook, unless ``render_notebooks`` is False) and return its path."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise FileNotFoundError(f"{out_dir} is not a folder; run `python -m nnspaces run` first")
    folder = _Folder(out_dir)
    run = folder.read_json(out_dir / "run.json")
    if run is not None and not isinstance(run, dict):
        folder.problems.append("run.json is not a JSON object")
        run = None
    elif run is None and not (out_dir / "run.json").is_file():
        folder.problems.append("run.json is missing: no record of which notebooks ran, or how")
    metrics = _read_metrics(folder, run)
    key_rows, inversion = _numbers(folder, metrics)
    notebooks, total = _notebooks(folder, run, render_notebooks)
    figures = _figures(folder, run)
    parameters = (run or {}).get("parameters")
    return write_page(
        out_dir / "index.html",
        "report.html",
        profile=str((run or {}).get("profile") or out_dir.name),
        citation=paper.CITATION,
        written=now(),
        source=shown(out_dir),
        key_numbers=key_rows,
        inversion=inversion,
        ledger=paper_ledger(metrics).to_dict("records"),
        claims=evaluate_claims(metrics).to_dict("records"),
        verdicts=_verdicts(metrics),
        notebooks=notebooks,
        total_seconds=total,
        wall=(run or {}).get("seconds"),
        jobs=(run or {}).get("jobs", 1),
        classes_note=next(
            (classes_note(m["dataset"]) for m in metrics.values() if m.get("dataset")), None
        ),
        data_keys=DATA_KEYS,
        data_rows=[
            (name, [_text(m.get(k, "-")) for k in DATA_KEYS])
            for name, m in metrics.items()
            if "dataset" in m
        ],
        parameters=[
            (str(k), json.dumps(v))
            for k, v in (parameters.items() if isinstance(parameters, dict) else ())
        ],
        figures=figures,
        metrics=[
            (name, [(" / ".join(map(str, p)), _text(v)) for p, v in leaves(m)])
            for name, m in metrics.items()
        ],
        screenshots=[
            {"src": folder.href(p), "name": p.name}
            for p in sorted((out_dir.parent / "browser").glob("*.png"))
        ],
        problems=folder.problems,
    )
