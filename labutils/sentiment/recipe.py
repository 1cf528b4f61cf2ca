"""Chapter 06's fine-tuning recipe: one loop, written step by step in the chapter and kept here.

The chapter writes :func:`parameter_groups`, :func:`warmup_then_decay`,
:func:`train_step` and :func:`fine_tune` in its cells and asserts that they are
this module's code, character for character; chapter 07 calls :func:`fine_tune`
when chapter 06's model is missing. The defaults of :func:`fine_tune` are the
chapter's hyper-parameters (a test ties the two together).

Example:
    >>> history = fine_tune(model, tokenizer, texts, labels, valid_texts=v_texts, valid_labels=v_labels)
    >>> history[-1], history.grad_norms[-1], history.best_epoch   # last loss, last norm, chosen epoch
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from labutils.data import length_bucketed_batches
from labutils.sentiment import MAX_LEN


class History(list):
    """The loss of every step (a plain list of floats), plus what :func:`fine_tune` measured on the way."""

    def __init__(self):
        super().__init__()
        self.grad_norms: list[float] = []      # before clipping, one per update made
        self.skipped = 0                       # float16 overflows: no update, no schedule step
        self.valid_accuracy: list[float] = []  # after each epoch, when a validation set is given
        self.best_epoch: int | None = None     # the epoch whose weights were kept
        self.final_lr: list[float] = []        # each group's learning rate after the last step
        self.seconds = 0.0                     # training time, validation included


def collate(tokenizer, token_ids, indices):
    """Pad the chosen tokenized texts to the longest of them: ``input_ids`` and ``attention_mask``."""
    return tokenizer.pad({"input_ids": [token_ids[i] for i in indices]}, return_tensors="pt")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions (``avx512_bf16`` or AMX), as Linux lists them in
    /proc/cpuinfo. Without them, bfloat16 matrix products are emulated and slower than float32."""
    cpuinfo = Path("/proc/cpuinfo")
    flags = set(cpuinfo.read_text().split()) if cpuinfo.exists() else set()
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def autocast_dtype(device, precision: str = "auto") -> torch.dtype | None:
    """The dtype of the forward pass under autocast, or ``None`` for plain float32.

    ``"auto"``: bfloat16 on a CUDA GPU that has it, else float16 (with a GradScaler);
    bfloat16 on a CPU with native bfloat16 instructions; float32 on other CPUs and on
    an Apple GPU.
    """
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"precision={precision!r}: use 'auto', 'fp32', 'bf16' or 'fp16'")
    if precision == "auto":
        kind = torch.device(device).type
        if kind == "cpu":
            return torch.bfloat16 if cpu_has_native_bf16() else None
        if kind != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def make_scaler(device, amp_dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A GradScaler, switched on only for float16 (bfloat16 has float32's range and needs none)."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=amp_dtype == torch.float16)


@torch.no_grad()
def predict_proba(model, tokenizer, token_ids, batch_size: int = 128, amp_dtype=None) -> torch.Tensor:
    """P(class 1) for each tokenized text, in length-bucketed batches, returned in the original order."""
    model.eval()  # dropout off: the same input always gives the same answer
    device = next(model.parameters()).device
    lengths = torch.tensor([len(ids) for ids in token_ids])
    probs = torch.empty(len(token_ids))
    for indices in length_bucketed_batches(lengths, batch_size):
        inputs = collate(tokenizer, token_ids, indices).to(device)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(**inputs).logits
        probs[indices] = logits.float().softmax(dim=-1)[:, 1].cpu()
    return probs


def accuracy(model, tokenizer, token_ids, labels, batch_size: int = 128, amp_dtype=None) -> float:
    """Share of tokenized texts whose predicted class (P > 0.5) equals ``labels``."""
    predicted = (predict_proba(model, tokenizer, token_ids, batch_size, amp_dtype) > 0.5).long()
    return (predicted == torch.as_tensor(labels)).float().mean().item()


def parameter_groups(model, encoder_lr, head_lr, weight_decay, head_prefix="classifier."):
    """AdamW groups: the new head at ``head_lr``, the pretrained rest at ``encoder_lr``;
    no weight decay on biases and LayerNorm weights (pulling a scale or a shift to 0 regularizes nothing)."""
    no_decay = {f"{module_name}.{name}".lstrip(".")
                for module_name, module in model.named_modules()
                for name, _ in module.named_parameters(recurse=False)
                if name == "bias" or isinstance(module, torch.nn.LayerNorm)}
    groups = []
    for part, lr in [("encoder", encoder_lr), ("head", head_lr)]:
        for decays in (True, False):
            params = [p for n, p in model.named_parameters()
                      if n.startswith(head_prefix) == (part == "head") and (n not in no_decay) == decays]
            if params:
                groups.append({"name": f"{part}, {'decay' if decays else 'no decay'}", "params": params,
                               "lr": lr, "weight_decay": weight_decay if decays else 0.0})
    return groups


def warmup_then_decay(step, warmup_steps, total_steps):
    """Multiplier of the peak learning rate at ``step``: linear warm-up, then linear decay to 0."""
    if step < warmup_steps:
        return step / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def train_step(model, inputs, labels, optimizer, scheduler, scaler, *, clip_norm, amp_dtype=None):
    """One update; returns the loss and the gradient norm before clipping (None: skipped, fp16 overflow)."""
    with torch.autocast(inputs["input_ids"].device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        loss = model(**inputs, labels=labels).loss
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()  # with float16: the loss times the scale, so no gradient underflows
    scaler.unscale_(optimizer)     # the true gradients again, so clipping sees their real norm
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    scale = scaler.get_scale()
    scaler.step(optimizer)         # skips the update when a gradient is inf or nan
    scaler.update()                # ... and then lowers the scale
    if scaler.get_scale() < scale:
        return loss.item(), None   # skipped: not an update, so no norm and no schedule step
    scheduler.step()
    return loss.item(), grad_norm.item()


def fine_tune(model, tokenizer, texts, labels, *, valid_texts=None, valid_labels=None, epochs=2,
              batch_size=32, encoder_lr=8e-5, head_lr=1e-3, warmup_share=0.06, weight_decay=0.01,
              clip_norm=1.0, train_word_embeddings=False, seed=0, precision="auto",
              log_every=10, on_log: Callable | None = None, progress=True) -> History:
    """Fine-tune ``model`` in place; with a validation set, keep the epoch that scores best on it."""
    if len(texts) != len(labels) or not len(texts):
        raise ValueError(f"fine_tune needs as many labels as texts (got {len(texts)} and {len(labels)})")
    start, device, history = time.perf_counter(), next(model.parameters()).device, History()
    token_ids = tokenizer(list(texts), truncation=True, max_length=MAX_LEN)["input_ids"]
    lengths, labels = torch.tensor([len(ids) for ids in token_ids]), torch.as_tensor(labels)
    valid_ids = None if valid_texts is None else tokenizer(
        list(valid_texts), truncation=True, max_length=MAX_LEN)["input_ids"]
    word_embeddings = model.get_input_embeddings().weight  # about half of MiniLM's parameters
    was_trainable = word_embeddings.requires_grad
    word_embeddings.requires_grad_(train_word_embeddings)  # frozen: no gradient, no AdamW update
    try:
        groups = parameter_groups(model, encoder_lr, head_lr, weight_decay)
        optimizer = torch.optim.AdamW(groups, fused=True)  # fused: one kernel updates a whole tensor
        total = epochs * len(length_bucketed_batches(lengths, batch_size))
        warmup = max(1, int(warmup_share * total))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: warmup_then_decay(s, warmup, total))
        amp_dtype = autocast_dtype(device, precision)
        scaler = make_scaler(device, amp_dtype)
        order, best = torch.Generator().manual_seed(seed), None
        torch.manual_seed(seed)  # dropout
        for epoch in range(1, epochs + 1):
            model.train()  # dropout on (predict_proba switches it off)
            batches = length_bucketed_batches(lengths, batch_size, order)
            for indices in tqdm(batches, desc=f"epoch {epoch}/{epochs}", disable=not progress):
                inputs = collate(tokenizer, token_ids, indices).to(device)
                loss, grad_norm = train_step(model, inputs, labels[indices].to(device), optimizer, scheduler,
                                             scaler, clip_norm=clip_norm, amp_dtype=amp_dtype)
                history.append(loss)
                history.skipped += grad_norm is None
                history.grad_norms += [] if grad_norm is None else [grad_norm]
                if on_log and len(history) % log_every == 0:
                    on_log(len(history), train_loss=float(np.mean(history[-log_every:])))
            if valid_texts is not None:
                history.valid_accuracy.append(accuracy(model, tokenizer, valid_ids, valid_labels,
                                                       amp_dtype=amp_dtype))
                if on_log:
                    on_log(len(history), valid_acc=history.valid_accuracy[-1])
                if history.valid_accuracy[-1] > max(history.valid_accuracy[:-1], default=-1.0):
                    best, history.best_epoch = copy.deepcopy(model.state_dict()), epoch
        if best is not None:
            model.load_state_dict(best)  # the checkpoint chosen on validation
        history.final_lr = scheduler.get_last_lr()
        history.seconds = time.perf_counter() - start
    finally:  # the model as it came, also when the training is interrupted
        word_embeddings.requires_grad_(was_trainable)
    model.eval()
    return history
