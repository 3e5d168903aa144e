"""One HTML page for a run: every figure with its caption, the key numbers beside the paper's,
the data used, run times, and each executed notebook rendered to HTML.

    python -m nnspaces run --profile default   # ends by calling write_report(results/default)

:func:`write_report` reads what a run left in its folder (``run.json``, ``metrics/*.json``,
``figures/*.png``, ``notebooks/*.ipynb``) and writes ``index.html`` beside them, with the
notebooks rendered under ``html/``. Links and images are relative, so the folder can be moved
or zipped whole. Anything missing or unreadable (a failed notebook, a metrics file that was
never written) is reported on the page, never silently dropped.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
import statistics
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: What each known figure shows, by file stem; other figures get a generic caption.
CAPTIONS = {
    "fig1": (
        "Figure 1 (reproduced): the one-layer FCNN. Rows: the weights w_c (one 28x28 template "
        "per output), the signal space s_i v_i (scaled right singular vectors), the class "
        "averages a_c and their residuals r_c = a_c - proj_{w_c} a_c. Each column shares one "
        "grey scale, as in the paper."
    ),
    "fig1_energy": (
        "Fraction of each class average's energy in the row space of the one-layer FCNN's "
        "weight (what the layer sees); the rest is the residual it cannot see."
    ),
    "fig2": (
        "Figure 2 (reproduced): the nine 3x3 signal-space kernels s_i v_i of ResNet18's "
        "layer1[0].conv1, from the SVD of its (64*64) x 9 kernel matrix."
    ),
    "fig2_per_layer": (
        "Condition number of every convolution of ResNet18, trained against at initialisation."
    ),
    "fig3": (
        "Figure 3 (reproduced): per digit, an image each network maps onto the target output, "
        "one method per network as in the paper."
    ),
    "fig3_all_methods": (
        "Every inversion method for every digit, with how close the output gets to its target."
    ),
    "fig3_scores": (
        "Raw output scores of each network over the training set, per output unit, with the "
        "targets (min over the data for the other outputs, max for the digit's own)."
    ),
    "fig3_null_space": (
        "Several different images with one and the same output: exact pre-images of the SELU "
        "networks, differing by null-space components."
    ),
    "fig3_frontier": (
        "How natural against how exact: a prior's weight traded against the relative output "
        "error, and how many digits the other networks still recognise."
    ),
    "fig3_priors": (
        "What each image prior does to ResNet18's box-constrained pre-images, and what it costs "
        "in output error."
    ),
    "fig3_natural": (
        "Natural pre-images: each network's chosen target variant and prior weight, pixels "
        "inside [0, 1], recognised by the other two networks."
    ),
}
#: Display order of the known figures; the rest follow by name.
FIGURE_ORDER = tuple(CAPTIONS)

NOTEBOOK_TITLES = {
    "fig1_fcnn_signal_space": "Figure 1: signal space of the one-layer FCNN",
    "fig2_resnet_conv_signal_space": "Figure 2: signal space of a ResNet18 convolution",
    "fig3_inverse_images": "Figure 3: inverse images",
    "explore": "Explorer (interactive; the widgets need a live kernel)",
}

#: The paper's numbers, as (label, network, metric key, paper value, how the paper states it).
PAPER_NUMBERS = (
    ("1-layer FCNN test accuracy", "fcnn1", "test_accuracy", 0.92, "92% (caption of Fig. 1)"),
    ("5-layer FCNN test accuracy", "fcnn5", "test_accuracy", 0.97, "97% (caption of Fig. 3)"),
    ("ResNet18 test accuracy", "resnet18", "test_accuracy", 0.99, "99% (caption of Fig. 2)"),
    (
        "1-layer FCNN condition number",
        "fcnn1",
        "condition_number",
        7.22,
        "7.22 (authors' notebook: 7.33)",
    ),
    (
        "ResNet18 layer1[0].conv1 condition number",
        "resnet18",
        "condition_number",
        1.07,
        "1.07 (authors' notebook: 1.069)",
    ),
)
PAPER_INVERSION = (
    "not reported in the paper; the authors' notebook's +training lowered the output MSE by "
    "only 1-3% (and raised it for ResNet18)"
)
_DATA_KEYS = ("dataset", "n_train", "n_val", "n_test", "source")


@dataclass
class _Page:
    """The page under construction, and the problems found on the way."""

    out_dir: Path
    parts: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.parts.append(text)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _read_json(path: Path, page: _Page) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        page.problems.append(f"{path.name} could not be read: {e}")
        return None


def _rel(path: Path, page: _Page) -> str:
    return Path(os.path.relpath(path, page.out_dir)).as_posix()


def _notebook_rows(page: _Page, run: dict | None) -> list[dict]:
    """run.json's rows, plus executed notebooks found in notebooks/ that it does not list (a
    run with --only rewrites run.json with its own rows)."""
    rows = []
    if isinstance(run, dict) and isinstance(run.get("notebooks"), list):
        rows = [dict(r) for r in run["notebooks"] if isinstance(r, dict) and "notebook" in r]
    elif run is None:
        page.problems.append("run.json is missing: no record of which notebooks ran, or how")
    listed = {r["notebook"] for r in rows}
    for nb in sorted((page.out_dir / "notebooks").glob("*.ipynb")):
        if nb.stem not in listed:
            rows.append(
                {"notebook": nb.stem, "status": "earlier run", "seconds": None, "output": str(nb)}
            )
    return rows


def _render_notebook(ipynb: Path, page: _Page) -> tuple[Path | None, str]:
    """Render an executed notebook to ``html/<name>.html``; (path, "") or (None, why not)."""
    if not ipynb.is_file():
        return None, "no executed notebook"
    try:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter(template_name="lab").from_filename(str(ipynb))
    except Exception as e:  # a corrupt or half-written notebook: say so, keep going
        return None, f"could not render: {type(e).__name__}: {e}"
    target = page.out_dir / "html" / f"{ipynb.stem}.html"
    _write_atomic(target, body)
    return target, ""


def _run_section(page: _Page, run: dict | None, render: bool) -> None:
    rows = _notebook_rows(page, run)
    page.add("<h2 id='run'>Notebooks and run times</h2>")
    if not rows:
        page.add("<p class='missing'>No notebook has run in this folder yet.</p>")
        return
    page.add(
        "<table><tr><th>notebook</th><th>status</th><th>seconds</th><th>executed notebook</th></tr>"
    )
    total = 0.0
    for row in rows:
        name = str(row["notebook"])
        status = str(row.get("status", "unknown"))
        seconds = row.get("seconds")
        total += seconds if isinstance(seconds, int | float) else 0.0
        ipynb = page.out_dir / "notebooks" / f"{name}.ipynb"
        if row.get("output"):
            out = Path(row["output"])
            ipynb = out if out.is_absolute() else page.out_dir / out
            if not ipynb.is_file():  # the folder was moved: look beside this page
                ipynb = page.out_dir / "notebooks" / f"{name}.ipynb"
        links = []
        if render:
            rendered, why = _render_notebook(ipynb, page)
            if rendered is not None:
                links.append(f"<a href='{_e(_rel(rendered, page))}'>HTML</a>")
            else:
                links.append(f"<span class='missing'>{_e(why)}</span>")
        if ipynb.is_file():
            links.append(f"<a href='{_e(_rel(ipynb, page))}'>.ipynb</a>")
        ok = status == "ok"
        cls = "ok" if ok else ("old" if status == "earlier run" else "failed")
        if status.startswith("failed"):
            page.problems.append(f"notebook {name} failed: {status.removeprefix('failed: ')}")
        title = NOTEBOOK_TITLES.get(name, name)
        page.add(
            f"<tr><td><b>{_e(name)}</b><br><small>{_e(title)}</small></td>"
            f"<td class='{cls}'>{_e(status)}</td>"
            f"<td class='num'>{_e(_fmt(seconds) if seconds is not None else '-')}</td>"
            f"<td>{' &middot; '.join(links)}</td></tr>"
        )
    page.add(f"<tr><td><b>total</b></td><td></td><td class='num'>{total:.1f}</td><td></td></tr>")
    page.add("</table>")


def _walk(obj: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every (path, value) leaf of nested dicts and lists; lists of numbers are one leaf."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, (*path, str(k)))
    elif isinstance(obj, list) and obj and not all(_is_number(v) for v in obj):
        for i, v in enumerate(obj):
            yield from _walk(v, (*path, _item_label(v, i)))
    else:
        yield path, obj


def _item_label(item: Any, index: int) -> str:
    """A list item's name in a path: its own "class", "layer", "network", "method" or
    "name" entry when it has one, else its index."""
    if isinstance(item, dict):
        for key in ("class", "layer", "network", "method", "name"):
            if key in item and not isinstance(item[key], dict | list):
                return str(item[key])
    return str(index)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _find_metric(metrics: dict[str, Any], network: str, key: str) -> tuple[Any, str] | None:
    """``key`` for ``network`` in any metrics file: a file about that network (its top-level
    ``network``), else a path that names the network and ends in ``key``."""
    for name, m in metrics.items():
        if isinstance(m, dict) and m.get("network") == network and _is_number(m.get(key)):
            return m[key], f"{name}.json"
    for name, m in metrics.items():
        for path, value in _walk(m):
            if path and path[-1] == key and network in path and _is_number(value):
                return value, f"{name}.json: {' / '.join(path)}"
    return None


def _key_numbers_section(page: _Page, metrics: dict[str, Any]) -> None:
    page.add("<h2 id='numbers'>Key numbers beside the paper's</h2>")
    page.add("<table><tr><th>quantity</th><th>this run</th><th>paper</th><th>from</th></tr>")
    for label, network, key, paper, paper_text in PAPER_NUMBERS:
        found = _find_metric(metrics, network, key)
        if found is None:
            ours, source, cls = "missing", "no metrics file has it", "missing"
        else:
            value, source = found
            pct = key.endswith("accuracy")
            ours = f"{100 * value:.1f}%" if pct else f"{value:.3g}"
            cls = "num"
        page.add(
            f"<tr><td>{_e(label)}</td><td class='{cls}'>{_e(ours)}</td>"
            f"<td class='num' data-paper='{paper}'>{_e(paper_text)}</td>"
            f"<td><small>{_e(source)}</small></td></tr>"
        )
    page.add("</table>")
    _inversion_table(page, metrics)


@dataclass(frozen=True)
class _Error:
    """One relative-error entry of a metrics file: the median of its numbers."""

    file: str
    path: tuple[str, ...]
    median: float
    n: int

    @property
    def parent(self) -> tuple[str, ...]:
        return self.path[:-1]


def _inversion_errors(metrics: dict[str, Any]) -> list[_Error]:
    """Every relative-error entry in the metrics (a number, a list of numbers, or per-class
    records gathered under their parent), with its median. Where a record holds both a
    ready-made ``median_...`` and the per-class list, only the median is kept."""
    found: dict[tuple[str, tuple[str, ...]], list[float]] = {}
    for name, m in metrics.items():
        for path, value in _walk(m):
            if not path or not _is_relative_error(path[-1]):
                continue
            values = value if isinstance(value, list) else [value]
            numbers = [float(v) for v in values if _is_number(v)]
            if not numbers:
                continue
            # per-class records (.../<class>/relative_error) are gathered under their parent
            parent = path[:-2] + path[-1:] if len(path) >= 2 and path[-2].isdigit() else path
            found.setdefault((name, parent), []).extend(numbers)
    errors = [_Error(n, p, statistics.median(v), len(v)) for (n, p), v in found.items()]
    with_median = {(e.file, e.parent) for e in errors if e.path[-1].startswith("median")}
    return [
        e
        for e in errors
        if e.path[-1].startswith("median") or (e.file, e.parent) not in with_median
    ]


def _is_relative_error(key: str) -> bool:
    k = key.lower()
    return "rel" in k and "err" in k


def _pivot_key(error: _Error) -> tuple[str, str] | None:
    """(method, network) for an entry of the form ``.../<network>/methods/<method>/<key>`` or
    ``.../<network>/natural/<key>`` (fig3.json's layout), else None."""
    p = error.path
    if len(p) >= 4 and p[-3] == "methods":
        return p[-2], p[-4]
    if len(p) >= 3 and p[-2] == "natural":
        return "natural pre-images", p[-3]
    return None


def _inversion_table(page: _Page, metrics: dict[str, Any]) -> None:
    page.add("<h3>Inversion: how close the output gets to its target</h3>")
    errors = _inversion_errors(metrics)
    if not errors:
        why = "fig3.json is missing" if "fig3" not in metrics else "fig3.json has no errors"
        page.add(f"<p class='missing'>No inversion errors found ({_e(why)}).</p>")
        page.add(f"<p>Paper: {_e(PAPER_INVERSION)}.</p>")
        return
    page.add(
        "<p>Median over the digits of the relative output error ||f(x) - t|| / ||t||. "
        f"Paper: {_e(PAPER_INVERSION)}.</p>"
    )
    pivot: dict[str, dict[str, float]] = {}
    covered: list[tuple[str, tuple[str, ...]]] = []
    for e in errors:
        key = _pivot_key(e)
        if key is not None:
            pivot.setdefault(key[0], {})[key[1]] = e.median
            covered.append((e.file, e.parent))
    if pivot:
        networks = sorted({n for row in pivot.values() for n in row}, key=_network_order)
        page.add("<table class='inversion'><tr><th>method</th>")
        page.add("".join(f"<th>{_e(n)}</th>" for n in networks) + "</tr>")
        for method, row in pivot.items():
            cells = "".join(
                f"<td class='num'>{_e(_fmt(row[n])) if n in row else '-'}</td>" for n in networks
            )
            page.add(f"<tr><td>{_e(method)}</td>{cells}</tr>")
        page.add("</table>")
    # entries outside that layout (and not inside a record the table shows), listed plainly
    rest = [
        e
        for e in errors
        if _pivot_key(e) is None
        and not any(e.file == f and e.path[: len(p)] == p for f, p in covered)
    ]
    if rest:
        page.add("<table><tr><th>file</th><th>entry</th><th>median</th><th>n</th></tr>")
        for e in rest[:40]:
            page.add(
                f"<tr><td>{_e(e.file)}.json</td><td>{_e(' / '.join(e.path))}</td>"
                f"<td class='num'>{_e(_fmt(e.median))}</td><td class='num'>{e.n}</td></tr>"
            )
        page.add("</table>")
        if len(rest) > 40:
            page.add(f"<p>... and {len(rest) - 40} more entries (see All metrics below).</p>")


def _network_order(name: str) -> tuple[int, str]:
    order = ("fcnn1", "fcnn5", "resnet18")
    return (order.index(name) if name in order else len(order), name)


def _data_section(page: _Page, run: dict | None, metrics: dict[str, Any]) -> None:
    page.add("<h2 id='data'>Data and parameters</h2>")
    rows = [(n, m) for n, m in metrics.items() if isinstance(m, dict) and "dataset" in m]
    if rows:
        page.add("<table><tr><th>metrics file</th>")
        page.add("".join(f"<th>{k}</th>" for k in _DATA_KEYS) + "</tr>")
        for name, m in rows:
            cells = "".join(f"<td>{_e(_fmt(m.get(k, '-')))}</td>" for k in _DATA_KEYS)
            page.add(f"<tr><td>{_e(name)}.json</td>{cells}</tr>")
        page.add("</table>")
    else:
        page.add("<p class='missing'>No metrics file names the data it used.</p>")
    params = run.get("parameters") if isinstance(run, dict) else None
    if isinstance(params, dict):
        page.add("<p>Parameters passed to the notebooks:</p><table>")
        for k, v in params.items():
            page.add(f"<tr><td>{_e(k)}</td><td><code>{_e(json.dumps(v))}</code></td></tr>")
        page.add("</table>")


def _figures_section(page: _Page) -> None:
    page.add("<h2 id='figures'>Figures</h2>")
    folder = page.out_dir / "figures"
    pngs = sorted(folder.glob("*.png"), key=_figure_key) if folder.is_dir() else []
    if not pngs:
        page.add("<p class='missing'>No figures in figures/ yet.</p>")
    for png in pngs:
        caption = CAPTIONS.get(png.stem, f"{png.stem}: a figure written by the notebooks.")
        pdf = png.with_suffix(".pdf")
        pdf_link = f" (<a href='{_e(_rel(pdf, page))}'>PDF</a>)" if pdf.is_file() else ""
        page.add(
            f"<figure id='fig-{_e(png.stem)}'><img src='{_e(_rel(png, page))}' "
            f"alt='{_e(png.stem)}'><figcaption><b>{_e(png.name)}</b>{pdf_link}: "
            f"{_e(caption)}</figcaption></figure>"
        )
    for stem in FIGURE_ORDER:
        if not (folder / f"{stem}.png").is_file():
            page.problems.append(f"figure {stem}.png is missing")


def _figure_key(png: Path) -> tuple[int, str]:
    order = FIGURE_ORDER.index(png.stem) if png.stem in FIGURE_ORDER else len(FIGURE_ORDER)
    return order, png.name


def _metrics_section(page: _Page, metrics: dict[str, Any]) -> None:
    page.add("<h2 id='metrics'>All metrics</h2>")
    if not metrics:
        page.add("<p class='missing'>No metrics files in metrics/ yet.</p>")
    for name, m in metrics.items():
        page.add(f"<details><summary>{_e(name)}.json</summary><table>")
        for path, value in _walk(m):
            page.add(f"<tr><td>{_e(' / '.join(path))}</td><td>{_e(_short(value))}</td></tr>")
        page.add("</table></details>")


def _short(value: Any) -> str:
    if isinstance(value, list):
        if len(value) <= 10:
            return "[" + ", ".join(_fmt(v) for v in value) + "]"
        head = ", ".join(_fmt(v) for v in value[:5])
        return f"[{head}, ...] ({len(value)} values)"
    return _fmt(value)


def _browser_section(page: _Page) -> None:
    shots = sorted((page.out_dir.parent / "browser").glob("*.png"))
    if shots:
        page.add(
            "<h2 id='browser'>The explorer in a browser (screenshots of the browser test)</h2>"
        )
        for png in shots:
            page.add(
                f"<figure><img class='shot' src='{_e(_rel(png, page))}' alt='{_e(png.stem)}'>"
                f"<figcaption>{_e(png.name)}</figcaption></figure>"
            )


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #060; } .failed { color: #b00; font-weight: bold; } .old { color: #666; }
.missing { color: #b00; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
img.shot { max-width: 100%; }
figcaption { font-size: 0.9em; color: #444; max-width: 80ch; }
.problems { background: #fff3f3; border: 1px solid #e99; padding: 0.5em 1em; }
"""


def write_report(out_dir: str | Path, *, render_notebooks: bool = True) -> Path:
    """Write ``<out_dir>/index.html`` (and ``<out_dir>/html/<notebook>.html`` for each executed
    notebook, unless ``render_notebooks`` is False) and return its path."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise FileNotFoundError(f"{out_dir} is not a folder; run `python -m nnspaces run` first")
    page = _Page(out_dir)
    run = _read_json(out_dir / "run.json", page)
    if run is not None and not isinstance(run, dict):
        page.problems.append("run.json is not a JSON object")
        run = None
    metrics: dict[str, Any] = {}
    for path in sorted((out_dir / "metrics").glob("*.json")):
        m = _read_json(path, page)
        if m is not None:
            metrics[path.stem] = m
    for fig in ("fig1", "fig2", "fig3"):
        if fig not in metrics:
            page.problems.append(f"metrics/{fig}.json is missing")

    profile = run.get("profile") if run else out_dir.name
    page.add(
        "<p>A reproduction of R. Pattichis and M. S. Pattichis, <i>Understanding Neural "
        "Network Systems for Image Analysis using Vector Spaces and Inverse Maps</i>, IEEE "
        "SSIAI 2024 (arXiv 2402.00261).</p>"
    )
    page.add(
        "<p>Contents: <a href='#numbers'>key numbers</a> &middot; <a href='#run'>notebooks</a>"
        " &middot; <a href='#data'>data</a> &middot; <a href='#figures'>figures</a> &middot; "
        "<a href='#metrics'>all metrics</a></p>"
    )
    problems_at = len(page.parts)
    _key_numbers_section(page, metrics)
    _run_section(page, run, render_notebooks)
    _data_section(page, run, metrics)
    _figures_section(page)
    _metrics_section(page, metrics)
    _browser_section(page)
    if page.problems:
        items = "".join(f"<li>{_e(p)}</li>" for p in page.problems)
        page.parts.insert(
            problems_at,
            f"<div class='problems' id='problems'><b>Missing or failed</b><ul>{items}</ul></div>",
        )
    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    doc = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>nnspaces: {_e(profile)} run</title><style>{_CSS}</style></head><body>"
        f"<h1>nnspaces: the <code>{_e(profile)}</code> run</h1>"
        f"<p><small>Report written {_e(now)} from {_e(out_dir.resolve())}</small></p>"
        + "\n".join(page.parts)
        + "</body></html>\n"
    )
    index = out_dir / "index.html"
    _write_atomic(index, doc)
    return index


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
