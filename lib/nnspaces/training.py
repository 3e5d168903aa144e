"""Training, evaluation, and a checkpoint cache keyed by the whole configuration.

The paper's recipe is the default: cross-entropy, SGD with learning rate 1e-3 and momentum
0.9, batch size 32. A network may have its own (:attr:`nnspaces.models.NetworkSpec.training`;
``vit``: AdamW with a one-cycle learning rate): :meth:`TrainConfig.for_network` applies it, and
every run builds its configurations that way. :func:`get_trained` returns a cached network
when one was trained with the same configuration on the same data, else trains it (with a
progress bar) and caches it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock
from torch import nn

from .data import Dataset, make_loader
from .files import atomic_write
from .models import build_model, check_network, frozen, model_as, n_outputs_of, network_spec
from .paper import TRAINING
from .paths import CACHE_DIR
from .progress import progress_bar

#: Checkpoints live here unless a ``cache_dir`` is given (``NNSPACES_CACHE`` overrides it).
DEFAULT_CACHE = CACHE_DIR
CACHE_FORMAT = 1  # bump when the checkpoint layout changes

#: The optimizers a TrainConfig may name (``momentum`` is AdamW's first beta).
OPTIMIZERS = ("sgd", "adamw")
#: Learning-rate schedules: ``constant``, or ``one-cycle`` (torch's OneCycleLR stepped once a
#: batch, peaking at ``lr``, with these settings and the momentum left constant).
SCHEDULES = ("constant", "one-cycle")
ONE_CYCLE = {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4}
#: TrainConfig fields added after checkpoints were cached, with the value every older network
#: was trained with: :func:`cache_key` leaves a field out at that value, so old keys still hit.
ADDED_FIELDS = {"optimizer": TRAINING["optimizer"], "weight_decay": 0.0, "schedule": "constant"}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained network (and so keys the cache). The defaults
    are the paper's recipe (:data:`nnspaces.paper.TRAINING`); :meth:`for_network` gives a
    network's own; a run's epochs come from its :class:`~nnspaces.runner.config.RunConfig`.
    ``optimizer``: one of :data:`OPTIMIZERS`; ``schedule``: one of :data:`SCHEDULES`."""

    network: str
    epochs: int = TRAINING["epochs"]
    lr: float = TRAINING["lr"]
    momentum: float = TRAINING["momentum"]
    batch_size: int = TRAINING["batch_size"]
    seed: int = 0
    optimizer: str = ADDED_FIELDS["optimizer"]
    weight_decay: float = ADDED_FIELDS["weight_decay"]
    schedule: str = ADDED_FIELDS["schedule"]

    @classmethod
    def for_network(cls, network: str, **given) -> TrainConfig:
        """``network``'s recipe (its registry entry's ``training`` values over the paper's),
        with the values in ``given`` (epochs, seed, ...) in their place."""
        recipe = dict(network_spec(network).training)
        allowed = [f.name for f in dataclasses.fields(cls) if f.name != "network"]
        unknown = sorted((set(recipe) | set(given)) - set(allowed))
        if unknown:
            raise ValueError(
                f"unknown training values {unknown} for {network!r}; allowed: {', '.join(allowed)}"
            )
        return cls(network, **{**recipe, **given})

    def __post_init__(self) -> None:
        check_network(self.network)
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs={self.epochs!r} must be an integer >= 1")
        if isinstance(self.lr, bool) or not isinstance(self.lr, int | float) or not self.lr > 0:
            raise ValueError(f"lr={self.lr!r} must be a number > 0")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum={self.momentum!r} must be in [0, 1)")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size!r} must be an integer >= 1")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {self.optimizer!r}; allowed: {', '.join(OPTIMIZERS)}"
            )
        wd = self.weight_decay
        if isinstance(wd, bool) or not isinstance(wd, int | float) or not wd >= 0:
            raise ValueError(f"weight_decay={wd!r} must be a number >= 0")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; allowed: {', '.join(SCHEDULES)}")


@dataclass
class TrainedNetwork:
    """A trained network (in eval mode) with its configuration, its test accuracy and its
    raw outputs ``(N, K)`` on the training images (the score statistics inverse targets are
    made from: :meth:`nnspaces.runner.config.RunContext.score_stats`), kept in its checkpoint."""

    model: nn.Module
    config: TrainConfig
    test_accuracy: float
    from_cache: bool
    checkpoint: Path | None
    train_outputs: torch.Tensor

    def __repr__(self) -> str:
        src = "cache" if self.from_cache else "trained"
        return (
            f"TrainedNetwork({self.config.network}, epochs={self.config.epochs}, "
            f"test_accuracy={self.test_accuracy:.4f}, {src})"
        )


def make_optimizer(
    model: nn.Module, config: TrainConfig, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    """The optimizer ``config`` names over ``model``'s parameters, and its learning-rate
    schedule (None for a constant rate), to be stepped once per batch."""
    params, wd = model.parameters(), config.weight_decay
    if config.optimizer == "adamw":
        betas = (config.momentum, 0.999)
        opt = torch.optim.AdamW(params, lr=config.lr, betas=betas, weight_decay=wd)
    else:
        opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=wd)
    if config.schedule == "constant":
        return opt, None
    total = config.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=config.lr, total_steps=total, cycle_momentum=False, **ONE_CYCLE
    )
    return opt, sched


def train(
    model: nn.Module,
    data: Dataset,
    config: TrainConfig,
    *,
    device: str | torch.device = "cpu",
    progress: bool | None = None,
) -> nn.Module:
    """Train ``model`` in place on ``data``'s training split; returns it in eval mode."""
    device = torch.device(device)
    torch.manual_seed(config.seed)
    model.to(device).train()
    steps = -(-data.n_train // config.batch_size)
    opt, schedule = make_optimizer(model, config, steps)
    loss_fn = nn.CrossEntropyLoss()
    total, done = config.epochs * steps, 0
    bar = progress_bar(
        total,
        desc=f"train {config.network}",
        progress=progress,
        unit="batch",
    )
    for epoch in range(config.epochs):
        loader = make_loader(
            data.x_train, data.y_train, config.batch_size, shuffle=True, seed=config.seed + epoch
        )
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            bar.update(1)
            done += 1
            if schedule is not None and done < total:  # the last batch had the final rate
                schedule.step()
        bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
    bar.close()
    return model.eval()


@torch.no_grad()
def predict(
    model: nn.Module,
    x: torch.Tensor,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 1000,
) -> torch.Tensor:
    """Raw outputs ``(N, K)`` of ``model`` in eval mode on images ``x``, computed in batches
    on ``device``; the model itself is left as it was (mode, device, gradients)."""
    device = torch.device(device)
    work = model_as(model, next(model.parameters()).dtype, device)
    with frozen(work):
        outs = [work(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(outs) if outs else torch.zeros((0, n_outputs_of(model)))


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, device: str | torch.device = "cpu"
) -> float:
    """Fraction of images whose largest output is their label."""
    if len(y) == 0:
        raise ValueError("cannot evaluate on an empty split")
    return (predict(model, x, device=device).argmax(1) == y).double().mean().item()


def cache_key(config: TrainConfig, data: Dataset) -> str:
    """Hash of the configuration, the data (name and content) and the cache format. A field of
    :data:`ADDED_FIELDS` at its old value is left out: a configuration that older code could
    express keeps the key that code gave it."""
    fields = dataclasses.asdict(config)
    for name, old in ADDED_FIELDS.items():
        if fields[name] == old:
            del fields[name]
    blob = json.dumps(
        {
            "config": fields,
            "data": data.info() | {"fingerprint": data.fingerprint()},
            "format": CACHE_FORMAT,
            "torch": torch.__version__.split("+")[0],
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def get_trained(
    config: TrainConfig,
    data: Dataset,
    *,
    device: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    progress: bool | None = None,
) -> TrainedNetwork:
    """The network ``config`` describes, trained on ``data``: from the cache, or trained now.

    A checkpoint that cannot be read, or whose stored configuration or weights do not match,
    is reported with a warning and retrained (never half-used).
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE
    key = cache_key(config, data)
    path = cache_dir / f"{config.network}-{key}.pt"
    with _cache_lock(path):
        return _load_or_train(config, data, key, path, device, progress)


def _cache_lock(path: Path) -> FileLock:
    """Held while one checkpoint is read or trained (``<checkpoint>.lock``): a process that
    wants the same network at the same time (notebooks run side by side) waits, then loads
    what this one saved, instead of training it twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path.with_suffix(".lock"))


def _load_or_train(config, data, key, path, device, progress) -> TrainedNetwork:
    model = build_model(config.network, seed=config.seed)
    if path.exists():
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            if ckpt.get("key") != key:
                raise ValueError(f"key {ckpt.get('key')!r} does not match {key!r}")
            model.load_state_dict(ckpt["state_dict"], strict=True)
            model.to(device).eval()
        except Exception as e:  # any unreadable or mismatched file: retrain, never half-use
            warnings.warn(f"checkpoint {path} is unusable ({e}); retraining", stacklevel=2)
            model = build_model(config.network, seed=config.seed)
        else:
            outputs = ckpt.get("train_outputs")
            if not _outputs_fit(outputs, data, model):
                # a checkpoint from before they were kept: add them (same weights, same key)
                ckpt["train_outputs"] = outputs = predict(model, data.x_train, device=device)
                save_checkpoint(ckpt, path)
            acc = float(ckpt["test_accuracy"])
            return TrainedNetwork(model, config, acc, True, path, outputs)
    train(model, data, config, device=device, progress=progress)
    acc = evaluate(model, data.x_test, data.y_test, device=device)
    outputs = predict(model, data.x_train, device=device)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_checkpoint(
        {
            "key": key,
            "config": dataclasses.asdict(config),
            "state_dict": state,
            "test_accuracy": acc,
            "train_outputs": outputs,
        },
        path,
    )
    return TrainedNetwork(model, config, acc, False, path, outputs)


def _outputs_fit(outputs: object, data: Dataset, model: nn.Module) -> bool:
    """Whether a checkpoint's ``train_outputs`` are one row per training image."""
    return isinstance(outputs, torch.Tensor) and outputs.shape == (
        len(data.x_train),
        n_outputs_of(model),
    )


def save_checkpoint(obj: object, path: str | Path) -> Path:
    """``torch.save`` through :func:`nnspaces.files.atomic_write` (never half a file)."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))
