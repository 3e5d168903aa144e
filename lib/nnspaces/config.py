"""Run configuration: named profiles, parameter validation, and where a run writes its files.

Every notebook's ``parameters`` cell holds the same few values; its next cell calls
:func:`setup_run` with them, which validates them all at once (clear errors naming the bad
value and the allowed ones) and returns a :class:`RunContext` that loads the data, gets trained
networks from the checkpoint cache, and saves figures, metrics and models under
``results/<profile>/``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .data import DATASETS, Dataset, load_dataset
from .models import NETWORKS, check_network
from .training import TrainConfig, TrainedNetwork, get_trained, save_atomic

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS = REPO_ROOT / "results"

#: Parameter sets the runner passes to every notebook (``python -m nnspaces run --profile``).
PROFILES: dict[str, dict[str, Any]] = {
    # a few hundred images, one epoch: for tests
    "smoke": {
        "dataset": "mnist-embedded",
        "n_train": 500,
        "n_test": 200,
        "epochs": {"fcnn1": 1, "fcnn5": 1, "resnet18": 1},
        "quick": True,
    },
    # the embedded 5,000 real digits; the whole set runs in a few minutes on 2 cores
    "default": {
        "dataset": "mnist-embedded",
        "n_train": None,
        "n_test": None,
        "epochs": {"fcnn1": 20, "fcnn5": 20, "resnet18": 10},
        "quick": False,
    },
    # the paper's setting: full MNIST (50k / 10k), 20 epochs
    "paper": {
        "dataset": "mnist",
        "n_train": None,
        "n_test": None,
        "epochs": {"fcnn1": 20, "fcnn5": 20, "resnet18": 20},
        "quick": False,
    },
}


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


@dataclass
class RunContext:
    """A validated run: its parameters, and the folders it writes to."""

    profile: str
    dataset: str
    n_train: int | None
    n_test: int | None
    epochs: dict[str, int]
    seed: int
    device: torch.device
    out_dir: Path
    _data: Dataset | None = field(default=None, repr=False)

    @property
    def data(self) -> Dataset:
        """The run's dataset (loaded on first use)."""
        if self._data is None:
            self._data = load_dataset(
                self.dataset, n_train=self.n_train, n_test=self.n_test, seed=self.seed
            )
        return self._data

    def trained(self, network: str, *, progress: bool = True) -> TrainedNetwork:
        """``network`` trained with this run's epochs and seed (cached), its plain state_dict
        also saved as ``<out_dir>/models/<network>.pt``."""
        check_network(network)
        config = TrainConfig(network, epochs=self.epochs[network], seed=self.seed)
        net = get_trained(config, self.data, device=self.device, progress=progress)
        path = self.out_dir / "models" / f"{network}.pt"
        save_atomic({k: v.cpu() for k, v in net.model.state_dict().items()}, path)
        return net

    def figure_path(self, name: str) -> Path:
        """``<out_dir>/figures/<name>.png``."""
        return self.out_dir / "figures" / f"{name}.png"

    def save_metrics(self, name: str, metrics: dict[str, Any]) -> Path:
        """Write ``metrics`` (plus the profile and the data used) as
        ``<out_dir>/metrics/<name>.json``, atomically."""
        payload = {"profile": self.profile, **self.data.info(), **metrics}
        path = self.out_dir / "metrics" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{name}.")
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2, default=_json_default)
        os.replace(tmp, path)
        return path


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def setup_run(
    *,
    profile: str = "default",
    dataset: str = "mnist-embedded",
    n_train: int | None = None,
    n_test: int | None = None,
    epochs: dict[str, int] | int = 20,
    seed: int = 0,
    device: str = "cpu",
    out_dir: str | Path | None = None,
) -> RunContext:
    """Validate a notebook's parameters and return its :class:`RunContext`.

    ``epochs`` is one integer for every network or a dict by network name.
    ``out_dir`` defaults to ``results/<profile>``.
    """
    if not isinstance(profile, str) or not profile or "/" in profile:
        raise ValueError(f"profile={profile!r} must be a plain folder name, e.g. 'default'")
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; allowed: {', '.join(DATASETS)}")
    for label, value in (("n_train", n_train), ("n_test", n_test)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 10
        ):
            raise ValueError(f"{label}={value!r} must be an integer >= 10, or None for all")
    if isinstance(epochs, int):
        epochs = dict.fromkeys(NETWORKS, epochs)
    if not isinstance(epochs, dict):
        raise ValueError(f"epochs={epochs!r} must be an integer or a dict by network")
    unknown = set(epochs) - set(NETWORKS)
    if unknown:
        raise ValueError(f"epochs names unknown networks {sorted(unknown)}; allowed: {NETWORKS}")
    epochs = {**dict.fromkeys(NETWORKS, 20), **epochs}
    for net, e in epochs.items():
        if isinstance(e, bool) or not isinstance(e, int) or e < 1:
            raise ValueError(f"epochs[{net!r}]={e!r} must be an integer >= 1")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    dev = check_device(device)
    out = Path(out_dir) if out_dir else RESULTS / profile
    out.mkdir(parents=True, exist_ok=True)
    return RunContext(profile, dataset, n_train, n_test, epochs, seed, dev, out)
