"""How fast chapter 06's training step runs, and how close it comes to what the machine can do.

Model FLOP/s utilisation (MFU): a training step costs about 6 FLOPs per parameter and
token (2 in the forward matmuls, 4 in the backward), counting the parameters that take
part in matrix products, i.e. all but the embedding tables (a lookup is no matmul):

    MFU = 6 * non-embedding parameters * tokens per second / peak FLOP/s of the precision

``peak`` is measured here too (:func:`matmul_flops`), on the same machine and threads.
Chapter 06 and ``make bench`` (``course/bench.py``) use these functions.

Example:
    >>> flops = statistics.median(matmul_flops(torch.float32, n=512, repeats=3))
    >>> rates = step_tokens_per_second(model, batches, precision="fp32", repeats=3)
"""

from __future__ import annotations

import copy
import statistics

import torch
import torch.nn.functional as F

from labutils.sentiment.recipe import autocast_dtype, make_scaler, parameter_groups, train_step
from labutils.timing import samples


def spread(values: list[float]) -> tuple[float, float, float]:
    """``(median, min, max)`` of repeated measurements."""
    return statistics.median(values), min(values), max(values)


def matmul_flops(dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 5,
                 device="cpu") -> list[float]:
    """FLOP/s of an n x n matrix product in ``dtype`` (2 n^3 FLOPs each), one value per repetition.

    It calls ``F.linear``, the product every ``nn.Linear`` of the model runs: for bfloat16 on a
    CPU without native bf16 that is several times faster than ``torch.mm`` (a different kernel).
    """
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=g).to(device, dtype) for _ in range(2))
    return [2 * n**3 / t for t in samples(lambda: F.linear(a, b), repeats=repeats, device=device)]


def non_embedding_params(model) -> int:
    """Parameters outside the embedding tables: the ones that take part in matrix products."""
    embedding = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in embedding)


def padded_tokens(batch) -> int:
    """Token positions a batch makes the model compute: batch size x its padded length."""
    return batch["input_ids"].numel()


def step_tokens_per_second(model, batches, *, precision: str = "fp32", freeze_word_embeddings: bool = False,
                           optimizer: str = "default", threads: int | None = None, repeats: int = 3,
                           lr: float = 1e-5, compile: bool = False) -> list[float]:
    """Padded tokens per second of chapter 06's training step (``recipe.train_step``) over ``batches``.

    Each repetition runs every batch once, on a copy of ``model`` (the original is not
    trained). ``batches`` are ``(inputs, labels)`` pairs already on the model's device.
    ``optimizer``: ``"default"`` (what ``torch.optim.AdamW`` picks), ``"foreach"``, ``"fused"``,
    or ``"for-loop"``. One untimed pass over ``batches`` warms up first (with ``compile``,
    that pass compiles the model for every shape in ``batches``; its time is not counted).
    """
    model = copy.deepcopy(model).train()
    model.get_input_embeddings().weight.requires_grad_(not freeze_word_embeddings)
    step_model = torch.compile(model) if compile else model
    choice = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True},
              "for-loop": {"foreach": False}}[optimizer]
    opt = torch.optim.AdamW(parameter_groups(model, lr, lr, 0.01), **choice)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    device = next(model.parameters()).device
    amp_dtype = autocast_dtype(device, precision)
    scaler = make_scaler(device, amp_dtype)
    tokens = sum(padded_tokens(inputs) for inputs, _ in batches)
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        def one_pass():
            for inputs, labels in batches:
                train_step(step_model, inputs, labels, opt, scheduler, scaler, clip_norm=1.0,
                           amp_dtype=amp_dtype)

        return [tokens / t for t in samples(one_pass, repeats=repeats, device=device)]
    finally:
        torch.set_num_threads(before)


def mfu(tokens_per_second: float, params: int, peak_flops: float) -> float:
    """Share of the measured peak that ``6 * params * tokens_per_second`` represents."""
    return 6 * params * tokens_per_second / peak_flops
