"""Chapter 06's classifier exported to ONNX (by chapter 07), run with onnxruntime and tokenizers only.

Nothing here imports torch or transformers: a deployed ``.onnx`` file needs
``onnxruntime``, ``tokenizers`` and NumPy.

Example:
    >>> tokenizer, session = load_onnx_classifier("model.int8.onnx")
    >>> onnx_fresh_probability(["A dull mess."], tokenizer, session)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labutils.sentiment import MAX_LEN


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
    """P(fresh) for each text from an ONNX session: inputs ``input_ids``, ``attention_mask``; logits out."""
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
