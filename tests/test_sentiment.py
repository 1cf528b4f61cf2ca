"""labutils.sentiment on a tiny random BERT (no real training): loading, the recipe, ONNX, the CLI."""

import ast
import inspect
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig

from labutils import sentiment
from labutils.models import load_minilm_tokenizer
from labutils.sentiment import recipe


@pytest.fixture(scope="module")
def tokenizer():
    return load_minilm_tokenizer()


def tiny_model(seed=0):
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=80, num_labels=2)
    return sentiment.MeanPooledBertForSequenceClassification(config).eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("tiny-sentiment")
    model = tiny_model()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    pooled = sentiment.mean_pool(hidden, torch.tensor([[1, 1, 0]]))
    torch.testing.assert_close(pooled, torch.tensor([[2.0, 3.0]]))


def test_saved_model_reloads_with_identical_probabilities(saved, tokenizer):
    folder, model = saved
    loaded_tokenizer, loaded = sentiment.load_sentiment_model(folder)
    texts = ["a fine film", "dull", "an overlong, unwatchable sequel"]
    probs = sentiment.fresh_probability(texts, loaded_tokenizer, loaded)
    assert probs.shape == (3,) and ((probs > 0) & (probs < 1)).all()
    torch.testing.assert_close(probs, sentiment.fresh_probability(texts, tokenizer, model))
    with pytest.raises(TypeError, match="list of strings"):
        sentiment.fresh_probability("one string", loaded_tokenizer, loaded)


def test_missing_model_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="Run chapter 06"):
        sentiment.load_sentiment_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="chapter 07"):
        sentiment.load_onnx_classifier(tmp_path / "model.onnx")


def test_fine_tune_learns_a_separable_task(tokenizer):
    fresh = ["great fun", "wonderful acting", "a joy", "brilliant"]
    rotten = ["awful", "a dull mess", "boring", "bad"]
    texts = fresh * 4 + rotten * 4
    labels = torch.tensor([1] * 16 + [0] * 16)
    model = tiny_model()  # random word vectors, not pretrained ones: they must be trained here
    losses = sentiment.fine_tune(model, tokenizer, texts, labels, epochs=6, batch_size=8,
                                 encoder_lr=3e-3, head_lr=3e-2, train_word_embeddings=True, progress=False)
    assert len(losses) == 6 * 4 and not model.training
    assert model.get_input_embeddings().weight.requires_grad  # as it came
    assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4])
    assert ((sentiment.fresh_probability(texts, tokenizer, model) > 0.5).long() == labels).all()
    again = tiny_model()
    assert sentiment.fine_tune(again, tokenizer, texts, labels, epochs=6, batch_size=8, encoder_lr=3e-3,
                               head_lr=3e-2, train_word_embeddings=True,
                               progress=False) == losses  # same seed, same run
    with pytest.raises(ValueError, match="as many labels"):
        sentiment.fine_tune(model, tokenizer, texts, labels[:-1], progress=False)


@pytest.fixture(scope="module")
def onnx_file(saved):
    folder, model = saved
    example = (torch.tensor([[101, 2204, 102]]), torch.ones(1, 3, dtype=torch.long))
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example, folder / "model.onnx", input_names=["input_ids", "attention_mask"],
                          output_names=["logits"], dynamic_axes=axes, dynamo=False)
    return folder / "model.onnx"


def test_onnx_probabilities_match_torch(saved, tokenizer, onnx_file):
    _, model = saved
    texts = ["short", "a somewhat longer sentence, with punctuation and an unwatchable word"]
    onnx_tokenizer, session = sentiment.load_onnx_classifier(onnx_file, threads=1)
    got = sentiment.onnx_fresh_probability(texts, onnx_tokenizer, session)
    want = sentiment.fresh_probability(texts, tokenizer, model).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert got[0] != got[1]  # padding handled: two different answers
    with pytest.raises(TypeError, match="list of strings"):
        sentiment.onnx_fresh_probability("one string", onnx_tokenizer, session)


def test_cli_classifies_with_a_folder_or_an_onnx_file(saved, onnx_file, capsys):
    folder, _ = saved
    assert sentiment.main(["--model", str(folder), "nice", "bad"]) == 0
    from_folder = capsys.readouterr().out.splitlines()
    assert sentiment.main(["--model", str(onnx_file), "nice", "bad"]) == 0
    from_onnx = capsys.readouterr().out.splitlines()
    assert len(from_folder) == 2 and from_folder == from_onnx
    assert from_folder[0].split()[0] in sentiment.LABELS and from_folder[0].endswith("nice")


def test_cli_reports_a_missing_model(tmp_path, capsys):
    assert sentiment.main(["--model", str(tmp_path / "nowhere"), "text"]) == 2
    assert "Run chapter 06" in capsys.readouterr().err


ROOT = Path(__file__).resolve().parent.parent
CHAPTER = ROOT / "notebooks" / "06_bert_finetuning.py"


def _chapter_parameters() -> dict:
    """The literal assignments of chapter 06's parameters cell."""
    source = CHAPTER.read_text(encoding="utf-8")
    cell = source.split('# %% tags=["parameters"]', 1)[1].split("# %%", 1)[0]
    values = {}
    for node in ast.parse(cell).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return values


def test_chapter_hyper_parameters_are_the_library_defaults():
    params = _chapter_parameters()
    defaults = {name: p.default for name, p in inspect.signature(sentiment.fine_tune).parameters.items()
                if p.default is not inspect.Parameter.empty}
    pairs = {"EPOCHS": "epochs", "BATCH_SIZE": "batch_size", "ENCODER_LR": "encoder_lr", "HEAD_LR": "head_lr",
             "WARMUP_SHARE": "warmup_share", "WEIGHT_DECAY": "weight_decay", "CLIP_NORM": "clip_norm",
             "SEED": "seed", "PRECISION": "precision", "TRAIN_WORD_EMBEDDINGS": "train_word_embeddings"}
    chapter_values = {chapter: params[chapter] for chapter in pairs}
    assert chapter_values == {chapter: defaults[lib] for chapter, lib in pairs.items()}
    assert params["MAX_LEN"] == sentiment.MAX_LEN


@pytest.mark.parametrize("name", ["parameter_groups", "warmup_then_decay", "train_step", "fine_tune"])
def test_chapter_writes_the_library_loop_verbatim(name):
    assert inspect.getsource(getattr(recipe, name)) in CHAPTER.read_text(encoding="utf-8"), (
        f"chapter 06 and labutils.sentiment.recipe.{name} differ: change both")


def test_parameter_groups_leave_biases_and_layer_norms_undecayed():
    model = tiny_model()
    groups = recipe.parameter_groups(model, encoder_lr=1e-4, head_lr=1e-2, weight_decay=0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    seen = {names[id(p)]: (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    assert sorted(seen) == sorted(names.values())  # every parameter exactly once
    for name, (lr, decay) in seen.items():
        assert lr == (1e-2 if name.startswith("classifier.") else 1e-4), name
        assert decay == (0.0 if name.endswith("bias") or "LayerNorm" in name else 0.1), name
    group_names = [g["name"] for g in groups]
    assert group_names == ["encoder, decay", "encoder, no decay", "head, decay", "head, no decay"]


def test_schedule_matches_transformers():
    import transformers

    for warmup, total in [(1, 1), (3, 10), (44, 736), (10, 10)]:
        reference = transformers.get_linear_schedule_with_warmup(
            torch.optim.SGD([torch.zeros(1)], lr=1.0), warmup, total).lr_lambdas[0]
        for step in range(total + 2):
            assert abs(recipe.warmup_then_decay(step, warmup, total) - reference(step)) < 1e-12


def _one_step_setup(tokenizer, scaler_enabled):
    model = tiny_model().train()
    optimizer = torch.optim.AdamW(recipe.parameter_groups(model, 1e-3, 1e-2, 0.01))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: recipe.warmup_then_decay(s, 2, 10))
    scaler = torch.amp.GradScaler("cpu", enabled=scaler_enabled)
    inputs = tokenizer(["a fine film", "dull"], padding=True, return_tensors="pt")
    batch = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
    return model, optimizer, scheduler, scaler, batch, torch.tensor([1, 0])


def test_an_overflowed_fp16_step_is_skipped_and_left_out_of_norms_and_schedule(tokenizer):
    model, optimizer, scheduler, scaler, batch, labels = _one_step_setup(tokenizer, scaler_enabled=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    weight = model.bert.encoder.layer[0].output.dense.weight
    overflow = weight.register_hook(lambda grad: grad * float("inf"))  # what an fp16 overflow leaves
    loss, norm = recipe.train_step(model, batch, labels, optimizer, scheduler, scaler, clip_norm=1.0)
    overflow.remove()
    assert np.isfinite(loss) and norm is None
    assert scheduler.last_epoch == 0 and scaler.get_scale() == 65536.0 / 2  # no schedule step, scale halved
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # no update
    assert not optimizer.state
    _, norm = recipe.train_step(model, batch, labels, optimizer, scheduler, scaler, clip_norm=1.0)
    assert norm is not None and np.isfinite(norm) and scheduler.last_epoch == 1
    assert optimizer.state[weight]["step"] == 1  # an AdamW update (at lr 0: warm-up starts at 0)


def test_a_float32_step_reports_the_norm_before_clipping(tokenizer):
    model, optimizer, scheduler, scaler, batch, labels = _one_step_setup(tokenizer, scaler_enabled=False)
    _, norm = recipe.train_step(model, batch, labels, optimizer, scheduler, scaler, clip_norm=1e-3)
    grads = [p.grad.norm() for p in model.parameters() if p.grad is not None]
    after = torch.linalg.vector_norm(torch.stack(grads))
    assert norm > 1e-2 and after.item() == pytest.approx(1e-3, rel=1e-3)  # reported before, clipped after
    assert scheduler.last_epoch == 1


@pytest.mark.parametrize("native_bf16, expected", [(False, None), (True, torch.bfloat16)])
def test_auto_precision_on_a_cpu_is_bfloat16_only_where_it_is_native(monkeypatch, native_bf16, expected):
    monkeypatch.setattr(recipe, "cpu_has_native_bf16", lambda: native_bf16)
    assert recipe.autocast_dtype("cpu") is expected and recipe.autocast_dtype("cpu", "fp32") is None


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, monkeypatch):
    cases = [("fpu avx2 fma", False), ("fpu avx512f avx512_bf16", True), ("amx_bf16 amx_tile", True)]
    monkeypatch.setattr(recipe, "Path", lambda _: tmp_path / "cpuinfo")
    try:
        for flags, expected in cases:
            (tmp_path / "cpuinfo").write_text(f"processor : 0\nflags : {flags}\n")
            recipe.cpu_has_native_bf16.cache_clear()
            assert recipe.cpu_has_native_bf16() is expected, flags
    finally:
        recipe.cpu_has_native_bf16.cache_clear()  # the next caller reads this machine's flags again


def test_precision_choice():
    assert recipe.autocast_dtype("cpu", "bf16") == torch.bfloat16
    assert recipe.autocast_dtype("mps", "auto") is None
    assert not recipe.make_scaler("cpu", torch.bfloat16).is_enabled()
    assert recipe.make_scaler("cpu", torch.float16).is_enabled()
    with pytest.raises(ValueError, match="precision"):
        recipe.autocast_dtype("cpu", "float8")


def test_fine_tune_keeps_the_epoch_best_on_validation(tokenizer):
    fresh = ["great fun", "wonderful acting", "a joy", "brilliant"]
    rotten = ["awful", "a dull mess", "boring", "bad"]
    texts, labels = fresh * 2 + rotten * 2, torch.tensor([1] * 8 + [0] * 8)
    valid_texts, valid_labels = ["great acting", "a dull film", "a joy", "bad"], torch.tensor([1, 0, 1, 0])
    logged = []
    model = tiny_model()
    history = sentiment.fine_tune(model, tokenizer, texts, labels, valid_texts=valid_texts,
                                  valid_labels=valid_labels, epochs=3, batch_size=4, encoder_lr=3e-3,
                                  head_lr=3e-2, progress=False, log_every=2,
                                  on_log=lambda step, **values: logged.append((step, values)))
    assert len(history) == 12 and len(history.grad_norms) == 12 and history.skipped == 0
    assert len(history.valid_accuracy) == 3
    assert history.best_epoch == 1 + int(np.argmax(history.valid_accuracy))  # first of the best
    valid_ids = tokenizer(valid_texts)["input_ids"]
    kept = recipe.accuracy(model, tokenizer, valid_ids, valid_labels)
    assert kept == history.valid_accuracy[history.best_epoch - 1]
    assert history.final_lr == [0.0] * 4 and history.seconds > 0
    assert [v for _, v in logged].count({"valid_acc": history.valid_accuracy[0]}) >= 1
    assert sum("train_loss" in v for _, v in logged) == 6


BLOCK_TORCH = """
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Block())
sys.argv = ["python -m labutils.sentiment", *sys.argv[1:]]
runpy.run_module("labutils.sentiment", run_name="__main__", alter_sys=True)
"""


def test_the_onnx_cli_imports_neither_torch_nor_transformers(saved, onnx_file):
    folder, _ = saved
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", BLOCK_TORCH, "--model", str(onnx_file), "nice", "bad"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.splitlines()) == 2 and run.stdout.splitlines()[0].endswith("nice")
    blocked = subprocess.run([sys.executable, "-c", BLOCK_TORCH, "--model", str(folder), "nice"],
                             capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False)
    assert blocked.returncode != 0 and "blocked in this test" in blocked.stderr  # the block works


def test_fine_tune_leaves_the_word_embeddings_as_pretrained_by_default(tokenizer):
    model = tiny_model()
    table = model.get_input_embeddings().weight.detach().clone()
    layer = model.bert.encoder.layer[0].output.dense.weight.detach().clone()
    sentiment.fine_tune(model, tokenizer, ["great fun", "awful"] * 4, torch.tensor([1, 0] * 4), epochs=1,
                        batch_size=4, progress=False)
    assert torch.equal(model.get_input_embeddings().weight, table)  # frozen: not a number moved
    assert not torch.equal(model.bert.encoder.layer[0].output.dense.weight, layer)  # the rest trained
    assert model.get_input_embeddings().weight.requires_grad  # and trainable again afterwards


def test_an_interrupted_fine_tune_leaves_the_word_embeddings_trainable(tokenizer):
    model = tiny_model()

    def interrupt(step, **logged):
        raise KeyboardInterrupt  # what a learner's stop button does mid-epoch

    with pytest.raises(KeyboardInterrupt):
        sentiment.fine_tune(model, tokenizer, ["great fun", "awful"] * 4, torch.tensor([1, 0] * 4), epochs=1,
                            batch_size=4, log_every=1, on_log=interrupt, progress=False)
    assert model.get_input_embeddings().weight.requires_grad
