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
# - compute a first gradient by hand and with `torch.autograd`, and see them agree;
# - solve an auto-checked exercise, the way every chapter ends.
#
# **Prerequisites:** Python and a little NumPy. **Run time:** under a minute on a laptop CPU.

# %% [markdown]
# ## Parameters
#
# Every chapter starts with a cell like this one (tagged `parameters`, so
# papermill can override it). `SMOKE = True` makes a quick run on small data;
# the test suite sets it through the `OML_SMOKE` environment variable.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("OML_SMOKE", "0") == "1"
SEED = 0

# %%
import importlib.metadata

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch

from labutils import check, device_report, get_device, seed_everything
from labutils.data import load_dataset
from labutils.plot import show_images

print("seed:", seed_everything(SEED))

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
    "scikit-learn": "baselines, metrics, bundled datasets (02, 06)",
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
print(digits)
fig = show_images(digits.x_train[:16], labels=digits.y_train[:16].tolist(), title="scikit-learn digits (8x8)")

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
x, w, b = torch.tensor(2.0), torch.tensor(0.5, requires_grad=True), torch.tensor(-1.0, requires_grad=True)
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
# Move the sliders: $w$ sets how steep the sigmoid is, $b$ shifts it. A large
# $|w|$ makes the neuron almost a step function, whose gradient is nearly zero
# away from the step: the *saturation* you will meet again in chapters 01 and 02.
# (The website cannot run Python, so a static picture of several settings is
# printed below the widget.)

# %%
xs = np.linspace(-6, 6, 200)


def plot_neuron(w=1.0, b=0.0):
    z = w * xs + b
    sigma = 1 / (1 + np.exp(-z))
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(xs, sigma, label=r"$a=\sigma(wx+b)$")
    ax.plot(xs, sigma * (1 - sigma) * w, "--", label=r"$\partial a/\partial x$")
    ax.set_ylim(-0.1, 1.6)
    ax.set_title(f"w = {w:.1f}, b = {b:.1f}")
    ax.legend(loc="upper left")
    plt.show()


widgets.interact(plot_neuron, w=widgets.FloatSlider(value=1.0, min=-4, max=4, step=0.1),
                 b=widgets.FloatSlider(value=0.0, min=-4, max=4, step=0.1));

# %%
fig, ax = plt.subplots(figsize=(6, 3))
for w_value in (0.5, 1, 3):
    ax.plot(xs, 1 / (1 + np.exp(-w_value * xs)), label=f"w = {w_value}")
ax.set_title("The sigmoid neuron for several weights (b = 0)")
ax.legend();

# %% [markdown]
# ## 7. Your first exercise
#
# Each chapter ends with exercises that check themselves. Write `neuron(x, w, b)`
# returning $\sigma(w \cdot x + b)$ for a vector `x`, weights `w` and a bias `b`,
# using only `torch.exp` (no `torch.sigmoid`). Replace the body, run the cell,
# then run the check below it: it prints ✅ or ❌ with a hint, and never stops
# the notebook.

# %% tags=["solution"]
def neuron(x: torch.Tensor, w: torch.Tensor, b: float) -> torch.Tensor:
    # BEGIN SOLUTION
    return 1 / (1 + torch.exp(-(w @ x + b)))
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
x_ex, w_ex = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.3, 0.1, -0.4])
check("00.1", lambda: neuron(x_ex, w_ex, 0.2), expected=torch.sigmoid(w_ex @ x_ex + 0.2),
      hint="z = w @ x + b, then 1 / (1 + exp(-z))")

# %% [markdown]
# ## Summary
#
# - `labutils.get_device()` finds CUDA, Apple MPS or the CPU; `device_report()` shows what you have.
# - Everything runs offline: data and open models come from installed packages.
# - Autograd and the chain rule give the same gradient; the next chapter shows why.
#
# **Glossary (术语):** open-source model / 开源模型 · gradient / 梯度 · neuron / 神经元 ·
# activation function / 激活函数 · sigmoid / Sigmoid 函数 · device / 设备.
# The full list is in the [glossary](../book/glossary.md).
#
# **Further reading:** Goodfellow, Bengio and Courville, *Deep Learning*
# (MIT Press, 2016), chapter 6; the PyTorch tutorial "A Gentle Introduction to
# `torch.autograd`".
