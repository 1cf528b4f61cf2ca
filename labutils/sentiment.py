"""The fine-tuned MiniLM sentiment classifier of chapter 06, loaded and used offline.

Chapter 06 fine-tunes :class:`MeanPooledBertForSequenceClassification` on
Rotten Tomatoes snippets and saves it with ``save_pretrained``; chapter 07
compresses it (:func:`fine_tune` re-trains a small copy when chapter 06's is
missing) and exports it to ONNX. From a shell::

    python -m labutils.sentiment "A gorgeous, heartfelt film." "A dull mess."
    python -m labutils.sentiment --model _build/models/minilm-rotten-tomatoes --file reviews.txt
    python -m labutils.sentiment --model path/to/model.onnx "Runs with onnxruntime."

An ``.onnx`` model needs ``tokenizer.json`` in the same folder.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, BertForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "_build" / "models" / "minilm-rotten-tomatoes"
LABELS = ("rotten", "fresh")
MAX_LEN = 64


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
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


def load_sentiment_model(folder: str | Path = DEFAULT_MODEL_DIR):
    """``(tokenizer, model)`` from a folder chapter 06 saved, offline, in eval mode on the CPU."""
    folder = Path(folder)
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


def fine_tune(
    model: BertForSequenceClassification,
    tokenizer,
    texts: list[str],
    labels: torch.Tensor,
    *,
    epochs: int = 2,
    batch_size: int = 32,
    encoder_lr: float = 8e-5,
    head_lr: float = 1e-3,
    warmup_share: float = 0.06,
    weight_decay: float = 0.01,
    clip_norm: float = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Fine-tune ``model`` in place with chapter 06's recipe; returns the loss of every step.

    AdamW with a larger rate for the ``classifier`` head, linear warm-up then
    decay to 0, gradient clipping, and batches of similar length padded on the
    fly. Trains on the device the model is on, in float32.

    Example:
        >>> losses = fine_tune(model, tokenizer, ["great", "awful"], torch.tensor([1, 0]), epochs=1)
    """
    from tqdm.auto import tqdm

    if len(texts) != len(labels) or not len(texts):
        raise ValueError(
            f"fine_tune needs as many labels as texts (got {len(texts)} texts, {len(labels)} labels)")
    device = next(model.parameters()).device
    token_ids = tokenizer(list(texts), truncation=True, max_length=MAX_LEN)["input_ids"]
    lengths = torch.tensor([len(ids) for ids in token_ids])
    head = [p for n, p in model.named_parameters() if n.startswith("classifier.")]
    body = [p for n, p in model.named_parameters() if not n.startswith("classifier.")]
    optimizer = torch.optim.AdamW([{"params": body, "lr": encoder_lr}, {"params": head, "lr": head_lr}],
                                  weight_decay=weight_decay)
    total = epochs * math.ceil(len(texts) / batch_size)
    warmup = max(1, int(warmup_share * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: s / warmup if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout
    losses = []
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(texts), generator=generator)
        batches = []
        for chunk in order.split(batch_size * 50):  # sort chunks of 50 batches by length: little padding
            batches += list(chunk[torch.argsort(lengths[chunk], stable=True)].split(batch_size))
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
        for indices in tqdm(batches, desc=f"fine-tuning, epoch {epoch + 1}/{epochs}", disable=not progress):
            inputs = tokenizer.pad({"input_ids": [token_ids[i] for i in indices]},
                                   return_tensors="pt").to(device)
            loss = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                         labels=labels[indices].to(device)).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
    model.eval()
    return losses


def load_onnx_classifier(path: str | Path, threads: int | None = None):
    """``(tokenizer, session)`` for an exported ``.onnx`` classifier: onnxruntime and tokenizers, no torch.

    The WordPiece tokenizer is read from ``tokenizer.json`` beside the ``.onnx`` file.
    """
    path = Path(path)
    if not path.is_file() or not (path.parent / "tokenizer.json").is_file():
        raise FileNotFoundError(
            f"No ONNX model at {path} with a tokenizer.json beside it. "
            "Run chapter 07 (`make execute NB=07`), which exports one, or pass a model folder instead.")
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError("ONNX models need the onnxruntime package: pip install onnxruntime") from error
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path.parent / "tokenizer.json"))
    tokenizer.enable_truncation(MAX_LEN)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return tokenizer, session


def onnx_fresh_probability(texts: list[str], tokenizer, session, batch_size: int = 64) -> np.ndarray:
    """P(fresh) for each text from an ONNX session (inputs ``input_ids``, ``attention_mask``; logits out)."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string: wrap it as [text]")
    probs = []
    for start in range(0, len(texts), batch_size):
        encodings = tokenizer.encode_batch(texts[start:start + batch_size])
        feed = {"input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64)}
        logits = session.run(None, feed)[0]
        logits = logits - logits.max(axis=1, keepdims=True)  # a stable softmax
        probs.append(np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1))
    return np.concatenate(probs) if probs else np.empty(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m labutils.sentiment",
        description="Classify English review sentences as fresh or rotten with the model chapter 06 saved.")
    parser.add_argument("texts", nargs="*", help="sentences to classify")
    parser.add_argument("--file", type=Path, help="a text file with one sentence per line")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR,
                        help="folder saved by chapter 06, or an .onnx file exported by chapter 07")
    args = parser.parse_args(argv)
    texts = list(args.texts)
    if args.file:
        texts += [line.strip() for line in args.file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        parser.error("give sentences as arguments or --file FILE")
    try:
        if args.model.suffix == ".onnx":
            tokenizer, session = load_onnx_classifier(args.model)
            probs = onnx_fresh_probability(texts, tokenizer, session).tolist()
        else:
            tokenizer, model = load_sentiment_model(args.model)
            probs = fresh_probability(texts, tokenizer, model).tolist()
    except (FileNotFoundError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for text, p in zip(texts, probs):
        print(f"{LABELS[p > 0.5]:<6}  P(fresh)={p:.2f}  {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
