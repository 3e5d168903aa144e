"""One run configuration: the notebooks' parameters, the named profiles, and validation.

A :class:`RunConfig` holds exactly the parameters every notebook declares; it is frozen and
validated when made, so a bad value fails at once with a message naming it and the allowed
ones. :data:`PROFILES` are RunConfigs; :meth:`RunConfig.from_profile` takes one and replaces
the values given explicitly (``None`` keeps the profile's)::

    config = RunConfig.from_profile("paper", seed=1)   # the paper's data and epochs, seed 1
    ctx = config.context()                             # data, trained networks, output folders

``papermill ... -p profile paper`` therefore means the paper's setting, and the runner, the
benchmark and the notebooks build their configuration the same way, from one set of defaults.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..data import DATASETS, Dataset, load_dataset
from ..files import write_csv, write_json
from ..inversion.imagesets import save_inversions
from ..inversion.judges import JUDGE_SEED, Judge, get_judges, judge_table
from ..inversion.targets import ScoreStats, make_targets
from ..inversion.verdicts import Verdicts, judge_file
from ..models import check_network
from ..paths import RESULTS, shown
from ..training import TrainConfig, TrainedNetwork, get_trained, save_checkpoint
from .numbers import VERDICTS_PREFIX

#: What a notebook's ``n_train = "all"`` means: every image (None inside a RunConfig).
ALL = "all"


def check_folder_name(label: str, value: object) -> str:
    """``value`` if it is a plain folder name (no separators, not ``.`` or ``..``)."""
    bad = (
        not isinstance(value, str)
        or value in ("", ".", "..")
        or any(c in value for c in "/\\\0")
        or value != value.strip()
    )
    if bad:
        raise ValueError(
            f"{label}={value!r} must be a plain folder name (letters, digits, '-', '_'; "
            "not '.' or '..', no '/'), e.g. 'default'"
        )
    return value


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device, or a clear error when it is unknown or unavailable."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available here; use 'cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not supported; use 'cpu', 'cuda' or 'cuda:N'")
    return dev


def _count(label: str, value: object) -> int | None:
    if value is None or value == ALL:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 10:
        raise ValueError(f"{label}={value!r} must be an integer >= 10, or {ALL!r} for every image")
    return value


@dataclass(frozen=True)
class RunConfig:
    """Every parameter of a run, exactly the notebooks' ``parameters`` cell.

    ``profile`` names the profile the values came from and the output folder
    ``results/<profile>`` (unless ``out_dir`` is given); ``n_train`` / ``n_test``: a
    stratified subset, None for every image; ``epochs``: per network; ``quick``: fewer solver
    steps (smoke runs).
    """

    profile: str
    dataset: str = "mnist-embedded"
    n_train: int | None = None
    n_test: int | None = None
    epochs: Mapping[str, int] = field(default_factory=dict)
    seed: int = 0
    device: str = "cpu"
    out_dir: str | None = None
    quick: bool = False

    def __post_init__(self) -> None:
        check_folder_name("profile", self.profile)
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; allowed: {', '.join(DATASETS)}")
        object.__setattr__(self, "n_train", _count("n_train", self.n_train))
        object.__setattr__(self, "n_test", _count("n_test", self.n_test))
        if not isinstance(self.epochs, Mapping):
            raise ValueError(f"epochs={self.epochs!r} must be a dict by network")
        for net, e in self.epochs.items():
            check_network(net)
            if isinstance(e, bool) or not isinstance(e, int) or e < 1:
                raise ValueError(f"epochs[{net!r}]={e!r} must be an integer >= 1")
        object.__setattr__(self, "epochs", dict(self.epochs))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed={self.seed!r} must be a non-negative integer")
        object.__setattr__(self, "device", str(check_device(self.device)))
        if self.out_dir is not None:
            # resolved once, against the folder of the process that makes the config: the
            # notebooks' kernels run in notebooks/, where a relative path means another folder
            object.__setattr__(self, "out_dir", str(Path(self.out_dir).expanduser().resolve()))
        if not isinstance(self.quick, bool):
            raise ValueError(f"quick={self.quick!r} must be True or False")

    @classmethod
    def from_profile(cls, profile: str = "default", **given: Any) -> RunConfig:
        """The profile's values, with every value in ``given`` that is not None in their
        place. ``epochs`` may be one integer for every network or a dict of some networks
        (the others keep the profile's); ``n_train="all"`` asks for every image."""
        base = profile_config(profile)
        fields = {f.name for f in dataclasses.fields(cls)} - {"profile"}
        unknown = sorted(set(given) - fields)
        if unknown:
            raise ValueError(f"unknown parameters {unknown}; allowed: {', '.join(sorted(fields))}")
        given = {k: v for k, v in given.items() if v is not None}
        if "epochs" in given:
            e = given["epochs"]
            if isinstance(e, int) and not isinstance(e, bool):
                e = dict.fromkeys(base.epochs, e)
            if not isinstance(e, Mapping):
                raise ValueError(f"epochs={e!r} must be an integer or a dict by network")
            given["epochs"] = {**base.epochs, **e}
        return dataclasses.replace(base, **given)

    def __str__(self) -> str:
        """The run's parameters as a notebook prints them: ``"all"`` for every image, the
        output folder relative to the repository (:func:`nnspaces.paths.shown`)."""
        values = {**self.parameters(), "out_dir": shown(self.output_dir)}
        return f"RunConfig {self.profile!r}: " + ", ".join(
            f"{k}={v!r}" for k, v in values.items() if k != "profile"
        )

    @property
    def output_dir(self) -> Path:
        """Where the run writes: ``out_dir``, or ``results/<profile>``."""
        return Path(self.out_dir) if self.out_dir else RESULTS / self.profile

    def epochs_for(self, network: str) -> int:
        """The epochs ``network`` trains for in this run."""
        if network not in self.epochs:
            raise ValueError(
                f"profile {self.profile!r} sets no epochs for network {network!r}; it has "
                f"{', '.join(self.epochs)}: pass epochs={{{network!r}: N}}"
            )
        return self.epochs[network]

    def parameters(self) -> dict[str, Any]:
        """The notebook parameters that reproduce this config exactly (``"all"`` where a
        subset size is None: a notebook's None means "the profile's")."""
        d = dataclasses.asdict(self)
        d["n_train"] = ALL if self.n_train is None else self.n_train
        d["n_test"] = ALL if self.n_test is None else self.n_test
        return d

    def context(self) -> RunContext:
        """A :class:`RunContext` for this config (its output folder created)."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        return RunContext(self)


#: The named profiles. The whole set runs in a few minutes on 2 cores with ``default``.
PROFILES: dict[str, RunConfig] = {
    p.profile: p
    for p in (
        # a few hundred images, one epoch: for tests
        RunConfig(
            "smoke",
            n_train=500,
            n_test=200,
            epochs={"fcnn1": 1, "fcnn5": 1, "resnet18": 1, "vit": 1},
            quick=True,
        ),
        # the embedded 5,000 real digits (4,000 / 1,000)
        RunConfig("default", epochs={"fcnn1": 20, "fcnn5": 20, "resnet18": 10, "vit": 30}),
        # the paper's setting: full MNIST (50k / 10k), 20 epochs (vit: not the paper's; 30)
        RunConfig(
            "paper",
            dataset="mnist",
            epochs={"fcnn1": 20, "fcnn5": 20, "resnet18": 20, "vit": 30},
        ),
    )
}


def profile_config(profile: str) -> RunConfig:
    """The RunConfig of a named profile, or a clear error naming the profiles."""
    check_folder_name("profile", profile)
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    return PROFILES[profile]


class RunContext:
    """A run in progress: its config, its data (loaded on first use), its trained networks
    (from the checkpoint cache) and the folders it writes figures, metrics and models to."""

    def __init__(self, config: RunConfig):
        self.config = config
        self.out_dir = config.output_dir
        self.device = torch.device(config.device)
        self.seed = config.seed
        self._data: Dataset | None = None
        self._nets: dict[str, TrainedNetwork] = {}
        self._judges: dict[str, Judge] | None = None

    def __repr__(self) -> str:
        return f"RunContext({self.config!r})"

    @property
    def data(self) -> Dataset:
        """The run's dataset (loaded on first use)."""
        if self._data is None:
            c = self.config
            self._data = load_dataset(c.dataset, n_train=c.n_train, n_test=c.n_test, seed=c.seed)
        return self._data

    def trained(self, network: str, *, progress: bool | None = None) -> TrainedNetwork:
        """``network`` trained with its recipe (:meth:`TrainConfig.for_network`) and this
        run's epochs and seed (cached), its plain state_dict also saved as
        ``<out_dir>/models/<network>.pt``; loaded once per context."""
        check_network(network)
        if network not in self._nets:
            epochs = self.config.epochs_for(network)
            train = TrainConfig.for_network(network, epochs=epochs, seed=self.seed)
            net = get_trained(train, self.data, device=self.device, progress=progress)
            state = {k: v.cpu() for k, v in net.model.state_dict().items()}
            save_checkpoint(state, self.out_dir / "models" / f"{network}.pt")
            self._nets[network] = net
        return self._nets[network]

    def score_stats(self, network: str) -> ScoreStats:
        """``network``'s raw outputs on this run's training images with their labels (what
        :func:`nnspaces.inversion.score_stats` computes; here read from its checkpoint)."""
        return ScoreStats(self.trained(network).train_outputs.double(), self.data.y_train)

    def networks(self, names: Sequence[str], targets: str = "min-max") -> Networks:
        """The trained ``names`` with their score statistics and ``targets`` at once (what an
        inversion lesson starts from)."""
        nets = {n: self.trained(n) for n in names}
        stats = {n: self.score_stats(n) for n in names}
        return Networks(
            trained=nets,
            models={n: net.model for n, net in nets.items()},
            stats=stats,
            targets={n: make_targets(s, targets) for n, s in stats.items()},
        )

    def judges(self, *, progress: bool | None = None) -> dict[str, Judge]:
        """The judges' panel for this run's data (:func:`~nnspaces.inversion.judges.get_judges`,
        always seed :data:`JUDGE_SEED`: the same instrument for every run on the same data),
        loaded once per context; their held-out accuracies are written to
        ``<out_dir>/judges.json``."""
        if self._judges is None:
            panel = get_judges(self.data, seed=JUDGE_SEED, device=self.device, progress=progress)
            write_json(self.out_dir / "judges.json", judge_table(panel, self.data))
            self._judges = panel
        return self._judges

    def save_inversions(self, name: str, results=None, **sets) -> Verdicts:
        """Every image set a notebook shows in ``<out_dir>/<name>.npz``
        (:func:`~nnspaces.inversion.imagesets.save_inversions`, the same arguments), judged at
        once: what each judge reads in each image goes to ``<out_dir>/<name>.verdicts.csv``;
        returns the :class:`~nnspaces.inversion.verdicts.Verdicts`."""
        check_folder_name("image sets' name", name)
        path = save_inversions(results or {}, self.out_dir / f"{name}.npz", **sets)
        frame = judge_file(path, self.judges())
        write_csv(self.out_dir / f"{name}.verdicts.csv", frame)
        verdicts = Verdicts(frame)
        sets = verdicts.summary.set_index("set").to_dict("index")
        payload = {"profile": self.config.profile, **judge_table(self.judges(), self.data)}
        write_json(
            self.out_dir / "metrics" / f"{VERDICTS_PREFIX}{name}.json", payload | {"sets": sets}
        )
        return verdicts

    def save_table(self, name: str, table: pd.DataFrame) -> Path:
        """Write ``table`` as ``<out_dir>/tables/<name>.csv``, atomically."""
        return write_csv(self.out_dir / "tables" / f"{name}.csv", table)

    def figure_path(self, name: str) -> Path:
        """``<out_dir>/figures/<name>.png``."""
        return self.out_dir / "figures" / f"{name}.png"

    def save_metrics(self, metrics: Any) -> Path:
        """Write a figure's metrics (:mod:`nnspaces.runner.metrics`), with the profile and the data
        used, as ``<out_dir>/metrics/<metrics.name>.json``, atomically."""
        payload = {"profile": self.config.profile, **self.data.info(), **metrics.to_dict()}
        return write_json(self.out_dir / "metrics" / f"{metrics.name}.json", payload)


@dataclass(frozen=True)
class Networks:
    """Trained networks by name (:meth:`RunContext.networks`): ``trained``
    (:class:`~nnspaces.training.TrainedNetwork`), their ``models``, the score statistics
    ``stats`` of their outputs on the training images, and the ``targets`` made from them."""

    trained: dict[str, TrainedNetwork]
    models: dict[str, torch.nn.Module]
    stats: dict[str, ScoreStats]
    targets: dict[str, torch.Tensor]

    def __repr__(self) -> str:
        return f"Networks({', '.join(self.trained)})"

    def accuracies(self) -> pd.DataFrame:
        """One row per network: its test accuracy."""
        return pd.DataFrame(
            {
                "network": list(self.trained),
                "test accuracy": [n.test_accuracy for n in self.trained.values()],
            }
        )


def setup_run(profile: str = "default", **given: Any) -> RunContext:
    """The notebooks' first call: :meth:`RunConfig.from_profile` then its context."""
    return RunConfig.from_profile(profile, **given).context()
