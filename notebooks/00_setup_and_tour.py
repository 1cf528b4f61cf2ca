# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · Setup and a tour of the course (环境与课程导览)
#
# Open models (开源模型) are models whose code and weights anyone may read, run,
# change and share. This course teaches deep learning *with* them, offline, on
# an ordinary laptop CPU: you will derive backpropagation by hand, build
# convolutional, recurrent and attention networks, fine-tune an open BERT and
# run an open LLM, and check every step against PyTorch.
#
# This first chapter makes sure your environment works and shows the road
# ahead. By the end you will be able to:
#
# - read the environment report and know which device (CPU, CUDA or Apple MPS) your code runs on;
# - see where each piece of the open-source stack (PyTorch, Transformers, Jupyter, safetensors) appears in the course;
# - compute a first gradient by hand and with `torch.autograd`, see them agree, and see where it vanishes;
# - solve auto-checked exercises, the way every chapter ends.
#
# **Prerequisites:** Python and a little NumPy. **Run time:** under a minute on a laptop CPU.

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
    bootstrap("00")

# %% [markdown]
# ## Parameters
#
# Every chapter starts with the same two code cells. The one above installs
# the course when the notebook runs on Google Colab and does nothing anywhere
# else (`labutils.colab` explains what it installs). The one below is tagged
# `parameters`, so papermill can override it: `SMOKE = True` makes a quick run
# on small data, and the test suite sets it through the `OML_SMOKE` environment
# variable.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("OML_SMOKE", "0") == "1"
SEED = 0
N_DIGITS = 16  # digits shown in section 4

# %%
import importlib.metadata
import math

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.preprocessing import StandardScaler

from labutils import check, device_report, get_device, seed_everything
from labutils.data import load_dataset
from labutils.plot import show_images

print("seed:", seed_everything(SEED))
if SMOKE:
    N_DIGITS = 8  # nothing in this chapter is slow; the smoke run only draws fewer digits
print(f"SMOKE={SMOKE}: showing {N_DIGITS} digits")

# %% [markdown]
# ## 1. Your environment
#
# `labutils.get_device()` picks CUDA if an NVIDIA GPU is present, then Apple's
# MPS, then the CPU. Set the environment variable `OML_DEVICE=cpu` (or `cuda`,
# `mps`) before starting Jupyter to force a choice; asking for a device you do
# not have gives an error that lists the ones you do.

# %%
device = get_device()
report = device_report(device)

# %% [markdown]
# ## 2. The road ahead (课程地图)
#
# The seed articles describe one journey, from data to a deployed model
# (数据预处理 → 模型设计 → 训练 → 评估 → 微调 → 部署). Each step is a chapter:
#
# ```mermaid
# flowchart TD
#     A["Data<br/>数据预处理"] --> B["Model design<br/>模型设计"]
#     B --> N["CNN 03 · RNN 04<br/>Attention 05"]
#     B --> C["Loss<br/>损失函数 · 02"]
#     N --> D["Backprop + SGD/Adam<br/>反向传播 · 01"]
#     C --> D
#     D --> E["Evaluate<br/>模型评估"]
#     E --> F["Fine-tune an open model<br/>微调 · 06"]
#     F --> G["Compress + deploy<br/>压缩与部署 · 07"]
#     F --> H["Open LLMs<br/>开源大模型 · 08"]
# ```
#
# | chapter | what you build | open model or tool |
# |---|---|---|
# | 01 Backpropagation (反向传播) | a scalar autograd engine, an MLP trained by hand-written SGD | PyTorch autograd |
# | 02 Cross-entropy (交叉熵) | the loss derived from likelihood; a spam filter | `torch.nn` |
# | 03 CNNs (卷积神经网络) | convolution by hand; LeNet on full MNIST | PyTorch |
# | 04 RNNs (循环神经网络) | an RNN cell by hand; a Chinese review classifier | PyTorch |
# | 05 Attention (注意力机制) | attention and a Transformer block by hand | MiniLM's attention maps |
# | 06 Fine-tuning BERT (微调) | sentiment classification with an open BERT | Transformers, safetensors |
# | 07 Compression (模型压缩) | quantization, pruning, distillation, export | PyTorch, ONNX |
# | 08 Open LLMs (开源大模型) | sampling, perplexity, cost of an LLM | SmolLM2, model cards |

# %% [markdown]
# ## 3. The open-source stack, as installed here
#
# The seeds name frameworks (PyTorch, TensorFlow, PaddlePaddle, MindSpore) and
# models (BERT, GPT, LLaMA). This course uses PyTorch throughout and the
# Hugging Face `transformers` library for pretrained models; every version
# below is pinned in `requirements.txt`, so your results match ours.

# %%
stack = {
    "torch": "tensors, autograd, every network (all chapters)",
    "transformers": "BERT and LLaMA-family models (05-08)",
    "safetensors": "safe weight files, no pickle (06-08)",
    "scikit-learn": "this chapter's digits; toy data, baselines, metrics (00-02, 04, 06)",
    "jupytext": "notebooks kept as reviewable .py files",
    "jupyterlab": "where you run the course",
}
for package, role in stack.items():
    print(f"{package:>13} {importlib.metadata.version(package):>10}  {role}")

# %% [markdown]
# ## 4. Data that needs no internet
#
# Every dataset in the course comes from a package installed with the course
# (or bundled with scikit-learn), with a fixed, seeded train/test split:

# %%
digits = load_dataset("digits")
print(digits, digits.info)
fig = show_images(digits.x_train[:N_DIGITS], labels=digits.y_train[:N_DIGITS].tolist(),
                  title="scikit-learn digits (8x8), bundled with scikit-learn")

# %% [markdown]
# ## 5. A first gradient (梯度)
#
# A single neuron computes $a = g(wx + b)$, the building block the seeds write
# as $\boldsymbol{a}^{(l)} = g(\boldsymbol{W}^{(l)}\boldsymbol{a}^{(l-1)} + \boldsymbol{b}^{(l)})$.
# With the sigmoid $g(z) = \sigma(z) = 1/(1+e^{-z})$, the chain rule gives
#
# $$
# \frac{\partial a}{\partial w} = \sigma(z)\,\bigl(1-\sigma(z)\bigr)\,x, \qquad
# \frac{\partial a}{\partial b} = \sigma(z)\,\bigl(1-\sigma(z)\bigr), \qquad z = wx + b.
# $$
#
# PyTorch's autograd computes the same numbers without being told the formula.

# %%
x = torch.tensor(2.0, device=device)
w = torch.tensor(0.5, device=device, requires_grad=True)
b = torch.tensor(-1.0, device=device, requires_grad=True)
a = torch.sigmoid(w * x + b)
a.backward()

s = torch.sigmoid(w * x + b).detach()
by_hand = {"dw": s * (1 - s) * x, "db": s * (1 - s)}
by_autograd = {"dw": w.grad, "db": b.grad}
for name in by_hand:
    print(f"{name}: by hand {by_hand[name].item():.6f}   autograd {by_autograd[name].item():.6f}")
    torch.testing.assert_close(by_hand[name], by_autograd[name])

# %% [markdown]
# The two agree (the `assert_close` above would stop the notebook if they did
# not). Chapter 01 builds a tiny autograd engine to show how PyTorch does this.
#
# ## 6. Play with a neuron
#
# Move the sliders: $w$ sets how steep the sigmoid is, $b$ shifts it. The
# dashed curve is the neuron's slope with respect to its input,
# $\partial a/\partial x = w\,\sigma(z)(1-\sigma(z))$, which lies between
# $-|w|/4$ and $|w|/4$ (the most $\sigma(1-\sigma)$ can be is ¼, at $z = 0$).
# A large $|w|$ makes the neuron almost a step function, whose gradient is
# nearly zero away from the step: the *saturation* you will meet again in
# chapters 01 and 02. (The website cannot run Python, so a static picture of
# several settings, gradient included, is printed below the widget.)

# %%
xs = np.linspace(-6, 6, 200)


W_MAX = 4.0  # the sliders' range: |da/dx| <= W_MAX / 4 = 1, so the plot's y-range holds every curve


def draw_neuron(ax, w, b, color=None, label_suffix=""):
    """The neuron's output and its slope da/dx on one axis."""
    sigma = 1 / (1 + np.exp(-(w * xs + b)))
    line, = ax.plot(xs, sigma, color=color, label=rf"$a=\sigma(wx+b)${label_suffix}")
    ax.plot(xs, w * sigma * (1 - sigma), "--", color=line.get_color(),
            label=rf"$\partial a/\partial x${label_suffix}")
    ax.axhline(0, color="0.7", lw=0.8)
    ax.set_ylim(-W_MAX / 4 - 0.1, 1.1)
    ax.set_xlabel("x")


def plot_neuron(w=1.0, b=0.0):
    fig, ax = plt.subplots(figsize=(6, 3))
    draw_neuron(ax, w, b)
    ax.set_title(f"w = {w:.1f}, b = {b:.1f}")
    ax.legend(loc="upper left", fontsize=8)
    plt.show()


widgets.interact(plot_neuron, w=widgets.FloatSlider(value=1.0, min=-W_MAX, max=W_MAX, step=0.1),
                 b=widgets.FloatSlider(value=0.0, min=-4, max=4, step=0.1));

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 3.2), sharey=True)
for ax, w_value in zip(axes, (-W_MAX, 1.0, W_MAX)):
    draw_neuron(ax, w_value, 0.0)
    ax.set_title(f"w = {w_value:g}, b = 0: largest |da/dx| = {abs(w_value) / 4:g}")
axes[0].legend(loc="upper left", fontsize=8)
fig.suptitle("The sigmoid neuron and its slope (dashed): steep near the step, flat away from it")
plt.show()
for w_value in (-W_MAX, 1.0, W_MAX):
    sig = 1 / (1 + np.exp(-w_value * xs))
    assert np.abs(w_value * sig * (1 - sig)).max() <= W_MAX / 4 + 1e-12  # inside the plotted range

# %% [markdown]
# ## 7. Your first exercises
#
# Each chapter ends with exercises that check themselves. Replace the body of
# the function, run the cell, then run the check below it: it prints [PASS]
# or [FAIL] with a hint, and never stops the notebook. The checks try your
# code on several random inputs and on an edge case, and compare it with
# what PyTorch or scikit-learn compute.
#
# **00.1 · A layer of neurons.** Section 5 had one neuron with one input.
# Write `neuron_layer(X, W, b)`: a batch `X` of shape `(m, n)` (one example
# per row), weights `W` of shape `(k, n)` (one neuron per row) and biases `b`
# of shape `(k,)`; return the `(m, k)` outputs $\sigma(z)$, using only
# `torch.exp` for the non-linearity (no `torch.sigmoid`). The edge cases: an
# empty batch ($m = 0$) and pre-activations of $\pm 1000$.

# %% tags=["solution"]
def neuron_layer(X: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sigmoid(X W^T + b) for a batch X (m, n), weights W (k, n), biases b (k,)."""
    # BEGIN SOLUTION
    return 1 / (1 + torch.exp(-(X @ W.T + b)))
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
def test_neuron_layer(fn):
    generator = torch.Generator().manual_seed(1)
    for m, n, k, huge in [(5, 3, 2, False), (1, 4, 6, False), (0, 3, 2, False), (4, 3, 3, True)]:
        X = torch.randn(m, n, generator=generator)
        W, b = torch.randn(k, n, generator=generator), torch.randn(k, generator=generator)
        if huge:  # pre-activations of about +-1000
            X, W, b = X.sign() * 1000, W.sign(), torch.zeros(k)
        got, want = fn(X, W, b), torch.sigmoid(F.linear(X, W, b))
        assert tuple(got.shape) == (m, k), f"X {tuple(X.shape)}, W {tuple(W.shape)}: shape {tuple(got.shape)}"
        assert torch.isfinite(got).all(), "nan or inf for pre-activations of about +-1000"
        torch.testing.assert_close(got, want, msg=f"wrong for m={m}, n={n}, k={k}")


check("00.1", lambda: neuron_layer, test=test_neuron_layer,
      hint="one matrix product gives every z at once: which of X, W must be transposed so the shapes fit?");

# %% [markdown]
# **00.2 · Predict, then run.** The slope of the sigmoid,
# $\sigma'(z) = \sigma(z)(1 - \sigma(z))$, controls how much gradient a
# neuron lets through. What is its **largest** value over all $z$? Think
# (where is a product $s(1-s)$ largest for $s$ between 0 and 1?), write
# your number, then run the check: it asks autograd for $\sigma'$ on a fine
# grid and compares.

# %% tags=["solution"]
def predicted_max_slope() -> float:
    """Your prediction of max over z of sigmoid'(z)."""
    # BEGIN SOLUTION
    return 0.25  # s (1 - s) is largest at s = 1/2, i.e. z = 0
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
z_grid = torch.linspace(-10, 10, 20_001, dtype=torch.float64, requires_grad=True)
(sigmoid_slope,) = torch.autograd.grad(torch.sigmoid(z_grid).sum(), z_grid)
check("00.2", predicted_max_slope, expected=sigmoid_slope.max().item(), atol=1e-6,
      hint="the slope is a product s (1 - s) of two numbers that add up to 1");

# %% [markdown]
# **00.3 · Find the bug.** This function should return the gradient
# $(\partial a/\partial w, \partial a/\partial b)$ of the neuron of section 5,
# computed by autograd. It crashes. Run it, read the error, and write a
# working `neuron_gradients` that lets autograd do the work (no hand-derived
# formula): the check compares it with the formula of section 5 at random
# points and where the neuron is saturated.

# %%
def neuron_gradients_buggy(x, w, b):
    w = torch.tensor(w, requires_grad=True)
    b = torch.tensor(b, requires_grad=True)
    z = w * x + b
    a = 1 / (1 + math.exp(-z.item()))
    a.backward()
    return w.grad.item(), b.grad.item()


try:
    neuron_gradients_buggy(2.0, 0.5, -1.0)
except Exception as error:
    print(f"{type(error).__name__}: {error}")

# %% tags=["solution"]
def neuron_gradients(x: float, w: float, b: float) -> tuple[float, float]:
    """(da/dw, da/db) for a = sigmoid(w x + b), computed by autograd."""
    # BEGIN SOLUTION
    w = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    a = 1 / (1 + torch.exp(-(w * x + b)))
    a.backward()
    return w.grad.item(), b.grad.item()
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
def test_neuron_gradients(fn):
    generator = torch.Generator().manual_seed(3)
    points = torch.randn(6, 3, generator=generator, dtype=torch.float64).tolist()
    points.append([3.0, 10.0, 2.0])  # a saturated neuron: z = 32
    for x_value, w_value, b_value in points:
        s_value = 1 / (1 + math.exp(-(w_value * x_value + b_value)))
        want = (s_value * (1 - s_value) * x_value, s_value * (1 - s_value))
        got = fn(x_value, w_value, b_value)
        assert len(got) == 2, "return the pair (da/dw, da/db)"
        assert all(math.isclose(g, v, rel_tol=1e-6, abs_tol=1e-12) for g, v in zip(got, want)), (
            f"at x={x_value:.3f}, w={w_value:.3f}, b={b_value:.3f}: got {got}, the formula says {want}")


check("00.3", lambda: neuron_gradients, test=test_neuron_gradients,
      hint="autograd can only follow operations on tensors: which line leaves the world of tensors?");

# %% [markdown]
# **00.4 · Standardise features.** Most chapters rescale each input feature
# to mean 0 and standard deviation 1 *using the training data only*. Write
# `standardise(train, test)` returning both, scaled with the training
# columns' mean and (population) standard deviation. A column that is
# constant in the training data must not turn into `nan`: leave its spread at
# 1, as scikit-learn's `StandardScaler` does, which the check compares with.
# The 8×8 digits of section 4 have such columns (corner pixels that are always 0).

# %% tags=["solution"]
def standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale train and test with the mean and std of train's columns; constant columns keep std 1."""
    # BEGIN SOLUTION
    mean = train.mean(dim=0)
    std = train.std(dim=0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return (train - mean) / std, (test - mean) / std
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
def test_standardise(fn):
    generator = torch.Generator().manual_seed(4)
    pixels = digits.x_train.flatten(1).double(), digits.x_test.flatten(1).double()
    cases = [(torch.randn(20, 3, generator=generator, dtype=torch.float64) * 5 + 2,
              torch.randn(7, 3, generator=generator, dtype=torch.float64)), pixels]
    for train, test in cases:
        scaler = StandardScaler().fit(train.numpy())
        got_train, got_test = fn(train, test)
        finite = torch.isfinite(got_train).all() and torch.isfinite(got_test).all()
        assert finite, "nan or inf: a constant column?"
        torch.testing.assert_close(got_train, torch.from_numpy(scaler.transform(train.numpy())))
        torch.testing.assert_close(got_test, torch.from_numpy(scaler.transform(test.numpy())))


constant_columns = int((digits.x_train.flatten(1).std(dim=0) == 0).sum())
print(f"the digits' training set has {constant_columns} constant pixel columns")
check("00.4", lambda: standardise, test=test_standardise,
      hint="compute the statistics from train only and apply them to both; what is 0 / 0 in torch, "
           "and which spread should a column with no spread get?");

# %% [markdown]
# ## Summary
#
# - `labutils.get_device()` finds CUDA, Apple MPS or the CPU; `device_report()` shows what you have.
# - Everything runs offline: data and open models come from installed packages.
# - Autograd and the chain rule give the same gradient; the next chapter shows why.
# - A sigmoid neuron's slope is at most $|w|/4$ and vanishes away from its step: saturation.
# - Autograd follows torch operations only: a detour through `.item()` or NumPy cuts the graph.
#
# **Glossary (术语):** open-source model / 开源模型 · gradient / 梯度 · neuron / 神经元 ·
# activation function / 激活函数 · sigmoid / Sigmoid 函数 · device / 设备 · saturation / 饱和 ·
# computational graph / 计算图 · standardisation / 标准化.
# The full list is in the [glossary](../book/glossary.md).
#
# **Further reading:** Goodfellow, Bengio and Courville, *Deep Learning*
# (MIT Press, 2016), chapter 6; the PyTorch tutorial "A Gentle Introduction to
# `torch.autograd`".
