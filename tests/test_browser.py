"""The explorer in a real browser: JupyterLab from this venv, headless Chromium via Playwright.

Opens a copy of notebooks/explore.ipynb (smoke-sized parameters injected the way papermill
does), runs every cell, moves the signal-space slider by key presses and checks that the image
changes, runs an inversion and checks that its result appears. Screenshots go to
results/browser/. And opens a run's report from disk with every request that would leave the
machine blocked: its pages must still show their figures and typeset formulas. Skipped only
where Chromium or Playwright is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from helpers import PNG, formulas_notebook

from nnspaces.paths import REPO_ROOT
from nnspaces.runner.config import PROFILES
from nnspaces.runner.report import write_report

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENSHOTS = REPO_ROOT / "results" / "browser"
NOTEBOOK = REPO_ROOT / "notebooks" / "explore.ipynb"
STARTUP_S = 90  # JupyterLab up and answering
CELLS_S = 150  # every cell of the notebook executed, widgets drawn
MATHJAX_S = 60  # a rendered notebook's formulas typeset
#: URLs that stay on this machine; the offline test blocks every other request
LOCAL = ("file://", "data:", "about:", "blob:", "http://127.0.0.1", "http://localhost")

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed (pip install playwright)"
)
if not Path(CHROMIUM).is_file():
    pytest.skip(
        f"Chromium not found (looked for `chromium` on PATH and {CHROMIUM}); "
        "install it, e.g. apt-get install chromium",
        allow_module_level=True,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _smoke_notebook(target: Path, out_dir: Path) -> None:
    """Copy explore.ipynb with a profile's parameters (``smoke`` unless the environment says
    otherwise) injected after its parameters cell (papermill's own way), writing its results
    under ``out_dir``."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = load_notebook_node(str(NOTEBOOK))
    # NNSPACES_BROWSER_PROFILE=default runs the explorer on the trained networks (from the
    # checkpoint cache after `make figures`): how the README's screenshot was taken
    profile = os.environ.get("NNSPACES_BROWSER_PROFILE", "smoke")
    params = {**PROFILES[profile].parameters(), "out_dir": str(out_dir)}
    declared = nb.cells[
        [("parameters" in c.metadata.get("tags", [])) for c in nb.cells].index(True)
    ]
    unknown = [k for k in params if f"{k} =" not in declared.source]
    assert not unknown, f"explore.ipynb's parameters cell lacks {unknown}"
    nb = parameterize_notebook(nb, params, kernel_name="nnspaces", language="python")
    nbformat.write(nb, target)


def _lab_settings(config_dir: Path) -> None:
    """No news, update checks or toasts: nothing that could cover the notebook."""
    folder = config_dir / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    folder.mkdir(parents=True)
    (folder / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True})
    )


def _stop_server(proc: subprocess.Popen, base: str, token: str) -> None:
    """Ask JupyterLab to shut down (it stops its kernels), then make sure: kill what is left
    of its process tree by process id."""
    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    with contextlib.suppress(OSError):
        req = urllib.request.Request(
            f"{base}/api/shutdown", method="POST", headers={"Authorization": f"token {token}"}
        )
        urllib.request.urlopen(req, timeout=10).close()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the server runs in its own process group
        proc.wait(timeout=10)
    for child in children:  # kernels run in sessions of their own
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


@pytest.fixture
def jupyter_lab(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A JupyterLab server on 127.0.0.1 (random port and token) whose root holds the
    smoke-sized copy of explore.ipynb; yields (base URL, token); always shut down."""
    root = tmp_path / "root"
    root.mkdir()
    _smoke_notebook(root / "explore.ipynb", tmp_path / "results")
    config = tmp_path / "config"
    _lab_settings(config)
    port, token = _free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
    }
    log = (tmp_path / "jupyter.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "jupyter", "lab", "--no-browser",
            "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            "--LabApp.expose_app_in_browser=True", "--LabApp.extension_manager=readonly",
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],
        env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited ({proc.returncode}):\n{_tail(tmp_path)}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start in {STARTUP_S} s:\n{_tail(tmp_path)}")
                time.sleep(0.5)
        yield base, token
    finally:
        _stop_server(proc, base, token)
        log.close()


def _tail(tmp_path: Path, n: int = 40) -> str:
    lines = (tmp_path / "jupyter.log").read_text(errors="replace").splitlines()
    return "\n".join(lines[-n:])


@pytest.fixture
def page(jupyter_lab: tuple[str, str]) -> Iterator:
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            yield context.new_page()
        finally:
            browser.close()


def _shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def test_explorer_in_jupyterlab(jupyter_lab, page):
    base, token = jupyter_lab
    page.goto(f"{base}/lab/tree/explore.ipynb?token={token}")
    page.wait_for_selector(".jp-Notebook", timeout=STARTUP_S * 1000)
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
        " && window.jupyterapp.shell.currentWidget.sessionContext",
        timeout=STARTUP_S * 1000,
    )
    kernel = page.evaluate(
        """async () => {
            const ctx = window.jupyterapp.shell.currentWidget.sessionContext;
            await ctx.ready;
            return ctx.session.kernel.name;
        }"""
    )
    assert kernel == "nnspaces"
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    try:
        # the inversion panel is the last cell: once its Run button is drawn, all cells ran
        page.wait_for_selector(".nnspaces-invert-run", timeout=CELLS_S * 1000)
        info = page.locator(".nnspaces-signal-info")
        sync_api.expect(info).to_contain_text("i = 0,", timeout=30_000)
    finally:
        _shot(page, "01_after_run_all")
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    texts = [t for t in errors.all_inner_texts() if "Traceback" in t or "Error" in t]
    assert not texts, f"a cell failed: {texts[0][:2000]}"

    # the signal-space slider: focus its handle, press the right arrow three times
    vector = page.locator(".nnspaces-signal-vector")
    vector.scroll_into_view_if_needed()
    before = vector.screenshot()
    handle = page.locator(".nnspaces-signal-slider .noUi-handle")
    handle.focus()
    for _ in range(3):
        handle.press("ArrowRight")
    sync_api.expect(info).to_contain_text("i = 3,", timeout=30_000)
    page.wait_for_timeout(500)  # the new image arrives with the text; let it paint
    after = vector.screenshot()
    assert after != before, "the displayed s_i v_i did not change when the slider moved"
    page.locator(".nnspaces-signal-slider").scroll_into_view_if_needed()
    _shot(page, "02_slider_moved")
    page.locator(".nnspaces-residual-info").scroll_into_view_if_needed()
    _shot(page, "03_residual")

    # the inversion panel: Run, then a result table appears
    run = page.locator(".nnspaces-invert-run")
    run.scroll_into_view_if_needed()
    run.click()
    result = page.locator(".nnspaces-invert-result table")
    sync_api.expect(result).to_be_visible(timeout=120_000)
    sync_api.expect(result).to_contain_text("relative error")
    rel_error = float(result.get_attribute("data-rel-error"))
    assert 0 <= rel_error < 1
    page.locator(".nnspaces-invert-result").scroll_into_view_if_needed()
    _shot(page, "04_inversion")

    # the network picker: resnet18 opens on the paper's Figure 2 layer, nine 3x3 kernels
    picker = page.locator(".nnspaces-network select")
    picker.scroll_into_view_if_needed()
    picker.select_option("resnet18")
    title = page.locator(".nnspaces-signal-title")
    sync_api.expect(title).to_contain_text("layer1.0.conv1", timeout=120_000)
    sync_api.expect(info).to_contain_text("i = 0,")
    title.scroll_into_view_if_needed()
    _shot(page, "05_resnet18_kernels")


def test_report_works_offline(tmp_path):
    """index.html and a rendered notebook, opened from disk with every non-local request
    blocked: the figures load, MathJax (the report's own copy) typesets the formulas."""
    out = tmp_path / "results" / "smoke"
    formulas_notebook(out / "notebooks" / "formulas.ipynb")
    (out / "figures").mkdir()
    (out / "figures" / "fig1.png").write_bytes(PNG)
    index = write_report(out)
    blocked: list[str] = []  # requests that would have left the machine
    missing: list[str] = []  # local files a page asked for and did not get

    def route(r) -> None:
        if r.request.url.startswith(LOCAL):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    def left(what: str) -> str:
        return f"{what}; blocked requests: {blocked or 'none'}; missing files: {missing or 'none'}"

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.route("**/*", route)
            page.on(
                "requestfailed",
                lambda r: missing.append(r.url) if r.url.startswith("file:") else None,
            )
            page.goto(index.as_uri())
            images = "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)"
            page.wait_for_function(images, timeout=10_000)
            page.locator("#notebooks a", has_text="HTML").click()
            page.wait_for_url("**/html/formulas.html")
            assert not blocked, left("the rendered notebook asked the network for something")
            try:  # MathJax 2 done: started up, its queue empty, the display formula drawn
                page.wait_for_function(
                    "() => window.MathJax && MathJax.isReady && MathJax.Hub.queue.pending === 0"
                    " && document.querySelector('.MathJax_Display .MathJax')",
                    timeout=MATHJAX_S * 1000,
                )
            except sync_api.TimeoutError:
                pytest.fail(left(f"MathJax typeset nothing in {MATHJAX_S} s"))
            typeset = page.evaluate(
                """() => ({
                    formulas: document.querySelectorAll('.MathJax').length,
                    errors: document.querySelectorAll('.MathJax .merror').length,
                    font: MathJax.OutputJax['HTML-CSS'].fontInUse,
                    text: [...document.querySelectorAll('.jp-MarkdownCell')]
                        .map(c => c.innerText).join(' '),
                    images: [...document.images].every(i => i.complete && i.naturalWidth > 0),
                })"""
            )
        finally:
            browser.close()
    assert not blocked, left("the report asked the network for something")
    assert not missing, left("the report asked for local files that are not there")
    assert typeset["formulas"] == 2 and not typeset["errors"], left(f"typeset: {typeset}")
    assert "$" not in typeset["text"], left(f"raw LaTeX left: {typeset['text']!r}")
    assert typeset["font"] == "STIX-Web", left(f"MathJax's fonts not found: {typeset}")
    assert typeset["images"], left("an image of the rendered notebook did not load")
