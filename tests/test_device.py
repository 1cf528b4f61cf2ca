import pytest
import torch

from labutils import device as dev


@pytest.fixture
def machine(monkeypatch):
    """Pretend to be a machine with the given accelerators."""
    monkeypatch.delenv(dev.DEVICE_ENV_VAR, raising=False)

    def set_available(cuda=False, mps=False, gpus=1):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus if cuda else 0)
        monkeypatch.setattr(dev, "_mps_available", lambda: mps)

    return set_available


@pytest.mark.parametrize(
    "cuda, mps, expected",
    [(True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu")],
)
def test_picks_cuda_then_mps_then_cpu(machine, cuda, mps, expected):
    machine(cuda=cuda, mps=mps)
    assert dev.get_device().type == expected
    assert dev.available_devices()[-1] == "cpu"


def test_environment_variable_forces_a_device(machine, monkeypatch):
    machine(cuda=True)
    monkeypatch.setenv(dev.DEVICE_ENV_VAR, "cpu")
    assert dev.get_device() == torch.device("cpu")


def test_forcing_a_missing_device_says_what_exists(machine, monkeypatch):
    machine(cuda=False, mps=True)
    monkeypatch.setenv(dev.DEVICE_ENV_VAR, "cuda")
    with pytest.raises(dev.DeviceUnavailableError, match=r"no CUDA device.*Available here: mps, cpu"):
        dev.get_device()


def test_prefer_argument_and_gpu_index(machine):
    machine(cuda=True, gpus=2)
    assert dev.get_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(dev.DeviceUnavailableError, match="only 2 CUDA"):
        dev.get_device("cuda:5")


def test_unknown_device_name(machine):
    machine()
    with pytest.raises(ValueError, match="Use one of: cuda, mps, cpu"):
        dev.get_device("tpu")


def test_device_report_prints_versions(machine, capsys):
    machine()
    report = dev.device_report()
    assert report["torch"] == torch.__version__
    assert report["device"] == "cpu"
    assert int(report["CPU threads"]) >= 1
    assert "CPU threads" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["cuda:x", "cuda:", "mps:first"])
def test_a_device_number_that_is_not_a_number_gets_the_usual_message(machine, bad):
    machine(cuda=True, mps=True)
    message = rf"{bad!r} is not a device name.*cuda:0.*Use one of: cuda, mps, cpu"
    with pytest.raises(ValueError, match=message):
        dev.get_device(bad)
