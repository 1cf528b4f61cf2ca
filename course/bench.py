"""Timings that matter to a learner on a laptop CPU: loading data and models, the speed of the
open models (MiniLM training and inference, SmolLM2 decoding), one smoke run per chapter, and the
last recorded full run of each chapter.

Prints figures; nothing here is a pass/fail test. Run with `make bench` (python -m course bench).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from course import notebooks as nbtools


def timed(label: str, fn) -> None:
    start = time.perf_counter()
    result = fn()
    print(f"{label:<40} {time.perf_counter() - start:7.1f} s   {result}")


def median_seconds(fn, repeats: int = 5, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def model_speeds() -> None:
    """MiniLM fine-tuning step and inference (chapters 06, 07); SmolLM2 greedy decoding (chapter 08)."""
    import torch

    from labutils import get_device, models
    from labutils.sentiment import MeanPooledBertForSequenceClassification

    device = get_device()
    print(f"device {device}, {torch.get_num_threads()} torch threads")
    model = MeanPooledBertForSequenceClassification.from_pretrained(
        models.minilm_dir(), num_labels=2, local_files_only=True, use_safetensors=True).to(device)
    ids = torch.randint(1000, 30000, (32, 32), device=device)  # batch 32 of 32 tokens, a typical snippet
    mask, labels = torch.ones_like(ids), torch.randint(0, 2, (32,), device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def train_step():
        optimizer.zero_grad()
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        optimizer.step()

    step = median_seconds(train_step)
    print(f"{'MiniLM training step (batch 32 x 32)':<40} {step:7.2f} s   "
          f"one epoch of 11,752 snippets ~ {11752 / 32 * step / 60:.1f} min")
    model.eval()
    with torch.no_grad():
        infer = median_seconds(lambda: model(input_ids=ids, attention_mask=mask))
    print(f"{'MiniLM inference (batch 32 x 32)':<40} {infer:7.3f} s   {32 / infer:.0f} snippets/s")
    tokenizer, llm = models.load_smollm2()
    llm.to(device).eval()
    prompt = tokenizer("The open-source community", return_tensors="pt").to(device)
    new_tokens = 32
    with torch.no_grad():
        decode = median_seconds(lambda: llm.generate(**prompt, max_new_tokens=new_tokens,
                                                     min_new_tokens=new_tokens,
                                                     do_sample=False), repeats=3, warmup=1)
    print(f"{'SmolLM2-135M greedy decoding':<40} {decode:7.2f} s   {new_tokens / decode:.1f} tokens/s")


def main(argv: list[str] | None = None) -> int:
    from labutils import data, models

    venv = Path(sys.prefix)
    size = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file()) / 1e9
    print(f"{'virtual environment size':<40} {size:7.2f} GB   {venv}")
    for name in data.DATASETS:
        timed(f"load_dataset('{name}')", lambda name=name: data.load_dataset(name))
    timed("load_minilm_classifier()", lambda: type(models.load_minilm_classifier()[1]).__name__)
    timed("load_smollm2()", lambda: type(models.load_smollm2()[1]).__name__)
    model_speeds()
    out = Path(tempfile.mkdtemp())
    try:
        for py in nbtools.sources():
            env = {"OML_OUTPUT_DIR": str(out / f"{py.stem}-outputs")}  # this run's own output folder
            timed(f"smoke run {py.stem}",
                  lambda py=py, env=env: nbtools.execute(py, "smoke", out / py.name, env=env) and "ok")
    finally:
        shutil.rmtree(out)
    status = out.with_name("oml-status.md")
    nbtools.status_table(status)
    print("\nLast full run of each chapter (from the saved notebooks):\n"
          + status.read_text(encoding="utf-8"))
    status.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
