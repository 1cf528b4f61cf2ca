"""The model of chapter 06: MiniLM with a mean-pooled classification head, saved and reloaded offline.

Example:
    >>> from labutils.sentiment import load_sentiment_model, fresh_probability
    >>> tokenizer, model = load_sentiment_model()   # the folder chapter 06's full run saved
    >>> fresh_probability(["A gorgeous, heartfelt film."], tokenizer, model)
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, BertForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput

from labutils.sentiment import MAX_LEN, MODEL_NAME


def default_model_dir() -> Path:
    """Where chapter 06's full run leaves its model: ``_build/models/minilm-rotten-tomatoes``."""
    from labutils.paths import shared_output_dir

    return shared_output_dir(MODEL_NAME)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token vectors ``hidden`` (batch, time, dim) where ``attention_mask`` is 1."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


class MeanPooledBertForSequenceClassification(BertForSequenceClassification):
    """BertForSequenceClassification whose classifier reads mean-pooled token vectors, not the pooler.

    MiniLM was trained as a sentence encoder with mean pooling; its pooler never was.
    Same encoder, dropout and ``classifier`` layer, so ``save_pretrained`` and
    ``from_pretrained`` work unchanged.
    """

    def __init__(self, config):
        super().__init__(config)
        self.bert.pooler = None  # unused: the head reads the mean of the token vectors
        config.classifier_pooling = "mean"  # saved in config.json, so a reader knows which head this is

    def forward(self, input_ids, attention_mask, labels=None, **kwargs):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = self.classifier(self.dropout(mean_pool(hidden, attention_mask)))
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


def load_sentiment_model(folder: str | Path | None = None):
    """``(tokenizer, model)`` from a folder chapter 06 saved, offline, in eval mode on the CPU."""
    folder = Path(folder) if folder is not None else default_model_dir()
    if not (folder / "model.safetensors").is_file() or not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"No fine-tuned model in {folder} (config.json and model.safetensors expected). "
            "Run chapter 06 first (`make execute NB=06`), or pass the folder it saved with --model."
        )
    model = MeanPooledBertForSequenceClassification.from_pretrained(
        folder, local_files_only=True, use_safetensors=True)
    return AutoTokenizer.from_pretrained(folder, local_files_only=True), model.eval()


@torch.no_grad()
def fresh_probability(texts: list[str], tokenizer, model, batch_size: int = 64) -> torch.Tensor:
    """P(fresh) for each text, in batches padded to their longest member."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string: wrap it as [text]")
    device = next(model.parameters()).device
    probs = []
    for start in range(0, len(texts), batch_size):
        inputs = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                           max_length=MAX_LEN, return_tensors="pt").to(device)
        logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
        probs.append(logits.float().softmax(dim=-1)[:, 1].cpu())
    return torch.cat(probs) if probs else torch.empty(0)
