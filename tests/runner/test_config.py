"""Run configuration: one frozen, validated RunConfig with exactly the notebooks' parameters,
the named profiles, explicit values over the profile's, and the run context's files."""

import ast
import dataclasses
import json

import pytest
import torch
from helpers import mode, umask

from nnspaces import training
from nnspaces.cli import main
from nnspaces.inversion import score_stats
from nnspaces.models import build_model
from nnspaces.paths import NOTEBOOK_DIR
from nnspaces.runner.config import (
    PROFILES,
    RESULTS,
    RunConfig,
    RunContext,
    check_device,
    check_folder_name,
    setup_run,
)
from nnspaces.runner.metrics import Fig1Metrics
from nnspaces.runner.notebooks import NOTEBOOKS as REGISTERED
from nnspaces.runner.notebooks import runner_notebooks
from nnspaces.training import TrainConfig, make_optimizer

FIELDS = ["profile", "dataset", "n_train", "n_test", "epochs", "seed", "device", "out_dir", "quick"]
ALL_NETS = ("fcnn1", "fcnn5", "resnet18", "vit")  # every registered network


@pytest.fixture
def custom_profile(monkeypatch):
    """A profile whose every value differs from RunConfig's defaults, so that an explicit
    value equal to a default (0, False) is seen to override it."""
    cfg = RunConfig(
        "custom",
        dataset="mnist",
        n_train=300,
        n_test=100,
        epochs={"fcnn1": 4, "fcnn5": 5, "resnet18": 6, "vit": 7},
        seed=5,
        out_dir="/somewhere/else",
        quick=True,
    )
    monkeypatch.setitem(PROFILES, "custom", cfg)
    return cfg


# --------------------------------------------------------------------------- fields, profiles


def test_fields_are_exactly_the_notebooks_parameters():
    """Every notebook the runner runs declares exactly the RunConfig fields; the one tool
    notebook (any_model: a model given as an import string) has its own parameters."""
    NOTEBOOKS = runner_notebooks()

    assert [f.name for f in dataclasses.fields(RunConfig)] == FIELDS
    notebooks = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    assert {p.stem for p in notebooks} == {nb.name for nb in REGISTERED}
    for path in notebooks:
        cells = json.loads(path.read_text())["cells"]
        tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, path.name
        tree = ast.parse("".join(tagged[0]["source"]))
        names = [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets]
        if path.stem in NOTEBOOKS:
            assert names == FIELDS, path.name
        else:
            assert {"model", "weights", "out_dir", "seed", "device"} <= set(names), path.name


def test_the_lessons_run_in_reading_order():
    """The paper's figures, then the lessons beyond Figure 3, then the explorer; each lesson
    notebook sets itself up like the figures (``setup_run`` with every parameter)."""
    NOTEBOOKS = runner_notebooks()

    figures = ["fig1_fcnn_signal_space", "fig2_resnet_conv_signal_space", "fig3_inverse_images"]
    lessons = ["lesson4_exact_inversion", "lesson5_priors_and_natural_images"]
    assert [n for n in NOTEBOOKS if n in figures + lessons] == figures + lessons
    assert NOTEBOOKS.index("lesson5_priors_and_natural_images") < NOTEBOOKS.index("explore")
    for name in lessons:
        source = "".join(
            "".join(c["source"])
            for c in json.loads((NOTEBOOK_DIR / f"{name}.ipynb").read_text())["cells"]
        )
        call = "setup_run(profile, " + ", ".join(f"{f}={f}" for f in FIELDS[1:4])
        assert call in " ".join(source.split()), name


def test_profiles():
    assert list(PROFILES) == ["smoke", "default", "paper"]
    for name, cfg in PROFILES.items():
        assert isinstance(cfg, RunConfig) and cfg.profile == name
        assert set(cfg.epochs) == set(ALL_NETS)
        assert cfg.seed == 0 and cfg.device == "cpu" and cfg.out_dir is None
    smoke = PROFILES["smoke"]
    assert (smoke.dataset, smoke.n_train, smoke.n_test, smoke.quick) == (
        "mnist-embedded",
        500,
        200,
        True,
    )
    assert smoke.epochs == dict.fromkeys(ALL_NETS, 1)
    default = PROFILES["default"]
    assert (default.dataset, default.n_train, default.n_test, default.quick) == (
        "mnist-embedded",
        None,
        None,
        False,
    )
    assert default.epochs == {"fcnn1": 20, "fcnn5": 20, "resnet18": 10, "vit": 30}


def test_paper_profile_is_the_papers_setting():
    cfg = RunConfig.from_profile("paper")
    assert cfg.dataset == "mnist"
    # Section 2: 20 epochs; vit is not the paper's
    assert cfg.epochs == {"fcnn1": 20, "fcnn5": 20, "resnet18": 20, "vit": 30}
    assert cfg.n_train is None and cfg.n_test is None  # every image
    assert cfg.quick is False and cfg.profile == "paper"
    assert cfg == PROFILES["paper"]
    assert cfg.output_dir == RESULTS / "paper"


def test_run_config_is_frozen_and_owns_its_epochs():
    cfg = RunConfig.from_profile("paper")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1
    epochs = {"fcnn1": 3}
    made = RunConfig("mine", epochs=epochs)
    epochs["fcnn1"] = 7
    assert made.epochs == {"fcnn1": 3}
    cfg.epochs["fcnn1"] = 1  # a caller's config is its own: the profile keeps its value
    assert PROFILES["paper"].epochs["fcnn1"] == 20
    assert RunConfig.from_profile("paper").epochs["fcnn1"] == 20


# --------------------------------------------------------------------------- from_profile


def test_explicit_values_override_the_profile(custom_profile, tmp_path):
    cfg = RunConfig.from_profile(
        "custom",
        dataset="mnist-embedded",
        n_train=40,
        n_test=20,
        epochs={"fcnn1": 2, "fcnn5": 3, "resnet18": 1},
        seed=9,
        device="cpu",
        out_dir=tmp_path,
        quick=False,
    )
    assert cfg == RunConfig(
        "custom",
        "mnist-embedded",
        40,
        20,
        {"fcnn1": 2, "fcnn5": 3, "resnet18": 1, "vit": 7},
        9,
        "cpu",
        str(tmp_path),
        False,
    )
    assert cfg.output_dir == tmp_path


def test_values_equal_to_a_default_still_override(custom_profile):
    # 0 and False are values, not "not given"
    assert RunConfig.from_profile("custom", seed=0).seed == 0
    assert RunConfig.from_profile("custom", quick=False).quick is False
    assert RunConfig.from_profile("smoke", quick=False).quick is False


def test_none_keeps_the_profiles_values(custom_profile):
    nones = dict.fromkeys(FIELDS[1:])
    assert RunConfig.from_profile("custom", **nones) == custom_profile
    assert RunConfig.from_profile("custom") == custom_profile
    for name in PROFILES:
        assert RunConfig.from_profile(name, **nones) == PROFILES[name]
    # one value given, the others kept
    cfg = RunConfig.from_profile("custom", seed=1, n_test=None)
    assert cfg == dataclasses.replace(custom_profile, seed=1)


def test_epochs_one_integer_or_some_networks(custom_profile):
    assert RunConfig.from_profile("custom", epochs=2).epochs == dict.fromkeys(ALL_NETS, 2)
    assert RunConfig.from_profile("custom", epochs={"fcnn5": 9}).epochs == {
        "fcnn1": 4,
        "fcnn5": 9,
        "resnet18": 6,
        "vit": 7,
    }
    assert RunConfig.from_profile("default", epochs={"resnet18": 1}).epochs == {
        "fcnn1": 20,
        "fcnn5": 20,
        "resnet18": 1,
        "vit": 30,
    }
    assert custom_profile.epochs == {"fcnn1": 4, "fcnn5": 5, "resnet18": 6, "vit": 7}  # not merged


def test_all_means_every_image(custom_profile):
    cfg = RunConfig.from_profile("custom", n_train="all")
    assert cfg.n_train is None and cfg.n_test == 100
    assert RunConfig.from_profile("custom", n_test="all").n_test is None
    assert RunConfig("x", n_train="all").n_train is None


def _parameter_cases():
    for name in PROFILES:
        yield name, RunConfig.from_profile(name)
    # n_train None must come back as "all": a notebook's None means "the profile's" (500)
    yield "smoke-all", RunConfig.from_profile("smoke", n_train="all")
    yield (
        "default-mixed",
        RunConfig.from_profile("default", n_test=30, epochs={"fcnn5": 2}, seed=3, quick=True),
    )
    yield (
        "paper-out-dir",
        RunConfig.from_profile("paper", out_dir="/tmp/nnspaces-x", dataset="mnist-embedded"),
    )


PARAMETER_CASES = dict(_parameter_cases())


@pytest.mark.parametrize("case", PARAMETER_CASES)
def test_parameters_reproduce_the_config(case):
    cfg = PARAMETER_CASES[case]
    params = cfg.parameters()
    assert list(params) == FIELDS
    assert json.loads(json.dumps(params)) == params  # what papermill passes: plain JSON
    assert params["n_train"] == ("all" if cfg.n_train is None else cfg.n_train)
    assert params["n_test"] == ("all" if cfg.n_test is None else cfg.n_test)
    again = RunConfig.from_profile(**params)
    # everything but how out_dir is spelled (see test_parameters_round_trip_exactly)
    assert again.output_dir == cfg.output_dir
    assert dataclasses.replace(again, out_dir=None) == dataclasses.replace(cfg, out_dir=None)


@pytest.mark.parametrize("case", list(PARAMETER_CASES))
def test_parameters_round_trip_exactly(case):
    cfg = PARAMETER_CASES[case]
    assert RunConfig.from_profile(**cfg.parameters()) == cfg


def test_epochs_for():
    cfg = RunConfig.from_profile("default")
    assert [cfg.epochs_for(n) for n in ALL_NETS] == [20, 20, 10, 30]
    partial = RunConfig("x", epochs={"fcnn1": 2})
    with pytest.raises(ValueError, match=r"sets no epochs for network 'fcnn5'.*epochs=\{'fcnn5'"):
        partial.epochs_for("fcnn5")


def test_output_dir():
    assert RunConfig.from_profile("smoke").output_dir == RESULTS / "smoke"
    assert RunConfig("mine").output_dir == RESULTS / "mine"
    assert str(RunConfig.from_profile("smoke", out_dir="/tmp/r").output_dir) == "/tmp/r"


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("profile", ["..", ".", "a/b", "", "a\\b", " x", "x\0"])
def test_profile_must_be_a_plain_folder_name(profile):
    expected = f"profile={profile!r} must be a plain folder name"
    for make in (
        lambda: RunConfig(profile),
        lambda: RunConfig.from_profile(profile),
        lambda: setup_run(profile),
        lambda: check_folder_name("profile", profile),
    ):
        with pytest.raises(ValueError) as e:
            make()
        assert expected in str(e.value)
        assert "not '.' or '..'" in str(e.value)


def test_check_folder_name_accepts_plain_names():
    for name in ("default", "my-run_2", "run.v2", "..x"):
        assert check_folder_name("profile", name) == name
    with pytest.raises(ValueError, match="profile=3"):
        check_folder_name("profile", 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dataset": "cifar"}, "unknown dataset 'cifar'; allowed: mnist-embedded, mnist"),
        ({"n_train": 3}, "n_train=3 must be an integer >= 10"),
        ({"n_test": 9}, "n_test=9 must be an integer >= 10, or 'all'"),
        ({"n_train": True}, "n_train=True"),
        ({"n_train": 100.0}, "n_train=100.0"),
        ({"n_train": "some"}, "n_train='some'"),
        ({"epochs": {"vgg": 2}}, "unknown network 'vgg'"),
        ({"epochs": {"fcnn1": -1}}, "epochs['fcnn1']=-1"),
        ({"epochs": {"fcnn1": 0}}, "epochs['fcnn1']=0"),
        ({"epochs": 0}, "=0 must be an integer >= 1"),
        ({"epochs": True}, "epochs=True"),
        ({"epochs": "many"}, "epochs='many'"),
        ({"epochs": {"fcnn1": 2.0}}, "epochs['fcnn1']=2.0"),
        ({"seed": -2}, "seed=-2"),
        ({"seed": True}, "seed=True"),
        ({"seed": 1.5}, "seed=1.5"),
        ({"quick": "yes"}, "quick='yes' must be True or False"),
        ({"quick": 1}, "quick=1"),
        ({"device": "tpu"}, "device 'tpu'"),
        ({"lr": 0.1}, "unknown parameters ['lr']"),
    ],
)
def test_bad_parameters(tmp_path, kwargs, message):
    for make in (
        lambda: setup_run(out_dir=tmp_path, **kwargs),
        lambda: RunConfig.from_profile("smoke", out_dir=tmp_path, **kwargs),
    ):
        with pytest.raises(ValueError) as e:
            make()
        assert message in str(e.value)
    assert not any(tmp_path.iterdir())  # nothing made for a config that was refused


def test_bad_values_refused_by_the_dataclass_itself():
    with pytest.raises(ValueError, match="epochs=3 must be a dict by network"):
        RunConfig("x", epochs=3)
    with pytest.raises(ValueError, match="n_train=5"):
        RunConfig("x", n_train=5)


def test_unknown_profile():
    with pytest.raises(ValueError, match="unknown profile 'nope'; allowed: smoke, default, paper"):
        RunConfig.from_profile("nope")


def test_devices():
    assert check_device("cpu") == torch.device("cpu")
    assert RunConfig("x", device=torch.device("cpu")).device == "cpu"
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        check_device("tpu")
    with pytest.raises(ValueError, match="device 'meta' is not supported"):
        check_device("meta")


def test_cuda_requested_without_cuda():
    if torch.cuda.is_available():
        assert check_device("cuda").type == "cuda"
    else:
        with pytest.raises(ValueError, match="CUDA is not available"):
            check_device("cuda")
        with pytest.raises(ValueError, match="CUDA is not available"):
            RunConfig.from_profile("smoke", device="cuda:0")


def test_cli_errors(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--profile", "nope"])
    assert "unknown profile 'nope'; allowed: smoke, default, paper" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--profile", "smoke", "--only", "fig9"])
    assert "unknown notebook(s) ['fig9']" in capsys.readouterr().err


# --------------------------------------------------------------------------- the run context


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    """A small run (its data loaded once for the module)."""
    out = tmp_path_factory.mktemp("ctx") / "run"
    return setup_run("smoke", n_train=100, n_test=50, epochs={"fcnn1": 2}, seed=2, out_dir=out)


def test_context_folders_data_and_metrics(ctx):
    out = ctx.config.output_dir
    assert isinstance(ctx, RunContext)
    assert ctx.out_dir == out and out.is_dir()
    assert ctx.config == RunConfig.from_profile(
        "smoke", n_train=100, n_test=50, epochs={"fcnn1": 2}, seed=2, out_dir=out
    )
    assert ctx.config.epochs == {"fcnn1": 2, "fcnn5": 1, "resnet18": 1, "vit": 1}
    assert ctx.device == torch.device("cpu") and ctx.seed == 2
    assert ctx.figure_path("fig1") == out / "figures" / "fig1.png"
    assert (ctx.data.n_train, ctx.data.n_test, ctx.data.name) == (100, 50, "mnist-embedded")
    metrics = Fig1Metrics("fcnn1", 0.5, 1, [3.0, 1.0], 3.0, [0.25, float("nan")])
    with umask(0o022):
        path = ctx.save_metrics(metrics)
    assert path == out / "metrics" / "fig1.json"
    assert mode(path) == 0o644  # readable by group and others
    text = path.read_text()
    assert text.count('"dataset": "mnist-embedded"') == 1
    saved = json.loads(text)
    assert saved["profile"] == "smoke" and saved["n_train"] == 100 and saved["n_test"] == 50
    assert saved["network"] == "fcnn1" and saved["singular_values"] == [3.0, 1.0]
    assert saved["energy_kept_class_means"] == [0.25, None]
    assert [p.name for p in path.parent.iterdir()] == ["fig1.json"]  # no temporary file left


def test_context_trains_with_the_runs_epochs_and_seed(ctx, tmp_path, monkeypatch):
    monkeypatch.setattr(training, "DEFAULT_CACHE", tmp_path / "cache")
    with umask(0o022):
        net = ctx.trained("fcnn1", progress=False)
    assert net.config == TrainConfig("fcnn1", epochs=2, seed=2)
    assert not net.from_cache and net.checkpoint.parent == tmp_path / "cache"
    saved = ctx.out_dir / "models" / "fcnn1.pt"
    assert mode(saved) == 0o644 and mode(net.checkpoint) == 0o644
    state = torch.load(saved, weights_only=True)
    model = build_model("fcnn1")
    model.load_state_dict(state)
    assert torch.equal(model[1].weight, net.model[1].weight.cpu())
    # loaded once per context; a new context finds it in the cache, the same network
    assert ctx.trained("fcnn1", progress=False) is net
    again = ctx.config.context().trained("fcnn1", progress=False)
    assert again.from_cache and torch.equal(again.model[1].weight, net.model[1].weight)
    # its outputs on the training images, kept in the checkpoint: the score statistics
    expected = score_stats(net.model, ctx.data.x_train, ctx.data.y_train)
    for stats in (ctx.score_stats("fcnn1"), ctx.config.context().score_stats("fcnn1")):
        assert torch.equal(stats.outputs, expected.outputs)
        assert torch.equal(stats.labels, ctx.data.y_train)
    # each network its own: another name is another network with its own outputs
    other = ctx.trained("fcnn5", progress=False)
    assert other.config.network == "fcnn5" and ctx.trained("fcnn1", progress=False) is net
    assert not torch.equal(ctx.score_stats("fcnn5").outputs, expected.outputs)
    with pytest.raises(ValueError, match="unknown network 'vgg'"):
        ctx.trained("vgg")


def test_context_trains_each_network_with_its_recipe(ctx, tmp_path, monkeypatch):
    monkeypatch.setattr(training, "DEFAULT_CACHE", tmp_path / "cache")
    used = []

    def spy(model, config, steps_per_epoch):
        used.append(config)
        return make_optimizer(model, config, steps_per_epoch)

    monkeypatch.setattr(training, "make_optimizer", spy)
    net = ctx.trained("vit", progress=False)
    assert net.config == TrainConfig.for_network("vit", epochs=1, seed=2)
    assert used == [net.config] and net.config.optimizer == "adamw"
    assert net.config.schedule == "one-cycle" and net.config.batch_size == 64
    assert net.model(ctx.data.x_test[:3]).shape == (3, 10)


def test_a_printed_config_shows_no_absolute_path(tmp_path):
    """``print(ctx.config)`` in every lesson: the folder relative to the repository, or only its
    name outside it; "all" where every image is used (None inside the config)."""
    from nnspaces.paths import REPO_ROOT, shown

    inside = RunConfig.from_profile("default")
    text = str(inside)
    assert "out_dir='results/default'" in text and "n_train='all'" in text
    assert str(REPO_ROOT) not in text
    outside = str(RunConfig.from_profile("smoke", out_dir=str(tmp_path / "seed1")))
    assert "out_dir='.../seed1'" in outside and str(tmp_path) not in outside
    assert shown(REPO_ROOT / "results" / "x") == "results/x" and shown(REPO_ROOT) == "."
