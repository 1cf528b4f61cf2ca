"""labutils.sentiment on a tiny random BERT (no real training): loading, fine_tune, ONNX, the CLI."""

import warnings

import numpy as np
import pytest
import torch
from transformers import BertConfig

from labutils import sentiment
from labutils.models import load_minilm_tokenizer


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
    model = tiny_model()
    losses = sentiment.fine_tune(model, tokenizer, texts, labels, epochs=6, batch_size=8,
                                 encoder_lr=3e-3, head_lr=3e-2, progress=False)
    assert len(losses) == 6 * 4 and not model.training
    assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4])
    assert ((sentiment.fresh_probability(texts, tokenizer, model) > 0.5).long() == labels).all()
    again = tiny_model()
    assert sentiment.fine_tune(again, tokenizer, texts, labels, epochs=6, batch_size=8, encoder_lr=3e-3,
                               head_lr=3e-2, progress=False) == losses  # same seed, same run
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
    folder, model = saved
    assert sentiment.main(["--model", str(folder), "nice", "bad"]) == 0
    from_folder = capsys.readouterr().out.splitlines()
    assert sentiment.main(["--model", str(onnx_file), "nice", "bad"]) == 0
    from_onnx = capsys.readouterr().out.splitlines()
    assert len(from_folder) == 2 and from_folder == from_onnx
    assert from_folder[0].split()[0] in sentiment.LABELS and from_folder[0].endswith("nice")


def test_cli_reports_a_missing_model(tmp_path, capsys):
    assert sentiment.main(["--model", str(tmp_path / "nowhere"), "text"]) == 2
    assert "Run chapter 06" in capsys.readouterr().err
