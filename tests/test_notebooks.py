"""Every notebook runs headless under papermill (smoke profile) and writes well-formed
metrics; a bad parameter stops a notebook at its validation cell with a clear message."""

import json
import math
import re
import stat

import nbformat
import numpy as np
import papermill as pm
import pytest
import torch

from nnspaces.data import DEFAULT_ROOT
from nnspaces.models import build_model
from nnspaces.paths import NOTEBOOK_DIR
from nnspaces.runner.config import RunConfig
from nnspaces.runner.execute import available_notebooks, format_table

pytestmark = pytest.mark.notebook


def test_every_notebook_runs(smoke_run):
    out, rows = smoke_run
    assert [r["notebook"] for r in rows] == available_notebooks()
    failed = [(r["notebook"], r["status"]) for r in rows if r["status"] != "ok"]
    assert not failed
    summary = json.loads((out / "run.json").read_text())
    assert summary["profile"] == "smoke" and len(summary["notebooks"]) == len(rows)
    # every notebook got the profile's values, exactly
    assert summary["parameters"] == RunConfig.from_profile("smoke", out_dir=str(out)).parameters()
    assert summary["parameters"]["n_train"] == 500 and summary["parameters"]["quick"] is True
    assert "fig1_fcnn_signal_space" in format_table(rows)


def test_results_are_readable_by_group_and_others(smoke_run):
    """Under a 022 umask every file a run writes is 0644 (a teacher can serve results/)."""
    out, _ = smoke_run
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 20
    modes = {str(p.relative_to(out)): stat.S_IMODE(p.stat().st_mode) for p in files}
    assert {k: oct(v) for k, v in modes.items() if v != 0o644} == {}


#: What a batch run must not save in a notebook: progress bars (tqdm's text, also the plain
#: text of its widget) and warnings; stderr is checked by stream name.
PROGRESS_TEXT = re.compile(r"\d+%\||\d+/\d+ \[\d|\?it/s|it/s\]|s/it\]")
WARNING_TEXT = re.compile(r"\b\w*Warning\b")


def batch_noise(folder) -> list[str]:
    """``"<notebook> cell <i> (<id>): <what>: <text>"`` for every output of the executed
    notebooks in ``folder`` that a batch run must not leave: stderr, warnings, progress bars."""
    found = []
    for path in sorted(folder.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            for out in cell.get("outputs", []):
                data = out.get("data", {})
                texts = [out.get("text", "")] + [
                    v if isinstance(v, str) else "".join(v)
                    for k, v in data.items()
                    if k.startswith("text/")
                ]
                text = "".join(texts)
                what = [
                    name
                    for name, bad in (
                        ("stderr", out.get("name") == "stderr"),
                        ("warning", WARNING_TEXT.search(text)),
                        ("progress bar", PROGRESS_TEXT.search(text)),
                    )
                    if bad
                ]
                if what:
                    where = f"{path.stem} cell {i} ({cell.get('id', '?')})"
                    found.append(f"{where}: {', '.join(what)}: {text.strip()[:200]!r}")
    return found


def test_batch_run_notebooks_hold_no_stderr_warnings_or_progress_bars(smoke_run):
    """The runner's kernels are a batch run: no progress bar (widget or text), no warning
    and no stderr line is saved in any executed notebook."""
    out, _ = smoke_run
    noise = batch_noise(out / "notebooks")
    assert not noise, "batch-executed notebooks hold:\n" + "\n".join(noise)


def test_every_saved_figure_is_shown_in_its_notebook(smoke_run):
    """A cell that saves a figure shows it, once per figure (not only a notebook's first
    figure, and not drawn twice)."""
    out, _ = smoke_run
    wrong = []
    for path in sorted((out / "notebooks").glob("*.ipynb")):
        for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
            outputs = cell.get("outputs", [])
            images = [o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {})]
            if "save_figure(" in cell.source and (not images or len(set(images)) < len(images)):
                wrong.append(f"{path.stem} cell {i}: {len(images)} images")
    assert not wrong


def test_batch_noise_names_the_notebook_cell_and_output(tmp_path):
    cell = nbformat.v4.new_code_cell("x", id="c1")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="fine\n"),
        nbformat.v4.new_output("stream", name="stderr", text="oops\n"),
        nbformat.v4.new_output("stream", name="stdout", text="a.py:1: RuntimeWarning: x\n"),
        nbformat.v4.new_output(
            "display_data",
            data={
                "application/vnd.jupyter.widget-view+json": {"model_id": "m", "version_major": 2},
                "text/plain": "newton:  18%|#8        | 11/60 [00:01<00:05,  9.1it/s]",
            },
        ),
    ]
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), tmp_path / "nb.ipynb")
    noise = batch_noise(tmp_path)
    assert [n.split(": '")[0] for n in noise] == [
        "nb cell 0 (c1): stderr",
        "nb cell 0 (c1): warning",
        "nb cell 0 (c1): progress bar",
    ]


def _metrics(out, name):
    return json.loads((out / "metrics" / f"{name}.json").read_text())


def test_fig1_outputs(smoke_run):
    out, _ = smoke_run
    m = _metrics(out, "fig1")
    assert m["dataset"] == "mnist-embedded" and (m["n_train"], m["n_test"]) == (500, 200)
    assert 0 <= m["test_accuracy"] <= 1
    s = m["singular_values"]
    assert len(s) == 10 and all(a >= b > 0 for a, b in zip(s, s[1:], strict=False))
    assert math.isclose(m["condition_number"], s[0] / s[-1], rel_tol=1e-9)
    assert (out / "figures" / "fig1.png").stat().st_size > 10_000
    assert (out / "figures" / "fig1_energy.png").is_file()
    assert (out / "models" / "fcnn1.pt").is_file()


def test_fig2_outputs(smoke_run):
    out, _ = smoke_run
    m = _metrics(out, "fig2")
    assert m["layer"] == "layer1.0.conv1" and len(m["singular_values"]) == 9
    s = m["singular_values"]
    assert math.isclose(m["condition_number"], s[0] / s[-1], rel_tol=1e-9)
    assert len(m["per_layer"]) == 20
    for row in m["per_layer"]:
        assert set(row) == {"layer", "shape", "condition_number_trained", "condition_number_init"}
        assert row["condition_number_trained"] >= 1 and row["condition_number_init"] >= 1
    assert (out / "figures" / "fig2.png").is_file() and (out / "models" / "resnet18.pt").is_file()


def test_fig3_outputs(smoke_run):
    out, _ = smoke_run
    m = _metrics(out, "fig3")
    assert set(m["networks"]) == {"fcnn1", "fcnn5", "resnet18"}  # the paper's, not vit
    names = ("avg-img", "min-img", "avg-min-img", "newton", "box", "best", "best-box")
    with np.load(out / "inversions.npz") as npz:
        assert not [k for k in npz.files if "/natural/" in k or "null-space" in k]  # lessons 4, 5
        for net in ("fcnn1", "fcnn5", "resnet18"):
            methods = m["networks"][net]["methods"]
            expected = {*names, *(f"{n}+training" for n in names[:3])}
            expected |= {"exact"} if net != "resnet18" else set()
            assert expected <= set(methods), (net, sorted(methods))
            assert set(m["networks"][net]["cross_model"]) == set(methods)
            for name in expected:
                assert npz[f"{net}/{name}/images"].shape == (10, 1, 28, 28)
                assert npz[f"{net}/{name}/targets"].shape == (10, 10)
                assert len(methods[name]["rel_error"]) == 10
            # "best" is per class the lowest error of every method; "best-box" stays in [0, 1]
            errors = np.array(
                [methods[k]["rel_error"] for k in methods if k not in ("best", "best-box")],
                dtype=float,
            )
            best = np.array(methods["best"]["rel_error"], dtype=float)
            assert np.allclose(best, np.nanmin(errors, axis=0))
            images = npz[f"{net}/best-box/images"]
            assert images.min() >= 0 and images.max() <= 1
            # the paper's targets: output j asks for one value (its minimum) in every row but
            # row j, which asks for its maximum
            t = npz[f"{net}/best/targets"]
            for j in range(10):
                others = np.delete(t[:, j], j)
                assert np.all(others == others[0]) and t[j, j] > others[0]
    figures = ["fig3", "fig3_scores", *(f"fig3_methods_{n}" for n in m["networks"])]
    figures += ["lesson4_null_space", "lesson4_exact"]
    figures += ["lesson5_box", "lesson5_priors", "lesson5_frontier", "lesson5_natural"]
    for fig in figures:
        assert (out / "figures" / f"{fig}.png").stat().st_size > 10_000, fig


def test_lesson4_outputs(smoke_run):
    """Lesson 4 saves its own exact and Newton results (the same targets as Figure 3's), the
    null-space samples and fcnn5's backward walk, in its own files."""
    out, _ = smoke_run
    m, fig3 = _metrics(out, "lesson4"), _metrics(out, "fig3")
    assert set(m["networks"]) == {"fcnn1", "fcnn5", "resnet18"}
    with np.load(out / "lesson4_inversions.npz") as npz:
        for net, entry in m["networks"].items():
            wanted = {"newton", "best"} | ({"exact"} if net != "resnet18" else set())
            # "best-box" only where some image lies inside [0, 1]
            inside = any(0 in entry["methods"][k]["outside"] for k in wanted - {"best"})
            assert set(entry["methods"]) == wanted | ({"best-box"} if inside else set()), net
            for method in ("exact", "newton"):
                if method in entry["methods"]:
                    saved = npz[f"{net}/{method}/targets"]
                    assert np.array_equal(saved, fig3["networks"][net]["methods"][method]["target"])
        for net in ("fcnn1", "fcnn5"):
            assert m["networks"][net]["null_space"]["success"] == [True] * 6
        walk = m["walk"]
        assert walk["network"] == "fcnn5" and len(walk["reason"]) == 10
        failed = [r for r, ok in zip(walk["reason"], walk["success"], strict=True) if not ok]
        assert all(failed)  # every failed digit says why
        assert npz["fcnn5/walk/images"].shape == (10, 1, 28, 28)


def _saved_model(out, name):
    model = build_model(name, seed=None)
    state = torch.load(out / "models" / f"{name}.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.double().eval()


def test_natural_images_reloaded_reach_their_targets_and_are_recognised(smoke_run):
    """The saved natural pre-images, checked by code of this test alone: their outputs are
    as far from the saved targets as the metrics say, and the other networks recognise as
    many digits as the metrics claim."""
    out, _ = smoke_run
    m = _metrics(out, "lesson5")
    nets = list(m["networks"])
    assert nets == ["fcnn1", "fcnn5", "resnet18"]
    models = {n: _saved_model(out, n) for n in nets}
    with np.load(out / "lesson5_inversions.npz", allow_pickle=False) as npz:
        for net in nets:
            natural = m["networks"][net]["natural"]
            x = torch.from_numpy(npz[f"{net}/natural/images"]).double()
            t = torch.from_numpy(npz[f"{net}/natural/targets"]).double()
            classes = npz[f"{net}/natural/classes"].tolist()
            settings = json.loads(str(npz[f"{net}/natural/settings"]))
            assert settings["chosen_weight"] == natural["chosen_weight"]
            assert x.min() >= 0 and x.max() <= 1  # natural pre-images stay in the box
            with torch.no_grad():
                rel = (models[net](x) - t).norm(dim=1) / t.norm(dim=1)
                seen = [
                    models[o](x).argmax(1).numpy() == np.array(classes) for o in nets if o != net
                ]
            assert np.allclose(rel.numpy(), natural["result"]["rel_error"], rtol=1e-5)
            assert int(np.logical_and.reduce(seen).sum()) == natural["n_recognised"]
            # the prior-effect images of the figure are saved too, with their settings
        labels = {k.split("/")[2] for k in npz.files if k.startswith("resnet18/priors/")}
        assert labels == {"none", "tv 0.1", "l2-avg 1", "bn 0.001"}
        assert json.loads(str(npz["resnet18/priors/tv 0.1/settings"]))["priors"] == {"tv": 0.1}
        assert set(m["priors"]["runs"]) == labels
        for label, run in m["priors"]["runs"].items():  # the counts the notebook shows
            x = torch.from_numpy(npz[f"resnet18/priors/{label}/images"]).double()
            with torch.no_grad():
                seen = [models[o](x).argmax(1).numpy() == np.arange(10) for o in nets[:2]]
            assert int(np.logical_and.reduce(seen).sum()) == run["recognised_by_others"]
    with np.load(out / "lesson4_inversions.npz", allow_pickle=False) as npz:
        for net in ("fcnn1", "fcnn5"):  # the null-space samples: one output, different images
            x = torch.from_numpy(npz[f"{net}/null-space samples/images"]).double()
            t = torch.from_numpy(npz[f"{net}/null-space samples/targets"]).double()
            assert x.shape == (6, 1, 28, 28) and torch.isfinite(x).all()
            with torch.no_grad():
                assert torch.allclose(models[net](x), t, rtol=1e-6, atol=1e-6)
            assert (x - x[0]).abs().amax() > 1e-2  # and they do differ


def test_lesson6_probability_images_reloaded_reach_the_level(smoke_run):
    """Lesson 6's saved probability-target images, checked by code of this test alone: each
    network's softmax probability of the digit on the reloaded image is at or above the level
    exactly where the metrics say the digit succeeded; the walk's draws share one output."""
    out, _ = smoke_run
    m = _metrics(out, "lesson6")
    level = m["level"]
    assert level == 0.9 and set(m["probability"]) == {"fcnn1", "fcnn5", "resnet18", "vit"}
    assert set(m["not_applicable"]["resnet18"]) == {"exact"} == set(m["not_applicable"]["vit"])
    with np.load(out / "lesson6.npz", allow_pickle=False) as npz:
        for net, by in m["probability"].items():
            model = _saved_model(out, net)
            assert {"lm", "lm-box", "descent", "box", "lm log-odds"} <= set(by)
            for label, r in by.items():
                x = torch.from_numpy(npz[f"{net}/probability/{label}/images"]).double()
                classes = npz[f"{net}/probability/{label}/classes"].tolist()
                assert classes == r["classes"] and len(x) == len(classes) >= 4
                with torch.no_grad():
                    p = torch.softmax(model(x), 1)[torch.arange(len(x)), classes].numpy()
                assert np.allclose(
                    p, np.array(r["prob"], dtype=float), rtol=1e-5, atol=1e-7, equal_nan=True
                )
                assert [bool(v) for v in p >= level] == r["success"], (net, label)
                if label.split()[0].endswith("box"):
                    assert x.min() >= 0 and x.max() <= 1
        for net in ("fcnn1", "fcnn5"):
            model = _saved_model(out, net)
            x = torch.from_numpy(npz[f"{net}/walk/first/images"]).double()
            t = torch.from_numpy(npz[f"{net}/walk/first/targets"]).double()
            assert m["walk"][net]["first"]["success"] == [True] * len(x)
            with torch.no_grad():
                assert torch.allclose(model(x), t, rtol=1e-6, atol=1e-6)
    heads = m["heads"]
    assert len(heads) == 4 * 4 * 4  # layers x heads x (Q, K, V, output)
    assert all(h["rank"] == 16 for h in heads)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"dataset": "cifar10"}, "unknown dataset 'cifar10'"),
        ({"epochs": {"fcnn1": 0}}, "epochs['fcnn1']=0 must be an integer >= 1"),
        ({"device": "tpu"}, "device 'tpu'"),
        ({"profile": ".."}, "profile='..' must be a plain folder name"),
        ({"profile": "mine"}, "unknown profile 'mine'; allowed: smoke, default, paper"),
    ],
)
def test_bad_parameter_fails_at_validation(tmp_path, parameters, message):
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(
            NOTEBOOK_DIR / "fig1_fcnn_signal_space.ipynb",
            tmp_path / "out.ipynb",
            parameters={"out_dir": str(tmp_path), **parameters},
            cwd=str(NOTEBOOK_DIR),
            progress_bar=False,
        )
    assert e.value.ename == "ValueError" and message in e.value.evalue
    # it stopped at the validation cell: nothing was trained or written
    assert not (tmp_path / "metrics").exists() and not (tmp_path / "models").exists()


@pytest.mark.skipif(
    (DEFAULT_ROOT / "MNIST" / "raw").is_dir(), reason="full MNIST is here: it would train on it"
)
def test_profile_paper_means_the_papers_data(tmp_path):
    """``-p profile paper`` selects the paper's setting, full MNIST (absent here), not the
    embedded digits with another folder name."""
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(
            NOTEBOOK_DIR / "fig1_fcnn_signal_space.ipynb",
            tmp_path / "out.ipynb",
            parameters={"profile": "paper", "out_dir": str(tmp_path)},
            cwd=str(NOTEBOOK_DIR),
            progress_bar=False,
        )
    assert e.value.ename == "DataError" and "mnist: missing IDX files" in e.value.evalue


@pytest.mark.notebook
def test_every_saved_image_set_carries_its_judges_verdict(smoke_run):
    """Every ``.npz`` a run saves has, beside it, one verdict row per image of every set and
    the counts in its metrics; re-reading the images with the judges gives the same reads."""
    import pandas as pd

    from nnspaces.inversion.judges import get_judges
    from nnspaces.inversion.verdicts import image_sets, verdicts
    from nnspaces.runner.config import RunConfig

    out, _ = smoke_run
    files = sorted(out.glob("*.npz"))
    assert {p.stem for p in files} >= {"inversions", "lesson4_inversions", "lesson5_inversions"}
    panel = None
    for path in files:
        sets = image_sets(path)
        frame = pd.read_csv(out / f"{path.stem}.verdicts.csv")
        counts = json.loads((out / "metrics" / f"verdicts_{path.stem}.json").read_text())
        assert set(frame["set"]) == set(sets) == set(counts["sets"])
        for key, (_images, classes) in sets.items():
            rows = frame[frame["set"] == key]
            assert rows["digit"].tolist() == classes
            assert counts["sets"][key]["digit and inside"] == int(rows["digit and inside"].sum())
        if path.stem == "lesson5_inversions":  # read again, by a panel loaded afresh
            if panel is None:
                config = RunConfig.from_profile("smoke", out_dir=str(out))
                panel = get_judges(config.context().data, progress=False)
            key = "resnet18/natural"
            again = verdicts(*sets[key], panel)
            rows = frame[frame["set"] == key]
            for name in panel:
                assert again[name].tolist() == rows[name].tolist()
