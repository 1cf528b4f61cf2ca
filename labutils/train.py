"""A small, readable training loop for chapters that have already written one by hand.

Example:
    >>> history = fit(model, train_loader, torch.optim.Adam(model.parameters()),
    ...               nn.CrossEntropyLoss(), epochs=2,
    ...               evaluate=lambda m: {"test_acc": accuracy(m, test_loader)})
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from tqdm.auto import tqdm

from labutils.device import get_device
from labutils.plot import LivePlot


def to_device(batch, device: torch.device):
    """Move a tensor, or a tuple/list/dict of tensors, to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


@torch.no_grad()
def accuracy(model: torch.nn.Module, loader: Iterable, device: torch.device | None = None) -> float:
    """Share of ``(inputs, targets)`` batches the model's argmax gets right."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = total = 0
    for inputs, targets in loader:
        logits = model(to_device(inputs, device))
        correct += (logits.argmax(dim=-1).cpu() == targets).sum().item()
        total += len(targets)
    model.train(was_training)
    if total == 0:
        raise ValueError("accuracy got an empty loader: check the dataset and batch size")
    return correct / total


def fit(
    model: torch.nn.Module,
    train_loader: Iterable,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable,
    epochs: int = 1,
    device: torch.device | None = None,
    evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
    scheduler=None,
    clip_grad_norm: float | None = None,
    log_every: int = 20,
    title: str = "training",
) -> dict[str, list[float]]:
    """Train for ``epochs`` over ``(inputs, targets)`` batches with a progress bar and live plot.

    ``evaluate(model)`` runs after every epoch and returns named metrics, e.g.
    ``{"test_acc": 0.97}``. Returns the history of every logged value.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    device = device or get_device()
    model.to(device)
    step, running, count = 0, 0.0, 0
    with LivePlot(title=title) as live:
        for epoch in range(1, epochs + 1):
            model.train()
            for inputs, targets in tqdm(train_loader, desc=f"epoch {epoch}/{epochs}", leave=False):
                loss = loss_fn(model(to_device(inputs, device)), to_device(targets, device))
                optimizer.zero_grad()
                loss.backward()
                if clip_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                step += 1
                running, count = running + loss.item(), count + 1
                if count == log_every:
                    live.update(step, train_loss=running / count)
                    running, count = 0.0, 0
            if count:
                live.update(step, train_loss=running / count)
                running, count = 0.0, 0
            if evaluate is not None:
                live.update(step, **evaluate(model))
    return live.history
