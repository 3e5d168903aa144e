"""The front door, ``import nnspaces as ns``: every name it lists resolves, and the notebooks
use nothing else of the library (no internal module, no name it does not list); their code
cells stay short, so that the library computes and the notebook explains."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest

import nnspaces
from nnspaces.paths import NOTEBOOK_DIR

NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
#: Code cells longer than this many lines need a reason below.
MAX_LINES = 15
#: Longer cells, by notebook and cell id, and why. CLAIM: the cell turns the run's numbers into
#: a sentence by hand, which the claim registry (the next issue) replaces with a registered
#: claim; the rest are the lesson's own computation, shown where it is taught.
CLAIM = "builds a statement about the run by hand (to become a registered claim)"
LONG_CELLS = {
    ("any_model", "f502494d"): "checks the user's parameters, loads and sizes their model",
    ("any_model", "b41d9f53"): "the convolution table of a torchvision ResNet at 224 x 224",
    ("fig1_fcnn_signal_space", "cell-09"): "Figure 1 itself: " + CLAIM,
    ("fig1_fcnn_signal_space", "cell-11"): "the energy in the row space: " + CLAIM,
    ("fig2_resnet_conv_signal_space", "cell-09"): "Figure 2 itself: " + CLAIM,
    ("fig2_resnet_conv_signal_space", "cell-11"): "trained against initial convolutions: " + CLAIM,
    ("fig3_inverse_images", "c02a6260"): CLAIM,
    ("fig3_inverse_images", "17de0d25"): "the presets' table: " + CLAIM,
    ("fig3_inverse_images", "2e272e8c"): "what +training does: " + CLAIM,
    ("lesson4_exact_inversion", "30125c7a"): "the exact and Newton pre-images, cross-checked",
    ("lesson5_priors_and_natural_images", "dab805f0"): CLAIM,
    ("lesson5_priors_and_natural_images", "6a0a9e96"): "the box study: two steps, every network",
    ("lesson5_priors_and_natural_images", "cell-23"): "each prior alone on ResNet18",
    ("lesson6_followup_paper", "a721456b"): "every method on every network, two residuals",
    ("lesson6_followup_paper", "42faa972"): CLAIM,
    ("lesson6_followup_paper", "452a4b81"): CLAIM,
    ("lesson6_followup_paper", "444fdf50"): "the random backward walk, first layer and all",
}


def code_cells(path):
    nb = json.loads(path.read_text())
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def test_every_front_door_name_resolves():
    for name in nnspaces.__all__:
        assert getattr(nnspaces, name) is not None, name
    assert set(nnspaces.__all__) <= set(dir(nnspaces))


def test_an_unknown_name_is_a_clear_error():
    with pytest.raises(AttributeError, match="no attribute 'invertt'"):
        nnspaces.invertt  # noqa: B018


def test_the_front_door_is_lazy():
    """Importing nnspaces imports no torch; the first use of a name imports its module."""
    code = (
        "import sys, nnspaces as ns; a = 'torch' in sys.modules; ns.invert;"
        "print(a, 'torch' in sys.modules, 'nnspaces.inversion.api' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "True"]


def library_uses(path) -> list[str]:
    """What a notebook takes from the library that is not the front door's: imports of
    submodules, names the front door does not list, ``ns.X`` for an unlisted X."""
    bad = []
    public = set(nnspaces.__all__)
    for cell in code_cells(path):
        tree = ast.parse("".join(cell["source"]))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "nnspaces" and a.name != "nnspaces":
                        bad.append(f"import {a.name}")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nnspaces"):
                if node.module != "nnspaces":
                    bad.append(f"from {node.module} import ...")
                bad += [f"nnspaces.{a.name}" for a in node.names if a.name not in public]
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "ns"
                and node.attr not in public
            ):
                bad.append(f"ns.{node.attr}")
    return bad


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_use_only_the_front_door(path):
    assert library_uses(path) == []


def test_the_check_sees_an_internal_import(tmp_path):
    """A notebook that imports an internal (as the lessons once imported ROOT_STALL_DROP and
    finite_mean) fails the check, in each of the forms it can take."""
    nb = json.loads((NOTEBOOK_DIR / "fig1_fcnn_signal_space.ipynb").read_text())
    nb["cells"].append(
        {
            "cell_type": "code",
            "id": "planted",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": [
                "from nnspaces.inversion.roots import ROOT_STALL_DROP\n",
                "from nnspaces import finite_mean\n",
                "import nnspaces.inversion.results\n",
                "ns.atomic_write\n",
            ],
        }
    )
    path = tmp_path / "planted.ipynb"
    path.write_text(json.dumps(nb))
    assert sorted(library_uses(path)) == [
        "from nnspaces.inversion.roots import ...",
        "import nnspaces.inversion.results",
        "nnspaces.ROOT_STALL_DROP",
        "nnspaces.finite_mean",
        "ns.atomic_write",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_cells_are_short(path):
    long = {
        cell.get("id"): n
        for cell in code_cells(path)
        if (n := len("".join(cell["source"]).strip().splitlines())) > MAX_LINES
    }
    unexplained = {k: n for k, n in long.items() if (path.stem, k) not in LONG_CELLS}
    assert unexplained == {}, f"{path.stem}: cells over {MAX_LINES} lines {unexplained}"
    stale = [k for (nb, k) in LONG_CELLS if nb == path.stem and k not in long]
    assert stale == [], f"{path.stem}: cells listed as long that are not: {stale}"
