"""The runner: one RunConfig's parameters to every notebook, failures recorded, clear CLI errors."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

from nnspaces.cli import main
from nnspaces.files import write_json
from nnspaces.runner import execute as run
from nnspaces.runner.config import RunConfig
from nnspaces.runner.notebooks import runner_notebooks


def _notebook(path, parameters: str, body: str) -> None:
    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(body)])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


@pytest.fixture
def tiny_notebooks(tmp_path, monkeypatch):
    """Two notebooks the runner knows by name: one records what it got, one fails."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    record = tmp_path / "got.json"
    _notebook(
        folder / "fig1_fcnn_signal_space.ipynb",
        'profile = "default"\nseed = None\nn_train = None',
        "import json, os\n"
        "batch = os.environ.get('NNSPACES_BATCH')\n"
        f"json.dump({{'profile': profile, 'seed': seed, 'n_train': n_train, 'batch': batch}}, "
        f"open({str(record)!r}, 'w'))",
    )
    _notebook(folder / "fig2_resnet_conv_signal_space.ipynb", "seed = None", "1 / 0")
    monkeypatch.setattr(run, "NOTEBOOK_DIR", folder)
    return record


@pytest.mark.notebook
def test_each_notebook_gets_the_configs_values_and_failures_are_recorded(
    tiny_notebooks, tmp_path, monkeypatch
):
    monkeypatch.delenv("NNSPACES_BATCH", raising=False)
    config = RunConfig.from_profile("smoke", seed=7, out_dir=str(tmp_path / "out"))
    rows = run.run_notebooks(config, progress=False)
    assert [r["notebook"] for r in rows] == [
        "fig1_fcnn_signal_space",
        "fig2_resnet_conv_signal_space",
    ]
    # only the parameters a notebook declares, with the config's values ("all" never None);
    # the kernel knows it is a batch run (no progress bars), this process is left as it was
    got = json.loads(tiny_notebooks.read_text())
    assert got == {"profile": "smoke", "seed": 7, "n_train": 500, "batch": "1"}
    assert "NNSPACES_BATCH" not in os.environ
    assert rows[0]["status"] == "ok"
    assert (
        rows[1]["status"].startswith("failed: PapermillExecutionError")
        and "ZeroDivision" in (rows[1]["status"])
    )
    saved = json.loads((tmp_path / "out" / "run.json").read_text())
    assert saved["parameters"] == config.parameters() and saved["notebooks"] == rows
    assert "FAILED" in run.format_table(rows) and "ZeroDivision" in run.format_table(rows)


def test_kernels_run_as_a_batch_and_the_cell_bar_follows_the_policy(
    tiny_notebooks, tmp_path, monkeypatch
):
    """Each kernel starts with NNSPACES_BATCH set (no progress bars inside); papermill's bar
    over the cells, on the runner's side, follows the policy there."""
    import papermill as pm

    seen = []
    monkeypatch.setattr(
        pm,
        "execute_notebook",
        lambda *a, **kw: seen.append((kw["progress_bar"], os.environ.get("NNSPACES_BATCH"))),
    )
    monkeypatch.delenv("NNSPACES_BATCH", raising=False)
    config = RunConfig.from_profile("smoke", out_dir=str(tmp_path / "out"))
    run.run_notebooks(config)
    run.run_notebooks(config, progress=False)
    assert seen == [(True, "1")] * 2 + [(False, "1")] * 2
    assert "NNSPACES_BATCH" not in os.environ
    seen.clear()
    monkeypatch.setenv("NNSPACES_BATCH", "1")  # the runner itself in a batch run
    run.run_notebooks(config)
    assert seen == [(False, "1")] * 2


def test_only_unknown_notebook_is_a_clear_error(tiny_notebooks, tmp_path):
    with pytest.raises(ValueError, match=r"unknown notebook\(s\) \['fig9'\]; allowed: fig1"):
        run.run_notebooks(RunConfig.from_profile("smoke", out_dir=str(tmp_path)), only=["fig9"])
    with pytest.raises(TypeError, match="needs a RunConfig"):
        run.run_notebooks("smoke")


@pytest.mark.notebook
def test_notebooks_run_side_by_side_longest_first_with_their_share_of_the_cores(
    tmp_path, monkeypatch
):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    names = list(runner_notebooks()[:3])
    for name in names:
        _notebook(
            folder / f"{name}.ipynb",
            "seed = None",
            "import json, os, time\n"
            "start = time.time()\n"
            "time.sleep(1.5)\n"
            f"json.dump({{'start': start, 'end': time.time(), "
            f"'threads': os.environ.get('OMP_NUM_THREADS')}}, open({str(tmp_path / name)!r}, 'w'))",
        )
    monkeypatch.setattr(run, "NOTEBOOK_DIR", folder)
    monkeypatch.setattr(run.os, "cpu_count", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    out = tmp_path / "out"
    # the last run into this folder: names[2] took longest, names[0] least
    write_json(
        out / "run.json",
        {
            "notebooks": [
                {"notebook": n, "seconds": s} for n, s in zip(names, (1.0, 5.0, 60.0), strict=True)
            ]
        },
    )
    config = RunConfig.from_profile("smoke", out_dir=str(out))
    rows = run.run_notebooks(config, progress=False, jobs=2)
    assert [r["notebook"] for r in rows] == names and {r["status"] for r in rows} == {"ok"}
    saved = json.loads((out / "run.json").read_text())
    assert saved["notebooks"] == rows and saved["jobs"] == 2
    # the wall clock: at least the longest notebook, less than all of them one after another
    assert max(r["seconds"] for r in rows) <= saved["seconds"] < sum(r["seconds"] for r in rows)
    got = {n: json.loads((tmp_path / n).read_text()) for n in names}
    assert {g["threads"] for g in got.values()} == {"2"}  # 4 cores, 2 at a time
    assert "OMP_NUM_THREADS" not in os.environ  # the workers' environment, not the runner's
    longest, middle, shortest = (got[n] for n in reversed(names))
    # the two longer ones ran side by side; the shortest waited for a free worker
    assert longest["start"] < middle["end"] and middle["start"] < longest["end"]
    assert shortest["start"] >= min(longest["end"], middle["end"]) - 0.5
    with pytest.raises(ValueError, match="jobs=0 must be a positive integer"):
        run.run_notebooks(config, jobs=0)


def test_the_schedule_reads_the_last_runs_times_and_survives_a_bad_record(tmp_path):
    assert run._last_seconds(tmp_path) == {}  # no last run
    write_json(tmp_path / "run.json", {"notebooks": [{"notebook": "fig1", "seconds": 12.5}]})
    assert run._last_seconds(tmp_path) == {"fig1": 12.5}
    for bad in ("{not json", '{"notebooks": [{"seconds": 1}]}', '{"notebooks": 3}'):
        (tmp_path / "run.json").write_text(bad)
        assert run._last_seconds(tmp_path) == {}  # only a schedule: run in the usual order


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--profile", "nope"], "unknown profile 'nope'; allowed: smoke, default, paper"),
        (["run", "--profile", ".."], "profile='..' must be a plain folder name"),
        (["run", "--profile", "smoke", "--seed", "-1"], "seed=-1 must be a non-negative integer"),
        (["run", "--profile", "smoke", "--device", "tpu"], "device 'tpu'"),
    ],
)
def test_cli_errors_name_the_value(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_key_numbers_beside_the_papers(tmp_path):
    write_json(
        tmp_path / "metrics" / "fig1.json",
        {"network": "fcnn1", "test_accuracy": 0.8771, "condition_number": 3.7412},
    )
    text = run.key_numbers_text(tmp_path)
    fcnn1_acc = next(line for line in text.splitlines() if line.startswith("fcnn1 test accuracy"))
    assert "87.7%" in fcnn1_acc and "paper 0.92" in fcnn1_acc
    cond = next(line for line in text.splitlines() if "fcnn1 layer 1 condition" in line)
    assert "3.74" in cond and "paper 7.22" in cond
    resnet = next(line for line in text.splitlines() if line.startswith("resnet18 test accuracy"))
    assert "missing" in resnet


@pytest.mark.notebook
def test_the_cli_resolves_a_relative_out_dir_where_it_was_started(tmp_path, monkeypatch):
    """``python -m nnspaces run --out-dir results/seed1`` from the checkout: the kernels run in
    notebooks/, yet every file lands in ./results/seed1/ (a relative path used to reach the
    kernels as it was, and their metrics and figures went to notebooks/results/seed1/)."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(
        folder / "fig1_fcnn_signal_space.ipynb",
        'profile = "default"\nout_dir = None\ndataset = None\nquick = None',
        "from pathlib import Path\n"
        "Path(out_dir, 'metrics').mkdir(parents=True, exist_ok=True)\n"
        "Path(out_dir, 'metrics', 'fig1.json').write_text("
        'f\'{{"dataset": "{dataset}", "quick": {str(quick).lower()}}}\')\n',
    )
    monkeypatch.setattr(run, "NOTEBOOK_DIR", folder)
    started = tmp_path / "checkout"
    started.mkdir()
    monkeypatch.chdir(started)
    argv = ["run", "--profile", "smoke", "--out-dir", "results/seed1", "--only"]
    argv += ["fig1_fcnn_signal_space", "--set", "dataset=fashion-mnist", "--set", "quick=false"]
    assert main(argv) == 0
    out = started / "results" / "seed1"
    assert json.loads((out / "metrics" / "fig1.json").read_text()) == {
        "dataset": "fashion-mnist",  # --set reaches the notebook: any RunConfig field
        "quick": False,
    }
    for written in ("run.json", "index.html", "notebooks/fig1_fcnn_signal_space.ipynb"):
        assert (out / written).is_file(), written
    assert not (folder / "results").exists()  # nothing under the kernels' working folder
    assert json.loads((out / "run.json").read_text())["parameters"]["out_dir"] == str(out)


def test_the_cli_refuses_a_field_given_twice_and_an_unknown_one(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--profile", "smoke", "--seed", "1", "--set", "seed=2"])
    assert "seed given twice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--profile", "smoke", "--set", "colour=red"])
    assert "unknown parameters ['colour']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--out-dir", "a", "--set", "out_dir=b"])
    assert "out_dir given twice (--out-dir and --set out_dir=...)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--set", "profile=paper"])
    assert "the profile is --profile NAME" in capsys.readouterr().err


@pytest.mark.notebook
def test_kernels_talk_over_ipc_and_the_console_stays_clean(tmp_path, monkeypatch, capfd):
    """ipykernel warns on the console, once per notebook, that a TCP kernel runs unencrypted;
    the runner's kernels use IPC sockets (in the temporary folder, removed at shutdown)."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(folder / "fig1_fcnn_signal_space.ipynb", "seed = None", "print('sum', 2 + 2)")
    monkeypatch.setattr(run, "NOTEBOOK_DIR", folder)
    sockets = Path(tempfile.mkdtemp(prefix="nn-", dir="/tmp"))  # short: a socket path is short
    monkeypatch.setattr(run, "tempfile", SimpleNamespace(gettempdir=lambda: str(sockets)))
    config = RunConfig.from_profile("smoke", out_dir=str(tmp_path / "out"))
    rows = run.run_notebooks(config, progress=False)
    assert [r["status"] for r in rows] == ["ok"]
    executed = nbformat.read(tmp_path / "out" / "notebooks" / "fig1_fcnn_signal_space.ipynb", 4)
    body = next(c for c in executed.cells if "print('sum'" in c.source)
    assert body.outputs[0]["text"] == "sum 4\n"
    console = capfd.readouterr()
    assert "without encryption" not in console.err + console.out
    assert list(sockets.iterdir()) == []  # the kernel's sockets were there, and are removed
    sockets.rmdir()
