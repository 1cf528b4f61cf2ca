import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from labutils.seed import seed_everything
from labutils.train import accuracy, fit, to_device


def _blobs():
    seed_everything(0)
    x = torch.cat([torch.randn(200, 2) + 2, torch.randn(200, 2) - 2])
    y = torch.cat([torch.zeros(200), torch.ones(200)]).long()
    return DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)


def test_fit_learns_separable_blobs_and_records_history():
    loader = _blobs()
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    before = accuracy(model, loader)
    history = fit(model, loader, torch.optim.Adam(model.parameters(), lr=0.05), nn.CrossEntropyLoss(),
                  epochs=3, device=torch.device("cpu"), log_every=5,
                  evaluate=lambda m: {"train_acc": accuracy(m, loader)})
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert len(history["train_acc"]) == 3
    assert history["train_acc"][-1] > max(before, 0.95)


def test_fit_rejects_zero_epochs():
    with pytest.raises(ValueError, match="at least 1"):
        fit(nn.Linear(2, 2), [], None, None, epochs=0)


def test_to_device_handles_nested_batches():
    batch = {"ids": torch.ones(2), "extra": [torch.zeros(1), 3]}
    moved = to_device(batch, torch.device("cpu"))
    assert moved["extra"][1] == 3 and moved["ids"].device.type == "cpu"


def test_accuracy_of_an_empty_loader():
    with pytest.raises(ValueError, match="empty loader"):
        accuracy(nn.Linear(2, 2), [])
