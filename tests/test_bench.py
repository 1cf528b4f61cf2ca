"""`make bench` in its smoke setting: it runs every section and writes its page (no timing is judged)."""

import pytest
import torch
from transformers import BertConfig

from course import bench
from labutils.sentiment import MeanPooledBertForSequenceClassification
from labutils.sentiment.speed import mfu, non_embedding_params, spread, step_tokens_per_second


def tiny_model():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=40, num_labels=2)
    return MeanPooledBertForSequenceClassification(config)


def test_non_embedding_params_leave_out_every_embedding_table():
    model = tiny_model()
    tables = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
    assert non_embedding_params(model) == sum(p.numel() for p in model.parameters()) - tables


def test_mfu_is_six_flops_per_parameter_and_token():
    assert mfu(tokens_per_second=1000, params=10_000, peak_flops=1.2e8) == pytest.approx(0.5)
    assert spread([3.0, 1.0, 2.0]) == (2.0, 1.0, 3.0)


@pytest.mark.parametrize("kw", [{}, {"freeze_word_embeddings": True, "optimizer": "fused"}])
def test_step_rate_leaves_the_model_untouched(kw):
    model = tiny_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.randint(1, 100, (4, 7))
    batches = [({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, torch.tensor([0, 1, 0, 1]))]
    rates = step_tokens_per_second(model, batches, repeats=2, **kw)
    assert len(rates) == 2 and all(r > 0 for r in rates)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert model.bert.embeddings.word_embeddings.weight.requires_grad


def test_smoke_bench_writes_its_page(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "SMOKE", True)
    page = tmp_path / "benchmark.md"
    assert bench.main(["--out", str(page)]) == 0
    text = page.read_text(encoding="utf-8")
    for heading in ["The machine's limits", "Chapter 06's training step (MFU)",
                    "The course's loop against transformers.Trainer", "Inference", "Decoding", "The course"]:
        assert f"## {heading}" in text, heading
    for row in ["fp32 matmul", "memory copy", "recipe, fp32", "recipe, bf16 autocast", "loop / Trainer",
                "ONNX Runtime int8", "bandwidth bound", "06_bert_finetuning: last full run",
                "virtual environment"]:
        assert row in text, row
    assert "MFU" in text and "CPU flags" in text
