"""``make bench``: what this machine can do, and how close the course's code comes to it.

One run measures, on the same machine and threads: the matmul FLOP/s at float32 and
bfloat16 and the memory bandwidth (the limits); chapter 06's training step as MFU at both
precisions, and each speed lever on its own; the course's loop against transformers.Trainer;
inference throughput (torch float32 and int8, ONNX float32 and int8); SmolLM2 decoding
against its bandwidth bound; and the course (each chapter's last full run, the venv size).
``--only recipe`` (about 20 minutes, not in the default run) fine-tunes chapter 06's model once
per recipe variant and reports each one's validation accuracy and training time.
Every figure is the median of several repetitions, with the range (min-max) beside it.

It prints a table and writes the book's tables: ``book/_generated/benchmark/<section>.md``, one
per section (SECTIONS) plus ``machine.md``, committed and included by the hand-written page
``book/benchmark.md`` (its prose is translated; the tables are copied into the Chinese edition
as they are). ``--only`` rewrites only the tables it measures (and ``machine.md``, which then says
which). Nothing here is a pass/fail test. ``OML_BENCH_SMOKE=1`` shrinks every measurement to seconds (the
test suite runs that); ``--smoke-runs`` also times each chapter's smoke run (about 10 minutes),
``--setup`` a learner's ``make setup`` into a new venv (a few minutes).
Run it alone on the machine: ``flock /tmp/oml-heavy.lock make bench``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import functools
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

from course import notebooks as nbtools

ROOT = Path(__file__).resolve().parent.parent
TABLES = ROOT / "book" / "_generated" / "benchmark"  # book/benchmark.md includes each file here
# the sections, in the page's order: each is one table, TABLES / f"{section}.md", under its heading there
SECTIONS = ("limits", "training", "recipe", "trainer", "inference", "decoding", "course")
SMOKE = os.environ.get("OML_BENCH_SMOKE", "0") == "1"
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")


class Table:
    """Rows of (section, measurement, value, range, note), printed and written as Markdown tables."""

    def __init__(self):
        self.rows: dict[str, list[tuple[str, str, str, str]]] = defaultdict(list)
        self.facts: dict[str, float] = {}

    def add(self, section: str, name: str, value: str, spread: str = "", note: str = "") -> None:
        self.rows[section].append((name, value, spread, note))
        print(f"  {name:<44} {value:>14} {spread:>22}  {note}", flush=True)

    def markdown(self, section: str) -> str:
        """One section's table (its heading and prose are book/benchmark.md's)."""
        lines = ["| measurement | median | range (min-max) | note |", "|---|---:|---:|---|"]
        lines += [f"| {n} | {v} | {s} | {note} |" for n, v, s, note in self.rows[section]]
        return "\n".join(lines) + "\n"


def si(value: float, unit: str) -> str:
    for scale, prefix in [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]:
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def ranged(values: list[float], unit: str) -> tuple[str, str]:
    from labutils.sentiment.speed import spread

    median, low, high = spread(values)
    return si(median, unit), f"{si(low, unit)} - {si(high, unit)}"


def machine() -> dict[str, str]:
    import torch

    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    lines = info.splitlines()
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    model = next((line.split(":", 1)[1].strip() for line in lines
                  if line.startswith("model name")), platform.processor() or platform.machine())
    return {"CPU": model, "cores": str(os.cpu_count()), "torch threads": str(torch.get_num_threads()),
            "CPU flags (of those that matter here)": ", ".join(f for f in CPU_FLAGS if f in flags) or "none",
            "torch CPU capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__, "Python": platform.python_version(),
            "load average at the start": " ".join(f"{x:.2f}" for x in os.getloadavg())}


# --- the machine's limits ----------------------------------------------------------------------

def limits(table: Table) -> None:
    import torch

    from labutils.sentiment.speed import matmul_flops, spread
    from labutils.timing import samples

    n, repeats = (256, 2) if SMOKE else (2048, 7)
    # without native bf16 a 2048 matmul takes many seconds, single-threaded: probe small first
    slow_bf16 = spread(matmul_flops(torch.bfloat16, n=256, repeats=1))[0] < spread(
        matmul_flops(torch.float32, n=256, repeats=1))[0] / 2
    for name, dtype in [("fp32", torch.float32), ("bf16", torch.bfloat16)]:
        size = min(n, 512) if name == "bf16" and slow_bf16 else n
        flops = matmul_flops(dtype, n=size, repeats=3 if size < n else repeats)
        table.facts[f"peak {name}"] = spread(flops)[0]
        table.add("limits", f"{name} matmul {size} x {size}", *ranged(flops, "FLOP/s"),
                  "slow here: a smaller matmul" if size < n else "")
    table.add("limits", "bf16 / fp32 matmul speed",
              f"{table.facts['peak bf16'] / table.facts['peak fp32']:.2f}x", "",
              "above 1 only where the CPU has native bf16 (avx512_bf16, AMX)")
    size = 2**20 if SMOKE else 2**26  # 256 MB per float32 array: far beyond every cache
    a, b, c = torch.rand(size), torch.rand(size), torch.empty(size)
    copy_rate = [2 * 4 * size / t for t in samples(lambda: c.copy_(a), repeats=repeats)]
    triad = [3 * 4 * size / t for t in samples(lambda: torch.add(a, b, alpha=3.0, out=c), repeats=repeats)]
    table.facts["bandwidth"] = spread(copy_rate)[0]
    table.add("limits", f"memory copy ({4 * size / 1e6:.0f} MB)", *ranged(copy_rate, "B/s"),
              "bytes read + written")
    table.add("limits", "memory triad c = a + 3b", *ranged(triad, "B/s"),
              "bytes read + written")


# --- chapter 06's training step ----------------------------------------------------------------

@functools.cache
def rotten_tomatoes():
    """Chapter 06's split of the Rotten Tomatoes snippets (seed 0), read once for every section."""
    from labutils.data import load_rotten_tomatoes

    return load_rotten_tomatoes(test_size=1000, seed=0)


def training_data(tokenizer, batch_size: int, count: int):
    """The first ``count`` length-bucketed batches of chapter 06's training snippets (seed 0)."""
    import torch

    from labutils.data import length_bucketed_batches
    from labutils.sentiment import MAX_LEN, collate

    data = rotten_tomatoes()
    ids = tokenizer(list(data.x_train), truncation=True, max_length=MAX_LEN)["input_ids"]
    lengths = torch.tensor([len(i) for i in ids])
    chosen = length_bucketed_batches(lengths, batch_size, torch.Generator().manual_seed(0))[:count]
    return [(collate(tokenizer, ids, b), data.y_train[b]) for b in chosen]


def load_classifier():
    from labutils import seed_everything
    from labutils.models import load_minilm_tokenizer, minilm_dir
    from labutils.sentiment import MeanPooledBertForSequenceClassification

    seed_everything(0)  # chapter 06's seed before its load: every caller gets the same new head
    model = MeanPooledBertForSequenceClassification.from_pretrained(
        minilm_dir(), num_labels=2, local_files_only=True, use_safetensors=True)
    return load_minilm_tokenizer(), model


# chapter 06's recipe: the word-embedding table frozen, AdamW fused (the levers below undo one each)
RECIPE = {"freeze_word_embeddings": True, "optimizer": "fused"}


def training(table: Table, levers: bool, compile_: bool = False) -> None:
    from labutils.sentiment.speed import mfu, non_embedding_params, spread, step_tokens_per_second

    tokenizer, model = load_classifier()
    steps, repeats = (1, 1) if SMOKE else (8, 3)
    batches = training_data(tokenizer, 8 if SMOKE else 32, steps)
    params = non_embedding_params(model)
    tokens = sum(inputs["input_ids"].numel() for inputs, _ in batches)
    section = "training"
    table.add(section, "non-embedding parameters", f"{params / 1e6:.2f}M", "",
              f"{steps} batches of {len(batches[0][1])}, {tokens / steps:.0f} padded tokens per step")

    def measure(label: str, precision="fp32", note="", few=False, **kw):
        chosen = batches[:1] if few else batches  # a slow setting: fewer batches, same kind
        rate = step_tokens_per_second(model, chosen, precision=precision, repeats=1 if few else repeats, **kw)
        peak = table.facts[f"peak {precision}"]
        share = mfu(spread(rate)[0], params, peak)
        table.facts[label] = spread(rate)[0]
        per_step = sum(i["input_ids"].numel() for i, _ in chosen) / len(chosen) / spread(rate)[0]
        table.add(section, label, *ranged(rate, "tok/s"),
                  f"MFU {share:.0%} of {si(peak, 'FLOP/s')} ({precision}); "
                  f"{per_step:.2f} s/step{'; ' + note if note else ''}")

    measure("recipe, fp32", **RECIPE)
    slow_bf16 = table.facts["peak bf16"] < table.facts["peak fp32"] / 2
    measure("recipe, bf16 autocast", precision="bf16", few=slow_bf16, **RECIPE,
            note="first batch only, 1 repetition (slow here)" if slow_bf16 else "")
    table.facts["bf16 speed-up"] = table.facts["recipe, bf16 autocast"] / table.facts["recipe, fp32"]
    if compile_:
        measure("torch.compile (compile time not counted)", compile=True, **RECIPE)
    if not levers:
        return
    base = table.facts["recipe, fp32"]
    lever_rows = [("+ word embeddings trained", {"freeze_word_embeddings": False}),
                  ("+ AdamW default (a for-loop on a CPU)", {"optimizer": "default"}),
                  ("+ AdamW foreach=True", {"optimizer": "foreach"}),
                  ("+ 1 thread", {"threads": 1}),
                  ("the previous recipe (both levers undone)",
                   {"freeze_word_embeddings": False, "optimizer": "default"})]
    for label, kw in lever_rows:
        measure(label, **{**RECIPE, **kw})
        name, value, range_, note = table.rows[section][-1]
        ratio = table.facts[label] / base
        table.rows[section][-1] = (name, value, range_, f"{ratio:.2f}x recipe fp32; {note}")


# --- chapter 06's recipe, one change at a time: validation accuracy and training time ------------

# each variant changes one thing in fine_tune's defaults (chapter 06's recipe: 2 epochs, precision
# "auto", which is bfloat16 on a CPU with native bfloat16); "frozen_layers" is set on the model
# before fine_tune is called
RECIPE_VARIANTS = [("chapter 06's recipe (2 epochs)", {}),
                   ("float32 (no autocast)", {"precision": "fp32"}),
                   ("1 epoch", {"epochs": 1}),
                   ("batch 64", {"batch_size": 64}),
                   ("embeddings and bottom 2 encoder layers frozen", {"frozen_layers": 2})]


def recipe_variants(table: Table) -> None:
    """Chapter 06's fine-tuning, and each variant, scored on chapter 06's validation split (the
    test set is not read): what a lever buys in accuracy and what it costs in training time."""
    import torch

    from labutils.data import carve_validation
    from labutils.sentiment import autocast_dtype, fine_tune
    from labutils.stats import binomial_half_width

    data = carve_validation(rotten_tomatoes(), 32 if SMOKE else 1000, seed=0)  # chapter 06's split
    texts, labels = (data.x_train[:96], data.y_train[:96]) if SMOKE else (data.x_train, data.y_train)
    valid_texts, valid_labels = data.x_valid, data.y_valid
    section, base = "recipe", None
    names, recipe_dtype = {None: "float32", torch.bfloat16: "bfloat16"}, autocast_dtype("cpu")
    for label, change in RECIPE_VARIANTS:
        change = dict(change)
        dtype = autocast_dtype("cpu", change.get("precision", "auto"))
        precision = names[dtype]
        if "precision" in change and dtype == recipe_dtype:  # e.g. float32 where "auto" is float32 too
            table.add(section, label, "", "", f"the recipe's own precision here ({precision}): not run again")
            continue
        tokenizer, model = load_classifier()
        frozen = change.pop("frozen_layers", 0)
        if frozen:  # no gradient below the first trained layer: the backward pass stops there
            model.bert.embeddings.requires_grad_(False)
            model.bert.encoder.layer[:frozen].requires_grad_(False)
        if SMOKE:
            change["batch_size"] = change.get("batch_size", 32) // 4
        history = fine_tune(model, tokenizer, texts, labels, valid_texts=valid_texts,
                            valid_labels=valid_labels, progress=not SMOKE, **change)
        acc = history.valid_accuracy[history.best_epoch - 1]
        base = acc if base is None else base
        vs = "" if acc == base else f"{100 * (acc - base):+.1f} points vs the recipe; "
        # one run per variant, so no range: the training time goes into the note
        table.add(section, label, f"{acc:.1%} valid", "",
                  f"{vs}trained in {history.seconds / 60:.1f} min: {len(history)} steps, "
                  f"{history.seconds / len(history):.2f} s/step, {precision}, "
                  f"epoch {history.best_epoch} kept")
    table.add(section, "95% interval of one validation accuracy",
              f"±{binomial_half_width(base, len(valid_labels)):.1%}", "",
              f"{len(valid_labels)} validation snippets: a difference inside it is not evidence")


# --- the course's loop against transformers.Trainer ----------------------------------------------

class _Listed:
    """A list as a torch Dataset, in a fixed order (the Trainer below reads it sequentially)."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def loop_vs_trainer(table: Table) -> None:
    import torch
    import transformers
    from torch.utils.data import SequentialSampler

    from labutils.data import length_bucketed_batches
    from labutils.sentiment import MAX_LEN, fine_tune
    from labutils.sentiment.speed import spread
    from labutils.timing import samples

    tokenizer, model = load_classifier()
    steps, batch_size, repeats = (2, 8, 1) if SMOKE else (16, 32, 3)
    data = rotten_tomatoes()
    texts, labels = list(data.x_train[: steps * batch_size]), data.y_train[: steps * batch_size]
    ids = tokenizer(texts, truncation=True, max_length=MAX_LEN)["input_ids"]  # as fine_tune tokenizes them
    # the Trainer gets fine_tune's own batches, in fine_tune's order (seed 0), read sequentially
    lengths = torch.tensor([len(i) for i in ids])
    order = torch.cat(length_bucketed_batches(lengths, batch_size, torch.Generator().manual_seed(0))).tolist()
    items = [{"input_ids": ids[i][:MAX_LEN], "labels": int(labels[i])} for i in order]

    class InOrderTrainer(transformers.Trainer):
        def _get_train_sampler(self, *args, **kwargs):
            return SequentialSampler(self.train_dataset)

    section = "trainer"
    precisions = ["fp32"] + (["bf16"] if table.facts["peak bf16"] > table.facts["peak fp32"] else [])
    if len(precisions) == 1:
        table.add(section, "bf16", "not compared", "", "bf16 matmuls are slower than fp32 on this CPU")
    for precision in precisions:
        def ours():
            fine_tune(copy.deepcopy(model), tokenizer, texts, labels, epochs=1, batch_size=batch_size,
                      precision=precision, progress=False)

        def trainer():
            with tempfile.TemporaryDirectory() as out:
                args = transformers.TrainingArguments(
                    out, per_device_train_batch_size=batch_size, max_steps=steps, learning_rate=8e-5,
                    weight_decay=0.01, warmup_steps=0.06, max_grad_norm=1.0, lr_scheduler_type="linear",
                    bf16=precision == "bf16", use_cpu=True, report_to=[], save_strategy="no",
                    logging_strategy="no", disable_tqdm=True, dataloader_num_workers=0, seed=0)
                with contextlib.redirect_stdout(io.StringIO()):  # its summary line is not ours
                    InOrderTrainer(model=copy.deepcopy(model), args=args, train_dataset=_Listed(items),
                                   data_collator=transformers.DataCollatorWithPadding(tokenizer)).train()

        ours_s, trainer_s = samples(ours, repeats=repeats), samples(trainer, repeats=repeats)
        ratio = spread(ours_s)[0] / spread(trainer_s)[0]
        table.facts[f"loop/Trainer {precision}"] = ratio
        table.add(section, f"course loop, {steps} steps, {precision}", f"{spread(ours_s)[0]:.2f} s",
                  f"{min(ours_s):.2f} - {max(ours_s):.2f} s", "fine_tune, tokenization included")
        table.add(section, f"transformers.Trainer, {steps} steps, {precision}",
                  f"{spread(trainer_s)[0]:.2f} s",
                  f"{min(trainer_s):.2f} - {max(trainer_s):.2f} s", "same batches, order, schedule, clipping")
        table.add(section, f"loop / Trainer wall time, {precision}", f"{ratio:.2f}", "",
                  "below 1: the course's loop is faster")


# --- inference ------------------------------------------------------------------------------------

def inference(table: Table) -> None:
    import numpy as np
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from labutils.sentiment import MAX_LEN, collate
    from labutils.timing import samples

    tokenizer, model = load_classifier()
    model.eval()
    size, repeats = (8, 2) if SMOKE else (64, 5)
    ids = tokenizer(list(rotten_tomatoes().x_test[:size]), truncation=True, max_length=MAX_LEN)["input_ids"]
    batch = collate(tokenizer, ids, list(range(size)))
    section = "inference"
    note = f"batch {size}, padded to {batch['input_ids'].shape[1]} tokens"

    def rate(run):
        return [size / t for t in samples(run, repeats=repeats)]

    with torch.inference_mode():
        table.add(section, "torch fp32", *ranged(rate(lambda: model(**batch)), "ex/s"), note)
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

            int8 = copy.deepcopy(model)
            quantize_(int8, Int8DynamicActivationInt8WeightConfig())
            table.add(section, "torch dynamic int8 (torchao)", *ranged(rate(lambda: int8(**batch)), "ex/s"),
                      "linear layers int8")
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(tmp) / "model.onnx"
        axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            torch.onnx.export(model, (batch["input_ids"], batch["attention_mask"]), path,
                              input_names=["input_ids", "attention_mask"], output_names=["logits"],
                              dynamic_axes=axes, opset_version=17, dynamo=False)
            quantize_dynamic(path, path.with_suffix(".int8.onnx"), weight_type=QuantType.QInt8,
                             per_channel=True)
        feed = {k: np.asarray(v) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        for label, file in [("ONNX Runtime fp32", path),
                            ("ONNX Runtime int8", path.with_suffix(".int8.onnx"))]:
            session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
            table.add(section, label, *ranged(rate(lambda s=session: s.run(None, feed)), "ex/s"), note)


# --- decoding -----------------------------------------------------------------------------------

def decoding(table: Table) -> None:
    import torch

    from labutils.sentiment.speed import spread
    from labutils.timing import samples

    if SMOKE:  # a tiny random Llama: the code path, not the figure
        import transformers

        config = transformers.LlamaConfig(vocab_size=1000, hidden_size=32, intermediate_size=64,
                                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
        tokenizer, llm, name, new = None, transformers.LlamaForCausalLM(config), "tiny random Llama", 4
        prompt = {"input_ids": torch.tensor([[1, 2, 3]])}
    else:
        from labutils.models import load_smollm2

        tokenizer, llm = load_smollm2()
        name, new = "SmolLM2-135M fp32", 32
        prompt = dict(tokenizer("The open-source community", return_tensors="pt"))
    llm.eval()

    def generate(count):
        llm.generate(**prompt, max_new_tokens=count, min_new_tokens=count, do_sample=False)

    with torch.inference_mode():
        full = samples(lambda: generate(new), repeats=1 if SMOKE else 3)
        first = samples(lambda: generate(1), repeats=1 if SMOKE else 3)
    per_token = (spread(full)[0] - spread(first)[0]) / (new - 1)  # decoding only, the prompt's pass left out
    weights = sum({p.data_ptr(): p.numel() * p.element_size() for p in llm.parameters()}.values())
    bound = table.facts["bandwidth"] / weights
    section = "decoding"
    table.add(section, f"{name}: tokens/s", f"{1 / per_token:.1f} tok/s", "",
              f"({new} - 1 new tokens) minus the prompt pass")
    table.add(section, "bandwidth bound: copy bandwidth / weight bytes", f"{bound:.1f} tok/s", "",
              f"{si(weights, 'B')} of weights read per token")
    table.add(section, "share of the bound", f"{1 / per_token / bound:.0%}", "")


# --- the course ---------------------------------------------------------------------------------

def tree_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())


def venv_sizes() -> tuple[float, list[tuple[str, float]]]:
    """Total size of this venv in bytes, and its largest installed packages."""
    venv = Path(sys.prefix)
    total = tree_bytes(venv)
    site = next(venv.glob("lib/python*/site-packages"), None)
    sizes = []
    if site is not None and not SMOKE:
        for folder in site.iterdir():
            if folder.is_dir() and not folder.name.endswith((".dist-info", "__pycache__")):
                sizes.append((folder.name, tree_bytes(folder)))
    return total, sorted(sizes, key=lambda s: -s[1])[:8]


# what every chapter imports, so that Python writes their .pyc files (the venv's size after first use)
FIRST_IMPORTS = ("import torch, transformers, sklearn, scipy, pandas, matplotlib.pyplot, onnxruntime, "
                 "labutils.sentiment, labutils.plot")


def fresh_setup(table: Table, section: str) -> None:
    """A learner's `make setup` into a new venv, from what pip finds on this machine (its cache, a
    local wheel folder): the setup time from a warm cache, and the size of that venv."""
    # as on a learner's machine: no venv active, and Python keeps the bytecode it compiles
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "MAKEFLAGS", "MAKELEVEL", "PYTHONDONTWRITEBYTECODE")}
    with tempfile.TemporaryDirectory(prefix="oml-setup-") as tmp:
        venv = Path(tmp) / "venv"
        start = time.perf_counter()
        done = subprocess.run(["make", "--no-print-directory", "setup", f"VENV={venv}"], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"make setup VENV={venv} failed:\n{(done.stdout + done.stderr)[-3000:]}")
        fresh = tree_bytes(venv)
        subprocess.run([str(venv / "bin" / "python"), "-c", FIRST_IMPORTS], cwd=ROOT, env=env, check=True,
                       capture_output=True)
        used = tree_bytes(venv)
    table.add(section, "a learner's make setup, new venv", f"{seconds:.0f} s", "",
              "one run; pip takes what this machine holds (its cache, local wheel folders); the website's "
              "scripts already in book/_static/vendor are kept, so npm does not run")
    table.add(section, "  that venv", f"{fresh / 1e9:.2f} GB", "",
              f"{used / 1e9:.2f} GB once every chapter's packages were imported (Python writes their .pyc)")


def course(table: Table, smoke_runs: bool, setup: bool = False) -> None:
    import nbformat

    section = "course"
    total = 0.0
    for py in nbtools.book_chapters():
        saved = nbformat.read(py.with_suffix(".ipynb"), as_version=4)
        run = saved.metadata.get(nbtools.META_KEY, {}).get("execution", {})
        seconds = run.get("seconds")
        total += seconds or 0
        peak = run.get("peak_memory_mb")
        table.add(section, f"{py.stem}: last full run", nbtools.format_seconds(seconds), "",
                  f"{run.get('date', '?')}, {run.get('machine', '?')}; peak memory "
                  f"{f'{peak:.0f} MB' if peak else 'not recorded'}")
    table.add(section, "all chapters, full runs", f"{total / 60:.1f} min", "", "sum of the saved runs")
    if smoke_runs:
        out = Path(tempfile.mkdtemp())
        try:
            for py in nbtools.book_chapters():
                env = {"OML_OUTPUT_DIR": str(out / f"{py.stem}-outputs")}
                start = time.perf_counter()
                nbtools.execute(py, "smoke", out / py.name, env=env)
                table.add(section, f"{py.stem}: smoke run", f"{time.perf_counter() - start:.0f} s", "", "now")
        finally:
            shutil.rmtree(out)
    else:
        table.add(section, "smoke runs", "not timed", "", "python -m course bench --smoke-runs")
    if setup:
        fresh_setup(table, section)
    else:
        table.add(section, "a learner's make setup", "not timed", "", "python -m course bench --setup")
    size, largest = venv_sizes()
    kind = ("make test's: with the hub's packages and the tests' tools"
            if (Path(sys.prefix) / ".oml-dev-installed").exists() else "")
    table.add(section, "this virtual environment", f"{size / 1e9:.2f} GB", "",
              "; ".join(filter(None, [str(Path(sys.prefix)), kind])))
    for name, bytes_ in largest:
        table.add(section, f"  of which {name}", f"{bytes_ / 1e6:.0f} MB", "")


def write_tables(table: Table, about: dict[str, str], seconds: float, out: Path,
                 only: list[str] | None = None) -> list[Path]:
    """``out/machine.md`` and ``out/<section>.md`` for each section measured (book/benchmark.md
    includes them); a table this run did not measure (``--only``) is left as it was."""
    unknown = set(table.rows) - set(SECTIONS)
    assert not unknown, f"sections {sorted(unknown)} are not in SECTIONS (and book/benchmark.md)"
    rows = [f"| {k} | {v} |" for k, v in about.items()]
    rows += [f"| date | {datetime.date.today().isoformat()} |",
             f"| benchmark run time | {seconds:.0f} s{' (smoke setting)' if SMOKE else ''} |",
             f"| load average at the end | {' '.join(f'{x:.2f}' for x in os.getloadavg())} |"]
    if only is not None:
        rows.append(f"| tables measured in this run | {', '.join(s for s in SECTIONS if s in table.rows)} |")
    out.mkdir(parents=True, exist_ok=True)
    files = {"machine": "\n".join(["| machine | |", "|---|---|", *rows]) + "\n"}
    files.update({section: table.markdown(section) for section in SECTIONS if section in table.rows})
    written = []
    for name, text in files.items():
        path = out / f"{name}.md"
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course bench", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TABLES,
                        help=f"the folder of the page's tables (default {TABLES.relative_to(ROOT)})")
    parser.add_argument("--smoke-runs", action="store_true", help="also time each chapter's smoke run")
    parser.add_argument("--setup", action="store_true",
                        help="also time a learner's make setup into a new venv (a few minutes)")
    parser.add_argument("--only", nargs="*", default=None,
                        help="sections: training levers trainer inference decoding course, and the slow ones "
                             "not in the default run, compile and recipe; limits run when one needs them")
    args = parser.parse_args(argv)
    wanted = set(args.only or ["limits", "training", "levers", "trainer", "inference", "decoding", "course"])
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    start, table, about = time.perf_counter(), Table(), machine()
    print("\n".join(f"{k}: {v}" for k, v in about.items()), flush=True)
    if wanted - {"recipe", "inference", "course"}:
        limits(table)  # training, levers, compile, trainer and decoding divide by these
    if wanted & {"training", "levers", "compile"}:
        training(table, levers="levers" in wanted, compile_="compile" in wanted)
    if "recipe" in wanted:
        recipe_variants(table)
    if "trainer" in wanted:
        loop_vs_trainer(table)
    if "inference" in wanted:
        inference(table)
    if "decoding" in wanted:
        decoding(table)
    if "course" in wanted:
        course(table, args.smoke_runs, args.setup)
    write_tables(table, about, time.perf_counter() - start, args.out, args.only or None)
    print(f"\nwrote {args.out} in {time.perf_counter() - start:.0f} s; facts: "
          + json.dumps({k: round(v, 3) for k, v in table.facts.items() if v < 1e3}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
