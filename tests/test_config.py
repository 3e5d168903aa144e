"""Run parameters are validated in one place, with errors naming the value."""

import pytest

from nnspaces.config import PROFILES, check_device, setup_run
from nnspaces.run import main


def test_defaults_and_output_folders(tmp_path):
    ctx = setup_run(profile="smoke", n_train=100, n_test=50, epochs=1, out_dir=tmp_path)
    assert ctx.epochs == {"fcnn1": 1, "fcnn5": 1, "resnet18": 1}
    assert ctx.figure_path("fig1") == tmp_path / "figures" / "fig1.png"
    assert ctx.data.n_train == 100
    path = ctx.save_metrics("x", {"value": 1.5})
    assert path.read_text().count('"dataset": "mnist-embedded"') == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dataset": "cifar"}, "unknown dataset 'cifar'; allowed: mnist-embedded, mnist"),
        ({"n_train": 3}, "n_train=3 must be an integer >= 10"),
        ({"epochs": {"vgg": 2}}, "unknown networks ['vgg']"),
        ({"epochs": {"fcnn1": -1}}, "epochs['fcnn1']=-1"),
        ({"epochs": "many"}, "epochs='many'"),
        ({"seed": -2}, "seed=-2"),
        ({"profile": "../x"}, "profile='../x'"),
        ({"device": "tpu"}, "device 'tpu'"),
    ],
)
def test_bad_parameters(tmp_path, kwargs, message):
    with pytest.raises(ValueError) as e:
        setup_run(out_dir=tmp_path, **kwargs)
    assert message in str(e.value)


def test_cuda_requested_without_cuda():
    import torch

    if torch.cuda.is_available():
        assert check_device("cuda").type == "cuda"
    else:
        with pytest.raises(ValueError, match="CUDA is not available"):
            check_device("cuda")


def test_profiles_and_cli_errors(capsys):
    assert {"smoke", "default", "paper"} <= set(PROFILES)
    assert PROFILES["paper"]["dataset"] == "mnist"
    assert PROFILES["paper"]["epochs"] == {"fcnn1": 20, "fcnn5": 20, "resnet18": 20}
    with pytest.raises(SystemExit):
        main(["run", "--profile", "nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--profile", "smoke", "--only", "fig9"])
    assert "unknown notebook(s) ['fig9']" in capsys.readouterr().err
