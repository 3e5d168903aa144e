"""Judges: classifiers that read finished images and take no part in making or choosing them.

An inverse image is "recognised" on the word of a judge, never on that of a network that made
or selected it. The panel (:data:`JUDGES`):

=============  ================================================================================
judge-cnn      a small LeNet-style CNN (two 5x5 convolutions with max-pooling, two linear
               layers), an architecture none of the registered networks has, trained with
               random shifts, rotations and scalings (:mod:`nnspaces.augment`) so that it reads
               a digit wherever it sits
judge-knn      model-free: the k nearest training images in pixel space vote; "looks like the
               training digits of class c" in the plainest sense
=============  ================================================================================

Judges are trained (and cached) on the run's data like the networks, with their held-out
accuracy reported. They carry :data:`nnspaces.models.JUDGE_ATTR` and the ``judge-`` name
prefix: :func:`~nnspaces.inversion.invert`, the natural pre-image search and the cross-checks
refuse them (:func:`nnspaces.models.refuse_judge`), and no module of the science but the verdicts
(:mod:`.verdicts`) imports this one (``tests/test_architecture.py``).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from filelock import FileLock
from torch import nn

from ..augment import Moves, random_moves
from ..data import Dataset, make_loader
from ..models import JUDGE_ATTR, JUDGE_PREFIX
from ..paths import CACHE_DIR
from ..progress import progress_bar
from ..training import predict, save_checkpoint

#: How the CNN judge is trained: Adam, batch 64, each batch moved at random.
CNN_RECIPE = {"epochs": 12, "lr": 1e-3, "batch_size": 64, "moves": Moves(3.0, 12.0, 0.12)}
#: The neighbours that vote in the model-free judge.
KNN_K = 9


class JudgeCNN(nn.Module):
    """conv 5x5 (16) - ReLU - maxpool 2 - conv 5x5 (32) - ReLU - maxpool 2 - linear 128 -
    ReLU - linear 10."""

    def __init__(self, n_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, n_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Judge:
    """One judge of the panel: ``probabilities(images)`` ``(N, K)`` (rows sum to one),
    ``read(images)`` the class it sees, and its accuracy on the run's held-out test images."""

    name: str
    description: str
    held_out_accuracy: float = float("nan")

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def read(self, images: torch.Tensor) -> torch.Tensor:
        return self.probabilities(images).argmax(1)

    def __repr__(self) -> str:
        return f"{self.name} ({self.description}; held-out accuracy {self.held_out_accuracy:.3f})"


# the mark that makes every network-taking function refuse them
for _cls in (JudgeCNN, Judge):
    setattr(_cls, JUDGE_ATTR, True)


class KNNJudge(Judge):
    """The ``k`` nearest training images (Euclidean, in pixel space) vote: p(c) is the share
    of votes for c; the class read is the one with the most votes, a tie going to the class
    whose first neighbour is nearest."""

    def __init__(self, data: Dataset, k: int = KNN_K, device: str | torch.device = "cpu"):
        if not (isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= data.n_train):
            raise ValueError(f"k={k!r} must be an integer in [1, {data.n_train}]")
        self.name, self.k = f"{JUDGE_PREFIX}knn", k
        self.description = f"{k} nearest training images in pixel space"
        self.device = torch.device(device)
        self.train = data.x_train.reshape(data.n_train, -1).double().to(self.device)
        self.labels = data.y_train.to(self.device)
        self.n_classes = int(data.y_train.max()) + 1
        self.held_out_accuracy = float((self.read(data.x_test) == data.y_test).double().mean())

    def _votes(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per image and class: the votes, and the rank of the class's nearest neighbour
        (``k`` where it has none)."""
        votes, first = [], []
        flat = images.detach().reshape(len(images), -1).double()
        for chunk in flat.to(self.device).split(500):
            near = self.labels[torch.cdist(chunk, self.train).topk(self.k, largest=False).indices]
            v = torch.zeros(len(chunk), self.n_classes, dtype=torch.float64, device=self.device)
            v.scatter_add_(1, near, torch.ones_like(near, dtype=torch.float64))
            rank = torch.arange(self.k, device=self.device, dtype=torch.float64)
            f = torch.full_like(v, float(self.k))
            f.scatter_reduce_(1, near, rank.expand(len(chunk), self.k), reduce="amin")
            votes.append(v.cpu())
            first.append(f.cpu())
        if not votes:
            empty = torch.zeros(0, self.n_classes, dtype=torch.float64)
            return empty, empty
        return torch.cat(votes), torch.cat(first)

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        return self._votes(images)[0] / self.k

    def read(self, images: torch.Tensor) -> torch.Tensor:
        votes, first = self._votes(images)
        most = votes == votes.max(1, keepdim=True).values
        return torch.where(most, -first, -float("inf")).argmax(1)


class CNNJudge(Judge):
    """:class:`JudgeCNN`, trained on the run's data with random moves (:data:`CNN_RECIPE`),
    cached under the cache folder by a key of the recipe, the data and the seed."""

    def __init__(
        self,
        data: Dataset,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
        cache_dir: str | Path | None = None,
        progress: bool | None = None,
    ):
        self.name = f"{JUDGE_PREFIX}cnn"
        self.description = "LeNet-style CNN trained with random shifts, rotations and scalings"
        self.device = torch.device(device)
        self.model, self.held_out_accuracy, self.path = _cnn_trained(
            data, seed, self.device, Path(cache_dir) if cache_dir else CACHE_DIR, progress
        )

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        x = images.detach().to(torch.float32)  # float64 pre-images too (exact, newton)
        return torch.softmax(predict(self.model, x, device=self.device).double(), 1)


def _cnn_key(data: Dataset, seed: int) -> str:
    recipe = {k: (vars(v) if isinstance(v, Moves) else v) for k, v in CNN_RECIPE.items()}
    blob = json.dumps(
        {
            "recipe": recipe,
            "architecture": repr(JudgeCNN(int(data.y_train.max()) + 1)),
            "data": data.info() | {"fingerprint": data.fingerprint()},
            "seed": seed,
            "torch": torch.__version__.split("+")[0],
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _cnn_trained(data, seed, device, cache_dir, progress) -> tuple[JudgeCNN, float, Path]:
    key = _cnn_key(data, seed)
    path = cache_dir / f"{JUDGE_PREFIX}cnn-{key}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = JudgeCNN(int(data.y_train.max()) + 1)
    with FileLock(path.with_suffix(".lock")):
        if path.exists():
            try:
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
                if ckpt.get("key") != key:
                    raise ValueError(f"key {ckpt.get('key')!r} does not match {key!r}")
                model.load_state_dict(ckpt["state_dict"], strict=True)
                return model.to(device).eval(), float(ckpt["test_accuracy"]), path
            except Exception as e:  # unreadable or mismatched: train again, never half-use
                warnings.warn(
                    f"judge checkpoint {path} is unusable ({e}); retraining", stacklevel=3
                )
                torch.manual_seed(seed)
                model = JudgeCNN(int(data.y_train.max()) + 1)
        _train_cnn(model, data, seed, device, progress)
        acc = float(
            (predict(model, data.x_test, device=device).argmax(1) == data.y_test).double().mean()
        )
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        save_checkpoint({"key": key, "state_dict": state, "test_accuracy": acc}, path)
    return model.eval(), acc, path


def _train_cnn(model: JudgeCNN, data: Dataset, seed: int, device, progress) -> None:
    r = CNN_RECIPE
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=r["lr"])
    gen = torch.Generator().manual_seed(seed)
    steps = -(-data.n_train // r["batch_size"])
    bar = progress_bar(r["epochs"] * steps, desc="train judge-cnn", progress=progress, unit="batch")
    for epoch in range(r["epochs"]):
        loader = make_loader(
            data.x_train, data.y_train, r["batch_size"], shuffle=True, seed=seed + epoch
        )
        for xb, yb in loader:
            xb = random_moves(xb, r["moves"], gen)
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(xb.to(device)), yb.to(device))
            loss.backward()
            opt.step()
            bar.update(1)
    bar.close()
    model.eval()


def get_judges(
    data: Dataset,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    progress: bool | None = None,
) -> dict[str, Judge]:
    """The whole panel for ``data``: ``{name: judge}``, in :data:`JUDGES` order."""
    made = {
        "cnn": lambda: CNNJudge(
            data, seed=seed, device=device, cache_dir=cache_dir, progress=progress
        ),
        "knn": lambda: KNNJudge(data, device=device),
    }
    return {f"{JUDGE_PREFIX}{name}": made[name]() for name in JUDGES}


#: The panel, in the order tables show it.
JUDGES = ("cnn", "knn")


#: The seed every run's judges are trained with: one instrument per dataset, whatever the
#: run's own seed.
JUDGE_SEED = 0


def judge_table(panel: Mapping[str, Judge], data: Dataset) -> dict:
    """The panel as plain data (for ``judges.json``): each judge's name, what it is, and its
    held-out accuracy on ``data``'s test images."""
    return {
        **data.info(),
        "judges": [
            {"name": n, "description": j.description, "held_out_accuracy": j.held_out_accuracy}
            for n, j in panel.items()
        ],
    }
