"""``python -m labutils.sentiment``: classify sentences with chapter 06's model, or its ONNX export.

An ``.onnx`` model runs with onnxruntime and tokenizers only (torch and
transformers are never imported); a model folder needs torch and transformers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labutils.sentiment import LABELS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m labutils.sentiment",
        description="Classify English review sentences as fresh or rotten with the model chapter 06 saved.")
    parser.add_argument("texts", nargs="*", help="sentences to classify")
    parser.add_argument("--file", type=Path, help="a text file with one sentence per line")
    parser.add_argument("--model", type=Path, default=None,
                        help="folder saved by chapter 06 (default: _build/models/minilm-rotten-tomatoes), "
                             "or an .onnx file exported by chapter 07")
    args = parser.parse_args(argv)
    texts = list(args.texts)
    if args.file:
        texts += [line.strip() for line in args.file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        parser.error("give sentences as arguments or --file FILE")
    try:
        if args.model is not None and args.model.suffix == ".onnx":
            from labutils.sentiment.onnx_model import load_onnx_classifier, onnx_fresh_probability

            tokenizer, session = load_onnx_classifier(args.model)
            probs = onnx_fresh_probability(texts, tokenizer, session).tolist()
        else:
            from labutils.sentiment.model import fresh_probability, load_sentiment_model

            tokenizer, model = load_sentiment_model(args.model)
            probs = fresh_probability(texts, tokenizer, model).tolist()
    except (FileNotFoundError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for text, p in zip(texts, probs):
        print(f"{LABELS[p > 0.5]:<6}  P(fresh)={p:.2f}  {text}")
    return 0
