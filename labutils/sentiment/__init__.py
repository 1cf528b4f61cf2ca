"""The fine-tuned MiniLM sentiment classifier of chapter 06: the model, the recipe, the command line.

- :mod:`labutils.sentiment.model`: :class:`MeanPooledBertForSequenceClassification`,
  :func:`mean_pool`, :func:`load_sentiment_model`, :func:`fresh_probability`;
- :mod:`labutils.sentiment.recipe`: chapter 06's fine-tuning recipe, one loop
  (:func:`fine_tune` and its pieces: :func:`parameter_groups`,
  :func:`warmup_then_decay`, :func:`train_step`, :func:`predict_proba`);
- :mod:`labutils.sentiment.onnx_model`: :func:`load_onnx_classifier`,
  :func:`onnx_fresh_probability` (onnxruntime and tokenizers, no torch);
- :mod:`labutils.sentiment.speed`: how fast the training step runs against the measured matmul
  peak (MFU), one lever at a time (chapter 06 and ``make bench``);
- :mod:`labutils.sentiment.cli`: ``python -m labutils.sentiment``.

Every name is importable from here; each is loaded on first use, so the ONNX
path never imports torch or transformers. From a shell::

    python -m labutils.sentiment "A gorgeous, heartfelt film." "A dull mess."
    python -m labutils.sentiment --model _build/models/minilm-rotten-tomatoes --file reviews.txt
    python -m labutils.sentiment --model path/to/model.onnx "Runs with onnxruntime."

An ``.onnx`` model needs ``tokenizer.json`` in the same folder.
"""

from __future__ import annotations

import importlib

LABELS = ("rotten", "fresh")
MAX_LEN = 64  # WordPiece tokens per snippet
MODEL_NAME = "minilm-rotten-tomatoes"  # the folder under _build/models/ that chapter 06 writes, 07 reads

_WHERE = {
    "model": ["mean_pool", "MeanPooledBertForSequenceClassification", "load_sentiment_model",
              "fresh_probability", "default_model_dir"],
    "recipe": ["History", "fine_tune", "parameter_groups", "warmup_then_decay", "autocast_dtype",
               "make_scaler", "train_step", "predict_proba", "accuracy", "collate"],
    "onnx_model": ["load_onnx_classifier", "onnx_fresh_probability"],
    "cli": ["main"],
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}
__all__ = [  # noqa: RUF022 - grouped as in _WHERE
    "LABELS", "MAX_LEN", "MODEL_NAME",
    "mean_pool", "MeanPooledBertForSequenceClassification", "load_sentiment_model", "fresh_probability",
    "default_model_dir",
    "History", "fine_tune", "parameter_groups", "warmup_then_decay", "autocast_dtype", "make_scaler",
    "train_step", "predict_proba", "accuracy", "collate",
    "load_onnx_classifier", "onnx_fresh_probability",
    "main",
]


assert sorted(__all__[3:]) == sorted(_MODULE_OF), "keep __all__ and _WHERE together"


def __getattr__(name: str):
    if name in _MODULE_OF:
        value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
