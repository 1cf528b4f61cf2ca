# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Backpropagation (反向传播)
#
# Every open model you will meet in this course, from a two-layer toy to BERT,
# learns the same way: a forward pass computes the loss, **backpropagation**
# sends the gradient of that loss back to every weight, and an optimizer
# (SGD, Adam) nudges the weights downhill. The seed articles name this step
# (训练深度学习模型的核心算法是反向传播); this chapter opens it up. You will write
# a tiny automatic-differentiation engine for single numbers, check it three
# ways, grow it into matrix gradients for a multilayer perceptron written with
# plain tensors, train that network by hand, and end with the two lines of
# PyTorch (`loss.backward()`, `optimizer.step()`) that do all of it for you.
#
# By the end you will be able to:
#
# - apply the chain rule (链式法则) on a computational graph (计算图) and explain why gradients must be *accumulated*;
# - check any gradient with finite differences and with `torch.autograd`;
# - derive, with shapes, the gradients of $\boldsymbol{a}^{(l)} = g(\boldsymbol{W}^{(l)}\boldsymbol{a}^{(l-1)} + \boldsymbol{b}^{(l)})$ and train an MLP with hand-written SGD;
# - see why deep sigmoid networks suffer vanishing gradients (梯度消失) and ReLU networks much less;
# - replace your hand-written loop by `torch.optim.SGD` (same numbers) and `Adam`.
#
# **Prerequisites:** [00 · Setup and tour](00_setup_and_tour.ipynb) (the first
# gradient, the sigmoid neuron). Derivatives of one variable; matrix products.
# **Run time:** about a minute on a laptop CPU (a few seconds with `SMOKE = True`).

# %% [markdown]
# ## Parameters
#
# Every knob that changes the run time. `SMOKE = True` (set by the test suite
# through `OML_SMOKE=1`) trains on less data for fewer epochs.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("OML_SMOKE", "0") == "1"
SEED = 0
N_SAMPLES = 1000          # points in the two-moons dataset (train + test)
EPOCHS = 300              # epochs of hand-written SGD on the moons
BATCH_SIZE = 32
LEARNING_RATE = 0.1
HIDDEN = 16               # width of each of the two hidden layers
WIDGET_EPOCHS = 150       # epochs per retraining inside the widget
DEPTH = 10                # hidden layers of the deep network in section 6
TORCH_THREADS = 1         # CPU threads for torch: this chapter's matrices are tiny

# %%
if SMOKE:
    N_SAMPLES, EPOCHS, WIDGET_EPOCHS = 400, 40, 40
print(f"SMOKE={SMOKE}: {N_SAMPLES} points, {EPOCHS} epochs, hidden width {HIDDEN}")

# %%
import math

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import make_moons
from torch import nn
from tqdm.auto import tqdm

from labutils import check, get_device, seed_everything
from labutils.plot import LivePlot

print("seed:", seed_everything(SEED))
# With matrices this small (at most 32 x 800), splitting each product over
# several threads costs more than it saves, and far more on a busy machine.
torch.set_num_threads(TORCH_THREADS)
device = get_device()
print("device:", device)

# %% [markdown]
# ## 1. The chain rule on a computational graph
#
# **Intuition.** Write a computation as a graph: leaves are inputs and
# parameters, each inner node is one simple operation. Every operation knows
# only its *local* derivatives, e.g. for $c = a \cdot b$: $\partial c/\partial a = b$,
# $\partial c/\partial b = a$. The chain rule says the derivative of the final
# output $L$ with respect to any node $v$ is the sum, over the nodes $u$ that
# use $v$, of "gradient arriving at $u$" × "local derivative":
#
# $$
# \frac{\partial L}{\partial v} \;=\; \sum_{u \,:\, v \to u} \frac{\partial L}{\partial u}\,\frac{\partial u}{\partial v}. \tag{1}
# $$
#
# Backpropagation evaluates (1) for every node at once: visit the nodes in
# **reverse topological order** (拓扑排序: each node after all the nodes that
# use it), so that when a node sends gradient to its inputs, its own gradient
# is already complete. The sum in (1) is why gradients must be **accumulated**
# with `+=`: a value used twice receives two contributions.
#
# **Code.** A `Value` holds a number (`data`), its gradient (`grad`), the
# values it was made from (`parents`) and a `backward_step` that applies (1).

# %%
class Value:
    """A number that remembers how it was computed, so gradients can flow back to its inputs."""

    def __init__(self, data, parents=(), op="", label=""):
        self.data = float(data)
        self.grad = 0.0
        self.parents = parents
        self.op = op
        self.label = label
        self.backward_step = lambda: None  # sends self.grad to the parents

    def add_to_grad(self, amount):
        self.grad += amount  # += : every path through the graph adds its share, eq. (1)

    def __repr__(self):
        return f"Value({self.label or self.op or 'leaf'}: data={self.data:.4f}, grad={self.grad:.4f})"


# %% [markdown]
# Every operation is the same recipe: compute the output, record the local
# derivatives, and let `backward_step` multiply them by the gradient that
# arrives (upstream × local, the product in (1)).

# %%
def make_node(data, parents, local_grads, op):
    """A new Value computed from `parents`; local_grads[i] is d(data)/d(parents[i])."""
    out = type(parents[0])(data, parents, op)

    def backward_step():
        for parent, local in zip(parents, local_grads):
            parent.add_to_grad(local * out.grad)  # chain rule: upstream gradient × local derivative

    out.backward_step = backward_step
    return out


def lift(x, like):
    """Turn a plain number into a Value of the same kind as `like`."""
    return x if isinstance(x, Value) else type(like)(x)


# %%
def add(a, b):
    b = lift(b, a)
    return make_node(a.data + b.data, (a, b), (1.0, 1.0), "+")


def mul(a, b):
    b = lift(b, a)
    return make_node(a.data * b.data, (a, b), (b.data, a.data), "*")


def power(a, k):
    """a ** k for a plain-number exponent k."""
    return make_node(a.data**k, (a,), (k * a.data ** (k - 1),), f"**{k}")


# %% [markdown]
# The non-linear functions, with the derivatives you will meet all chapter:
# $\frac{d}{dz}e^z = e^z$, $\frac{d}{dz}\log z = 1/z$,
# $\sigma'(z) = \sigma(z)(1-\sigma(z))$, and $\mathrm{ReLU}'(z) = 1$ for $z>0$,
# $0$ for $z \le 0$ (exactly as seed article 002 says: 其导数在 $x>0$ 时为1，在 $x\le0$ 时为0).

# %%
def exp(a):
    e = math.exp(a.data)
    return make_node(e, (a,), (e,), "exp")


def log(a):
    return make_node(math.log(a.data), (a,), (1 / a.data,), "log")


def sigmoid(a):
    s = 1 / (1 + math.exp(-a.data))
    return make_node(s, (a,), (s * (1 - s),), "sigmoid")


def relu(a):
    return make_node(max(a.data, 0.0), (a,), (1.0 if a.data > 0 else 0.0,), "relu")


# %% [markdown]
# Operators make formulas read naturally, and methods named like PyTorch's
# (`.exp()`, `.log()`, `.sigmoid()`, `.relu()`) let *the same function* run on
# a `Value` and on a `torch.Tensor`, which we use for checking below.

# %%
Value.__add__ = Value.__radd__ = add
Value.__mul__ = Value.__rmul__ = mul
Value.__pow__ = power
Value.__neg__ = lambda a: a * -1.0
Value.__sub__ = lambda a, b: a + (-lift(b, a))
Value.__rsub__ = lambda a, b: lift(b, a) + (-a)
Value.__truediv__ = lambda a, b: a * lift(b, a) ** -1
Value.__rtruediv__ = lambda a, b: lift(b, a) * a**-1
Value.exp, Value.log, Value.sigmoid, Value.relu = exp, log, sigmoid, relu

# %% [markdown]
# `backward()` orders the graph topologically (a depth-first search that lists
# a node only after all its parents), sets $\partial L/\partial L = 1$ and
# calls every `backward_step` from the output back to the leaves.

# %%
def topological_order(root):
    """Every Value that `root` depends on, each listed after all of its parents."""
    order, seen = [], set()

    def visit(node):
        if node not in seen:
            seen.add(node)
            for parent in node.parents:
                visit(parent)
            order.append(node)

    visit(root)
    return order


# %%
def backward(root):
    """Fill .grad of every Value in root's graph with d(root)/d(value)."""
    order = topological_order(root)
    for node in order:
        node.grad = 0.0
    root.grad = 1.0
    for node in reversed(order):  # a node runs only after every node that uses it
        node.backward_step()


Value.backward = backward

# %% [markdown]
# ### Why `+=`: the wrong version fails
#
# Take $f(x) = x \cdot x + x$ at $x = 3$. Here $x$ feeds the graph three times
# (twice into the product, once into the sum), so $f'(x) = 2x + 1 = 7$.
# A `Value` that *overwrites* its gradient instead of adding keeps only the
# last contribution it receives.

# %%
class OverwritingValue(Value):
    """The classic bug: each new contribution replaces the gradient instead of adding to it."""

    def add_to_grad(self, amount):
        self.grad = amount


def f_used_twice(x):
    return x * x + x


# %%
# NBVAL_CHECK_OUTPUT
for kind in (Value, OverwritingValue):
    x = kind(3.0, label="x")
    f_used_twice(x).backward()
    print(f"{kind.__name__:>16}: df/dx = {x.grad:g}   (correct: 2x + 1 = {2 * 3.0 + 1:g})")

x_right, x_wrong = Value(3.0), OverwritingValue(3.0)
f_used_twice(x_right).backward()
f_used_twice(x_wrong).backward()
assert x_right.grad == 2 * x_right.data + 1, "accumulating with += gives the true derivative"
assert x_wrong.grad != 2 * x_wrong.data + 1, "overwriting loses the other paths' contributions"
assert x_wrong.grad == x_wrong.data, "only the last contribution survives: one factor of x * x"

# %% [markdown]
# The overwriting version returns 3, the contribution of one factor of the
# product, and silently drops the other two. PyTorch accumulates too: that is
# why training loops call `optimizer.zero_grad()` before each `backward()`
# (section 7), or gradients from the previous batch would be added in.

# %% [markdown]
# ## 2. A picture of the graph
#
# A single sigmoid neuron, $a = \sigma(w_1 x_1 + w_2 x_2 + b)$, after
# `backward()`. Each box shows the node, its value (forward pass) and its
# gradient $\partial a/\partial\,\text{node}$ (backward pass); leaves are blue.

# %%
def graph_layout(root):
    """Position each node: column = longest path from a leaf, rows stacked within a column."""
    nodes = topological_order(root)
    depth = {}
    for node in nodes:  # parents come first, so their depth is known
        depth[node] = 1 + max((depth[p] for p in node.parents), default=-1)
    columns = {}
    for node in nodes:
        columns.setdefault(depth[node], []).append(node)
    return {node: (d, -row + (len(col) - 1) / 2) for d, col in columns.items() for row, node in enumerate(col)}


# %%
def draw_graph(root, title=""):
    """Draw every Value that led to `root`, with its data and grad."""
    position = graph_layout(root)
    width = max(x for x, _ in position.values()) + 1
    height = max(abs(y) for _, y in position.values()) * 2 + 1
    fig, ax = plt.subplots(figsize=(2.1 * width, 1.0 * height + 0.8))
    for node, (x, y) in position.items():
        for parent in node.parents:
            ax.annotate("", xy=(x, y), xytext=position[parent],
                        arrowprops=dict(arrowstyle="->", color="gray", shrinkA=28, shrinkB=28))
        ax.text(x, y, f"{node.label or node.op}\ndata {node.data:.3f}\ngrad {node.grad:.3f}",
                ha="center", va="center", fontsize=8,
                bbox=dict(boxstyle="round", fc="lightblue" if not node.parents else "lightyellow"))
    ax.set_xlim(-0.6, width - 0.4)
    ax.set_ylim(-height / 2, height / 2)
    ax.axis("off")
    ax.set_title(title)
    return fig


# %%
x1, w1 = Value(2.0, label="x1"), Value(-0.5, label="w1")
x2, w2 = Value(1.0, label="x2"), Value(1.5, label="w2")
b = Value(0.3, label="b")
neuron_out = (x1 * w1 + x2 * w2 + b).sigmoid()
neuron_out.backward()
draw_graph(neuron_out, "a = sigmoid(w1*x1 + w2*x2 + b): data (forward) and grad (backward)");

# %% [markdown]
# Read the picture right to left. The sigmoid box receives gradient 1; it
# passes on $\sigma(z)(1-\sigma(z))$ to the sum; a sum copies its gradient to
# every input; a product sends each input *the other* input times the
# gradient, so $\partial a/\partial w_1 = x_1\,\sigma'(z)$, as chapter 00 derived by hand:

# %%
s = 1 / (1 + math.exp(-(2.0 * -0.5 + 1.0 * 1.5 + 0.3)))
print(f"dw1: engine {w1.grad:.6f}, by hand x1*s*(1-s) = {2.0 * s * (1 - s):.6f}")
assert math.isclose(w1.grad, 2.0 * s * (1 - s), rel_tol=1e-12)
assert math.isclose(b.grad, s * (1 - s), rel_tol=1e-12)

# %% [markdown]
# ## 3. Gradients checked three ways
#
# A gradient can be checked without any calculus. The **central finite
# difference** (有限差分)
#
# $$
# \frac{\partial f}{\partial a} \approx \frac{f(a+h) - f(a-h)}{2h} \tag{2}
# $$
#
# has an error of order $h^2$ (plus rounding of order $\varepsilon/h$, with
# $\varepsilon \approx 10^{-16}$ in float64); with $h = 10^{-6}$ both are far below $10^{-6}$.
# We compare (2), our engine, and `torch.autograd` in float64 on a function
# that uses every operation, uses $a$ and $b$ twice, and is written once for both engines:

# %%
def example_function(a, b, c):
    """Works on Values and on torch tensors alike (same operator and method names)."""
    return (a * b + c).sigmoid() * a + (b**2 + 1).log() - c.exp() / (a + 2) + (a - c).relu()


point = {"a": 0.7, "b": -1.3, "c": 0.4}


def finite_difference(fn, point, name, h=1e-6):
    """Central difference (2) of fn with respect to one input, using only forward passes."""
    up = {k: Value(v + h * (k == name)) for k, v in point.items()}
    down = {k: Value(v - h * (k == name)) for k, v in point.items()}
    return (fn(**up).data - fn(**down).data) / (2 * h)


# %%
engine_inputs = {k: Value(v, label=k) for k, v in point.items()}
example_function(**engine_inputs).backward()

torch_inputs = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in point.items()}
example_function(**torch_inputs).backward()

gradients = {
    name: (finite_difference(example_function, point, name), engine_inputs[name].grad,
           torch_inputs[name].grad.item())
    for name in point
}

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'input':>5} | {'finite diff':>12} | {'our engine':>12} | {'torch.autograd':>14} | agree to 1e-6")
for name, (numeric, engine, autograd) in gradients.items():
    agree = abs(numeric - engine) < 1e-6 and abs(engine - autograd) < 1e-6
    print(f"{name:>5} | {numeric:12.8f} | {engine:12.8f} | {autograd:14.8f} | {agree}")
    assert agree, f"gradients for {name} disagree"

# %%
worst = max(max(abs(n - e), abs(e - t)) for n, e, t in gradients.values())
print(f"largest disagreement between the three: {worst:.1e}")
assert worst < 1e-8, "far better than the 1e-6 the table asks for"

# %% [markdown]
# The three agree to far better than $10^{-6}$. The finite difference needs two
# forward passes *per input*; backpropagation needs one backward pass for
# *all* inputs, which is why it scales to the millions of weights of BERT.
# Keep finite differences as a test, never as a training method.

# %% [markdown]
# ## 4. From scalars to matrices
#
# A scalar engine with a node per multiplication is far too slow for real
# networks. Seed article 000 writes a layer as
#
# $$
# \boldsymbol{a}^{(l)} = g\left(\boldsymbol{W}^{(l)}\boldsymbol{a}^{(l-1)} + \boldsymbol{b}^{(l)}\right) \tag{3}
# $$
#
# with $\boldsymbol{W}^{(l)}$ of shape $(n_l, n_{l-1})$ and column vectors
# $\boldsymbol{a}^{(l-1)} \in \mathbb{R}^{n_{l-1}}$, $\boldsymbol{b}^{(l)} \in \mathbb{R}^{n_l}$.
# For a batch of $m$ examples we put them side by side as the columns of
# $\boldsymbol{A}^{(l-1)}$, shape $(n_{l-1}, m)$, so
# $\boldsymbol{Z}^{(l)} = \boldsymbol{W}^{(l)}\boldsymbol{A}^{(l-1)} + \boldsymbol{b}^{(l)}$
# (the bias is added to every column) and $\boldsymbol{A}^{(l)} = g(\boldsymbol{Z}^{(l)})$.
#
# For binary classification the last layer is one sigmoid unit,
# $\pi_i = \sigma(z^{(L)}_i)$, and the loss is the binary cross-entropy (二元交叉熵) the seed writes:
#
# $$
# J(\boldsymbol{\theta}) = -\frac{1}{m}\sum_{i=1}^{m}\left[y_i\log\pi_i + (1-y_i)\log(1-\pi_i)\right]. \tag{4}
# $$

# %% [markdown]
# **The gradients by hand.** Write $\delta^{(l)} = \partial J/\partial \boldsymbol{Z}^{(l)}$, same shape as $\boldsymbol{Z}^{(l)}$.
#
# 1. Output: $\dfrac{\partial J}{\partial z_i} = \dfrac{1}{m}\Bigl(-\dfrac{y_i}{\pi_i} + \dfrac{1-y_i}{1-\pi_i}\Bigr)\pi_i(1-\pi_i) = \dfrac{\pi_i - y_i}{m}$, so
#    $\delta^{(L)} = (\boldsymbol{\pi} - \boldsymbol{y})/m$, shape $(1, m)$. The sigmoid's $\pi(1-\pi)$ cancels.
# 2. Weights: $z^{(l)}_{jk} = \sum_i W_{ji} a^{(l-1)}_{ik} + b_j$, so $\partial z_{jk}/\partial W_{ji} = a_{ik}$ and summing over the batch,
#    $$\frac{\partial J}{\partial \boldsymbol{W}^{(l)}} = \delta^{(l)}\,\boldsymbol{A}^{(l-1)\top}: \quad (n_l, m)\,(m, n_{l-1}) \to (n_l, n_{l-1}). \tag{5}$$
# 3. Bias: it is added to every column, so its gradient sums over the batch,
#    $\partial J/\partial \boldsymbol{b}^{(l)} = \delta^{(l)}\mathbf{1}_m$: $(n_l, m)(m, 1) \to (n_l, 1)$. (6)
# 4. Back one layer: $\partial J/\partial \boldsymbol{A}^{(l-1)} = \boldsymbol{W}^{(l)\top}\delta^{(l)}$: $(n_{l-1}, n_l)(n_l, m) \to (n_{l-1}, m)$, then through the activation element by element,
#    $$\delta^{(l-1)} = \bigl(\boldsymbol{W}^{(l)\top}\delta^{(l)}\bigr) \odot g'\bigl(\boldsymbol{Z}^{(l-1)}\bigr). \tag{7}$$
#
# Every gradient has the shape of the thing it is the gradient of: a quick
# check that catches most mistakes (a transpose in the wrong place gives the wrong shape).

# %%
def init_mlp(sizes, generator, dtype=torch.float32):
    """W^(l): (n_l, n_{l-1}) with He scaling sqrt(2 / n_{l-1}); b^(l): (n_l, 1) zeros."""
    params = {}
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        params[f"W{l}"] = torch.randn(n_out, n_in, generator=generator, dtype=dtype) * math.sqrt(2 / n_in)
        params[f"b{l}"] = torch.zeros(n_out, 1, dtype=dtype)
    return params


def forward(params, X):
    """X: (n_0, m), one example per column. ReLU hidden layers, sigmoid output, eq. (3)."""
    L = len(params) // 2
    cache = {"A0": X}
    for l in range(1, L + 1):
        Z = params[f"W{l}"] @ cache[f"A{l - 1}"] + params[f"b{l}"]
        cache[f"Z{l}"], cache[f"A{l}"] = Z, (torch.sigmoid(Z) if l == L else Z.clamp(min=0))
    return cache[f"A{L}"], cache


# %% [markdown]
# The loss (4) is computed from the output logits $z$ rather than from $\pi$:
# $-[y\log\sigma(z) + (1-y)\log(1-\sigma(z))] = \log(1+e^{z}) - yz$, which is
# the same number but never takes the log of 0 when $\sigma(z)$ rounds to 0 or 1.

# %%
def bce_from_logits(Z, y):
    """Mean binary cross-entropy (4), written stably with softplus(z) = log(1 + e^z)."""
    return (F.softplus(Z) - y * Z).mean()


def backward_mlp(params, cache, y):
    """Gradients of (4) for every W^(l), b^(l), by equations (5)-(7)."""
    L, m = len(params) // 2, y.shape[1]
    grads, delta = {}, (cache[f"A{L}"] - y) / m                   # delta^(L): (1, m)
    for l in range(L, 0, -1):
        grads[f"W{l}"] = delta @ cache[f"A{l - 1}"].T              # (n_l, m)(m, n_{l-1}), eq. (5)
        grads[f"b{l}"] = delta.sum(dim=1, keepdim=True)            # (n_l, 1), eq. (6)
        if l > 1:
            relu_slope = (cache[f"Z{l - 1}"] > 0).to(delta.dtype)  # ReLU': 1 or 0
            delta = (params[f"W{l}"].T @ delta) * relu_slope       # (n_{l-1}, m), eq. (7)
    return grads


# %% [markdown]
# **Check against autograd**, in float64 on the CPU (Apple's MPS has no
# float64), for a network with two hidden layers, $2 \to 16 \to 16 \to 1$, on
# a fixed batch of 64 points:

# %%
generator = torch.Generator().manual_seed(SEED)
check_params = init_mlp([2, HIDDEN, HIDDEN, 1], generator, dtype=torch.float64)
check_X = torch.randn(2, 64, generator=generator, dtype=torch.float64)
check_y = (check_X[0:1] * check_X[1:2] > 0).to(torch.float64)  # any labels will do

_, cache = forward(check_params, check_X)
by_hand = backward_mlp(check_params, cache, check_y)

leaves = {name: p.clone().requires_grad_(True) for name, p in check_params.items()}
L = len(leaves) // 2
Z_out = forward(leaves, check_X)[1][f"Z{L}"]
bce_from_logits(Z_out, check_y).backward()

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'param':>5} | {'shape':>8} | hand == autograd (float64)")
for name, grad in by_hand.items():
    assert grad.shape == check_params[name].shape, "a gradient has the shape of its parameter"
    torch.testing.assert_close(grad, leaves[name].grad, rtol=1e-10, atol=1e-12)
    print(f"{name:>5} | {str(tuple(grad.shape)):>8} | {True}")

# %%
max_diff = max((by_hand[n] - leaves[n].grad).abs().max().item() for n in by_hand)
print(f"largest |hand - autograd| over all {sum(p.numel() for p in check_params.values())} gradients: {max_diff:.1e}")
assert max_diff < 1e-10

# %% [markdown]
# ## 5. Training the MLP with hand-written SGD
#
# **Data.** scikit-learn's `make_moons` draws two interleaving half-circles
# with noise: no straight line separates them, so the hidden layers must earn
# their keep. It is generated on the spot (no download). We hold out 20% for
# testing and standardise with the training mean and spread.

# %%
points, labels = make_moons(n_samples=N_SAMPLES, noise=0.2, random_state=SEED)
order = np.random.default_rng(SEED).permutation(N_SAMPLES)
n_test = N_SAMPLES // 5
test_idx, train_idx = order[:n_test], order[n_test:]
mean, std = points[train_idx].mean(axis=0), points[train_idx].std(axis=0)


def as_columns(idx):
    """(features as columns, labels as a row), float32 on the device, as eq. (3) wants."""
    X = torch.tensor((points[idx] - mean) / std, dtype=torch.float32).T
    y = torch.tensor(labels[idx], dtype=torch.float32).unsqueeze(0)
    return X.to(device), y.to(device)


X_train, y_train = as_columns(train_idx)
X_test, y_test = as_columns(test_idx)
print(f"train {tuple(X_train.shape)}, test {tuple(X_test.shape)}, share of class 1: {y_train.mean():.2f}")

# %% [markdown]
# **Stochastic gradient descent** (随机梯度下降): shuffle, cut the data into
# mini-batches, and after each batch step every parameter against its gradient,
# $\boldsymbol{W} \leftarrow \boldsymbol{W} - \eta\,\partial J/\partial \boldsymbol{W}$, with learning rate (学习率) $\eta$.

# %%
def accuracy_of(params, X, y):
    probs, _ = forward(params, X)
    return ((probs > 0.5).float() == y).float().mean().item()


def sgd_epoch(params, lr, batch_size, generator):
    """One pass over the training set in shuffled mini-batches; returns the mean batch loss."""
    losses = []
    for batch in torch.randperm(X_train.shape[1], generator=generator).split(batch_size):
        X, y = X_train[:, batch.to(device)], y_train[:, batch.to(device)]
        _, cache = forward(params, X)
        losses.append(bce_from_logits(cache[f"Z{len(params) // 2}"], y).item())
        for name, grad in backward_mlp(params, cache, y).items():
            params[name] -= lr * grad
    return sum(losses) / len(losses)


# %% [markdown]
# A function that draws the decision boundary (决策边界), the curve where the
# network's probability crosses 0.5, over the data:

# %%
grid_x, grid_y = np.meshgrid(np.linspace(-2.5, 2.5, 150), np.linspace(-2.5, 2.5, 150))
grid = torch.tensor(np.stack([grid_x.ravel(), grid_y.ravel()]), dtype=torch.float32).to(device)


def plot_boundary(params, ax, title):
    probs = forward(params, grid)[0].reshape(grid_x.shape).cpu().numpy()
    ax.contourf(grid_x, grid_y, probs, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.6)
    ax.contour(grid_x, grid_y, probs, levels=[0.5], colors="k", linewidths=1.5)
    Xc, yc = X_train.cpu().numpy(), y_train.cpu().numpy()[0]
    ax.scatter(Xc[0], Xc[1], c=yc, cmap="RdBu_r", s=8, edgecolors="k", linewidths=0.2)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([]), ax.set_yticks([])


# %% [markdown]
# Now train: a live loss curve while it runs (only the final curve in the
# saved notebook), and the boundary before and after.

# %%
sgd_generator = torch.Generator().manual_seed(SEED)
params = {k: v.to(device) for k, v in init_mlp([2, HIDDEN, HIDDEN, 1], sgd_generator).items()}
initial_params = {k: v.clone() for k, v in params.items()}
acc_before = accuracy_of(params, X_test, y_test)

with LivePlot(title="hand-written SGD on two moons") as live:
    for epoch in tqdm(range(1, EPOCHS + 1), desc="hand-written SGD"):
        loss = sgd_epoch(params, LEARNING_RATE, BATCH_SIZE, sgd_generator)
        if epoch % max(1, EPOCHS // 30) == 0 or epoch == EPOCHS:
            live.update(epoch, train_loss=loss, test_acc=accuracy_of(params, X_test, y_test))
hand_history = live.history

# %%
acc_after = accuracy_of(params, X_test, y_test)
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
plot_boundary(initial_params, axes[0], f"before training: test accuracy {acc_before:.1%}")
plot_boundary(params, axes[1], f"after {EPOCHS} epochs of SGD: test accuracy {acc_after:.1%}")
plt.show()
print(f"test accuracy {acc_before:.1%} -> {acc_after:.1%}; training loss "
      f"{hand_history['train_loss'][0]:.3f} -> {hand_history['train_loss'][-1]:.3f}")
assert acc_after > (0.95 if not SMOKE else 0.80), "the trained MLP separates the moons"
assert hand_history["train_loss"][-1] < hand_history["train_loss"][0], "training lowered the loss"

# %% [markdown]
# Before training the boundary is an arbitrary curve; after training it
# follows the gap between the moons and classifies over 95% of the held-out
# points correctly (the full run; the smoke run trains too briefly to promise that).

# %% [markdown]
# ### Try it: learning rate and width
#
# Move the sliders to retrain a fresh network (same data, same initial seed)
# for `WIDGET_EPOCHS` epochs and see its boundary. Try a learning rate of 0.001
# (it learns much more slowly), 1.0, and a width of 2 (a boundary made of very
# few straight pieces). The website cannot run Python, so a static grid of six
# settings follows the widget.

# %%
def train_quickly(lr, hidden, epochs=WIDGET_EPOCHS):
    generator = torch.Generator().manual_seed(SEED)
    params = {k: v.to(device) for k, v in init_mlp([2, hidden, hidden, 1], generator).items()}
    for _ in range(epochs):
        sgd_epoch(params, lr, BATCH_SIZE, generator)
    return params


def show_boundary(lr=0.1, hidden=16):
    params = train_quickly(lr, hidden)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    plot_boundary(params, ax, f"lr={lr:.3g}, width={hidden}: test acc {accuracy_of(params, X_test, y_test):.1%}")
    plt.show()


widgets.interact(show_boundary,
                 lr=widgets.FloatLogSlider(value=0.1, base=10, min=-3, max=0, step=0.25, continuous_update=False),
                 hidden=widgets.IntSlider(value=16, min=2, max=64, step=2, continuous_update=False));

# %%
settings = [(lr, width) for width in (2, 16) for lr in (0.001, 0.03, 0.3)]
grid_accuracy = {}
fig, axes = plt.subplots(2, 3, figsize=(11, 7.5))
for ax, (lr, width) in zip(axes.flat, settings):
    trained = train_quickly(lr, width)
    grid_accuracy[(lr, width)] = accuracy_of(trained, X_test, y_test)
    plot_boundary(trained, ax, f"lr={lr}, width={width}: acc {grid_accuracy[(lr, width)]:.1%}")
fig.suptitle(f"Decision boundaries after {WIDGET_EPOCHS} epochs of SGD")
plt.show()

# %%
for (lr, width), acc in grid_accuracy.items():
    print(f"lr={lr:<6} width={width:>2}: test accuracy {acc:.1%}")
assert grid_accuracy[(0.001, 16)] < grid_accuracy[(0.3, 16)], "a tiny learning rate learns less in the same time"
assert grid_accuracy[(0.3, 2)] < grid_accuracy[(0.3, 16)], "a width of 2 fits the moons worse than 16"

# %% [markdown]
# With $\eta = 0.001$ each step is so small that, after the same number of
# epochs, the network has learnt less (lower test accuracy than with
# $\eta = 0.3$); width 2 leaves the network too few pieces to bend around the
# moons, and it stays below width 16 at the same learning rate. Learning rate and width are *hyperparameters*: backprop
# computes the gradient, but you choose how far to follow it and how big the network is.

# %% [markdown]
# ## 6. Activation functions and vanishing gradients
#
# Equation (7) multiplies the gradient by $g'(\boldsymbol{Z})$ at every layer.
# For ReLU that factor is 1 or 0 (seed 002). For the sigmoid it is
# $\sigma(z)(1-\sigma(z)) \le 1/4$, and close to 0 once $|z|$ is large: the
# sigmoid **saturates** (饱和). Through ten sigmoid layers the gradient is
# multiplied by ten numbers of at most 0.25, and the first layers barely learn.
# First the derivatives themselves, computed by autograd:

# %%
z = torch.linspace(-6, 6, 241, dtype=torch.float64, requires_grad=True)
slopes = {}
for name, g in {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}.items():
    (slope,) = torch.autograd.grad(g(z).sum(), z)
    slopes[name] = slope

fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for name, g in {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}.items():
    axes[0].plot(z.detach(), g(z).detach(), label=name)
    axes[1].plot(z.detach(), slopes[name], label=f"{name}'")
axes[0].set_title("activation g(z)"), axes[1].set_title("derivative g'(z)")
axes[0].set_ylim(-1.1, 2), axes[0].legend(), axes[1].legend();

# %%
s = torch.sigmoid(z.detach())
torch.testing.assert_close(slopes["sigmoid"], s * (1 - s))                # sigma' = sigma (1 - sigma)
assert slopes["sigmoid"].max().item() <= 0.25 + 1e-12                     # never more than 1/4 ...
assert math.isclose(slopes["sigmoid"][120].item(), 0.25)                  # ... reached at z = 0
assert slopes["sigmoid"][-1].item() < 0.0025                              # saturated at z = 6
assert set(slopes["relu"][z.detach() != 0].tolist()) == {0.0, 1.0}        # ReLU' is 1 or 0
print(f"sigmoid'(0) = {slopes['sigmoid'][120]:.4f}, sigmoid'(6) = {slopes['sigmoid'][-1]:.5f}")

# %% [markdown]
# Now a deep network, `DEPTH` hidden layers of width 32, built twice with
# *identical* weights (He initialisation), once with sigmoid and once with
# ReLU. One backward pass on the moons training set; we record the norm of the
# gradient of each layer's weight matrix, $\lVert \partial J/\partial \boldsymbol{W}^{(l)} \rVert$.

# %%
def deep_network(activation, depth=DEPTH, width=32):
    torch.manual_seed(SEED)  # the same weights for every activation
    layers, n_in = [], 2
    for _ in range(depth):
        linear = nn.Linear(n_in, width)
        nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        nn.init.zeros_(linear.bias)
        layers += [linear, activation()]
        n_in = width
    return nn.Sequential(*layers, nn.Linear(width, 1)).to(device)


def gradient_norms(net):
    net.zero_grad()
    logits = net(X_train.T)  # nn.Linear wants examples as rows: (m, 2)
    F.binary_cross_entropy_with_logits(logits, y_train.T).backward()
    return [m.weight.grad.norm().item() for m in net if isinstance(m, nn.Linear)]


# %%
norms = {name: gradient_norms(deep_network(act)) for name, act in {"sigmoid": nn.Sigmoid, "relu": nn.ReLU}.items()}
fig, ax = plt.subplots(figsize=(7, 3.5))
for name, values in norms.items():
    ax.semilogy(range(1, len(values) + 1), values, marker="o", label=name)
ax.set_xlabel("layer (1 = next to the input)"), ax.set_ylabel("||dJ/dW|| (log scale)")
ax.set_title(f"Gradient norm per layer, {DEPTH} hidden layers, one backward pass")
ax.legend();

# %%
ratio = {name: values[0] / values[-1] for name, values in norms.items()}
for name, r in ratio.items():
    print(f"{name:>7}: first-layer / last-layer gradient norm = {r:.2e}")
assert ratio["sigmoid"] < 1e-3, "sigmoid: the first layer gets a vanishing share of the gradient"
assert ratio["relu"] > 0.02, "relu: the first layer keeps a sizeable share of the gradient"
assert ratio["relu"] > 1000 * ratio["sigmoid"], "relu keeps the gradient far larger in early layers"

# %% [markdown]
# In the sigmoid network the first layer's gradient is more than a thousand
# times smaller than the last layer's: with the same learning rate it would
# hardly change. ReLU passes the gradient unchanged wherever a unit is active,
# so (with He initialisation) the first layer still gets a few per cent or more of
# the last layer's gradient norm, over a thousand times the sigmoid network's share. This is the main reason hidden layers use ReLU-like activations,
# and sigmoid survives mainly at the output, where (4) cancels its derivative.

# %% [markdown]
# ## 7. From hand-written SGD to `torch.optim`
#
# The same network as an `nn.Module`. `nn.Linear` stores its weight as
# $(n_{\text{out}}, n_{\text{in}})$, exactly our $\boldsymbol{W}^{(l)}$, but it
# takes examples as *rows* and computes $\boldsymbol{X}\boldsymbol{W}^\top + \boldsymbol{b}$,
# the transpose of (3). So we can copy our initial weights in and train with
# `torch.optim.SGD` on the same batches, in the same order.

# %%
class MLP(nn.Module):
    def __init__(self, hidden=HIDDEN):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                    nn.Linear(hidden, 1))

    def forward(self, X_rows):
        return self.layers(X_rows)  # logits, shape (m, 1)


def mlp_from(params):
    """An MLP whose weights are copies of our hand-made W^(l), b^(l)."""
    model = MLP().to(device)
    linears = [m for m in model.layers if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for l, linear in enumerate(linears, start=1):
            linear.weight.copy_(params[f"W{l}"])
            linear.bias.copy_(params[f"b{l}"].squeeze(1))
    return model


# %% [markdown]
# The PyTorch loop: `zero_grad()` (gradients accumulate, section 1),
# `backward()` (our `backward_mlp`), `step()` (our `params -= lr * grad`).

# %%
def train_torch(model, optimizer, epochs, generator):
    losses = []
    for _ in tqdm(range(epochs), desc=type(optimizer).__name__):
        batch_losses = []
        for batch in torch.randperm(X_train.shape[1], generator=generator).split(BATCH_SIZE):
            batch = batch.to(device)
            loss = F.binary_cross_entropy_with_logits(model(X_train[:, batch].T), y_train[:, batch].T)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            batch_losses.append(loss.item())
        losses.append(sum(batch_losses) / len(batch_losses))
    return losses


# %%
@torch.no_grad()
def torch_accuracy(model):
    return ((model(X_test.T) > 0).float() == y_test.T).float().mean().item()


# %% [markdown]
# `torch.optim.SGD`, from the same initial weights as our hand-written run,
# with a generator seeded the same way so the batches come in the same order:

# %%
torch_generator = torch.Generator().manual_seed(SEED)
init_mlp([2, HIDDEN, HIDDEN, 1], torch_generator)  # advance the generator exactly as the hand-written run did
sgd_model = mlp_from(initial_params)
sgd_losses = train_torch(sgd_model, torch.optim.SGD(sgd_model.parameters(), lr=LEARNING_RATE), EPOCHS,
                         torch_generator)

# %%
sgd_linears = [m for m in sgd_model.layers if isinstance(m, nn.Linear)]
param_diff = max(max((lin.weight - params[f"W{l}"]).abs().max().item(),
                     (lin.bias - params[f"b{l}"].squeeze(1)).abs().max().item())
                 for l, lin in enumerate(sgd_linears, start=1))
print(f"torch.optim.SGD vs hand-written SGD after {EPOCHS} epochs: "
      f"max |parameter difference| {param_diff:.1e}, test accuracy {torch_accuracy(sgd_model):.1%} vs {acc_after:.1%}")
assert param_diff < 1e-4, "same data, same order, same rule: the same weights"
assert abs(torch_accuracy(sgd_model) - acc_after) <= 1 / len(test_idx) + 1e-9

# %% [markdown]
# The same weights up to float32 rounding (the two compute $\boldsymbol{W}\boldsymbol{A}$ and
# $\boldsymbol{X}\boldsymbol{W}^\top$ in a different order), the same accuracy
# to within one test point. `torch.optim.SGD` *is* `params -= lr * grad`.
#
# **Adam** (named in the seeds next to SGD) keeps running averages of each
# parameter's gradient and squared gradient and divides one by the square
# root of the other, so every parameter gets its own step size. With a
# learning rate of 0.01 on this problem it reaches about the same test
# accuracy (within 3 percentage points in the full run):

# %%
adam_generator = torch.Generator().manual_seed(SEED)
init_mlp([2, HIDDEN, HIDDEN, 1], adam_generator)
adam_model = mlp_from(initial_params)
adam_losses = train_torch(adam_model, torch.optim.Adam(adam_model.parameters(), lr=0.01), EPOCHS, adam_generator)
adam_acc = torch_accuracy(adam_model)

fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(live.steps["train_loss"], hand_history["train_loss"], "o", label="hand-written SGD")
ax.plot(range(1, EPOCHS + 1), sgd_losses, label="torch.optim.SGD (lr 0.1)")
ax.plot(range(1, EPOCHS + 1), adam_losses, label="torch.optim.Adam (lr 0.01)")
ax.set_xlabel("epoch"), ax.set_ylabel("training loss"), ax.set_yscale("log"), ax.legend();

# %%
print(f"test accuracy: hand-written SGD {acc_after:.1%}, torch SGD {torch_accuracy(sgd_model):.1%}, Adam {adam_acc:.1%}")
assert adam_acc > (0.95 if not SMOKE else 0.80), "Adam also separates the moons"
assert abs(adam_acc - acc_after) < (0.03 if not SMOKE else 0.15), "Adam and SGD reach about the same test accuracy"

# %% [markdown]
# ## 8. Exercises
#
# Each exercise is a function to complete. Replace the body, run the cell, then
# run the check below it: it prints ✅ or ❌ with a hint, and never stops the notebook.
#
# **01.1 · `tanh` in the engine.** Add the hyperbolic tangent to our engine.
# Its local derivative is $\frac{d}{dz}\tanh z = 1 - \tanh^2 z$. Use `make_node`
# (section 1) and `math.tanh`.

# %% tags=["solution"]
def value_tanh(x: Value) -> Value:
    """tanh(x) as a new Value, with its local derivative recorded for backward()."""
    # BEGIN SOLUTION
    t = math.tanh(x.data)
    return make_node(t, (x,), (1 - t**2,), "tanh")
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
def tanh_exercise():
    x = Value(0.5)
    y = value_tanh(x) * value_tanh(x) + x  # x reaches y by three paths
    y.backward()
    return [y.data, x.grad]


x_t = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
y_t = torch.tanh(x_t) * torch.tanh(x_t) + x_t
y_t.backward()
check("01.1", tanh_exercise, expected=[y_t.item(), x_t.grad.item()], atol=1e-9,
      hint="compute t = math.tanh(x.data); the local derivative is 1 - t**2; make_node(data, parents, local_grads, op)");

# %% [markdown]
# **01.2 · The gradient of a layer's bias, PyTorch's way.** `nn.Linear`
# computes $\boldsymbol{Z} = \boldsymbol{X}\boldsymbol{W}^\top + \boldsymbol{b}$
# with one example per *row*, so the upstream gradient `dZ` has shape
# `(m, n_out)` and the bias has shape `(n_out,)`. Return $\partial J/\partial \boldsymbol{b}$
# (compare equation (6), where examples were columns).

# %% tags=["solution"]
def linear_bias_grad(dZ: torch.Tensor) -> torch.Tensor:
    """dZ: (m, n_out), the gradient of the loss w.r.t. Z = X W^T + b. Returns dJ/db: (n_out,)."""
    # BEGIN SOLUTION
    return dZ.sum(dim=0)
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
g = torch.Generator().manual_seed(1)
X_ex, W_ex = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
b_ex = torch.zeros(4, dtype=torch.float64, requires_grad=True)
Z_ex = F.linear(X_ex, W_ex, b_ex)
upstream = torch.randn(5, 4, generator=g, dtype=torch.float64)
Z_ex.backward(upstream)  # now b_ex.grad = dJ/db for a loss whose dJ/dZ is `upstream`
check("01.2", lambda: linear_bias_grad(upstream), expected=b_ex.grad,
      hint="b is added to every row of Z, so its gradient sums dZ over the examples (dim=0)");

# %% [markdown]
# **01.3 · Binary cross-entropy of a batch.** Given predicted probabilities
# $\pi_i$ and labels $y_i \in \{0, 1\}$, return the mean loss (4). (Here the
# probabilities are safely inside (0, 1), so the direct formula is fine.)

# %% tags=["solution"]
def binary_cross_entropy(probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean of -[y log(pi) + (1 - y) log(1 - pi)] over the batch, eq. (4)."""
    # BEGIN SOLUTION
    return -(y * torch.log(probs) + (1 - y) * torch.log(1 - probs)).mean()
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
probs_ex = torch.tensor([0.9, 0.2, 0.6, 0.05, 0.7], dtype=torch.float64)
y_ex = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0], dtype=torch.float64)
check("01.3", lambda: binary_cross_entropy(probs_ex, y_ex), expected=F.binary_cross_entropy(probs_ex, y_ex),
      hint="-(y * log(p) + (1 - y) * log(1 - p)), then .mean()");

# %% [markdown]
# **01.4 · A stable log-softmax.** For logits $\boldsymbol{z}$ (one row per
# example), $\log\operatorname{softmax}(\boldsymbol{z})_k = z_k - \log\sum_j e^{z_j}$.
# Computed directly, $e^{1000}$ overflows to infinity. Subtract each row's
# maximum first: $z_k - \max_j z_j - \log\sum_j e^{z_j - \max_j z_j}$ is the same
# number, and the largest exponent is now $e^0 = 1$. (Chapter 02 builds the
# multi-class cross-entropy on this.)

# %% tags=["solution"]
def stable_log_softmax(z: torch.Tensor) -> torch.Tensor:
    """log(softmax(z)) along the last dimension, without overflow for large logits."""
    # BEGIN SOLUTION
    shifted = z - z.max(dim=-1, keepdim=True).values
    return shifted - torch.log(torch.exp(shifted).sum(dim=-1, keepdim=True))
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
logits_ex = torch.tensor([[1000.0, 999.0, 990.0], [-2.0, 0.5, 3.0]], dtype=torch.float64)
check("01.4", lambda: stable_log_softmax(logits_ex), expected=torch.log_softmax(logits_ex, dim=-1),
      hint="subtract z.max(dim=-1, keepdim=True).values before exp, then z_k - log(sum(exp(z)))");

# %% [markdown]
# ## Summary
#
# - A computation is a graph; each operation knows only its local derivatives,
#   and backpropagation multiplies them along every path (chain rule) and
#   **adds** the paths (`+=`), visiting nodes in reverse topological order.
# - Finite differences, our engine and `torch.autograd` agree to better than
#   $10^{-6}$: finite differences are the test, backpropagation the method.
# - For $\boldsymbol{a}^{(l)} = g(\boldsymbol{W}^{(l)}\boldsymbol{a}^{(l-1)} + \boldsymbol{b}^{(l)})$:
#   $\partial J/\partial\boldsymbol{W}^{(l)} = \delta^{(l)}\boldsymbol{A}^{(l-1)\top}$,
#   $\partial J/\partial\boldsymbol{b}^{(l)} = \delta^{(l)}\mathbf{1}$,
#   $\delta^{(l-1)} = (\boldsymbol{W}^{(l)\top}\delta^{(l)}) \odot g'(\boldsymbol{Z}^{(l-1)})$;
#   sigmoid + binary cross-entropy gives $\delta^{(L)} = (\boldsymbol{\pi} - \boldsymbol{y})/m$.
# - A hand-written 2-hidden-layer MLP trained by SGD separates the two moons
#   (over 95% test accuracy); `torch.optim.SGD` gives the same weights, Adam the same accuracy.
# - Sigmoid's derivative is at most 1/4 and saturates; in a 10-layer sigmoid
#   network the first layer's gradient vanishes, while ReLU (derivative 1 or 0) keeps it.
#
# **Glossary (术语):** backpropagation / 反向传播 · computational graph / 计算图 ·
# topological order / 拓扑排序 · gradient accumulation / 梯度累加 ·
# finite difference / 有限差分 · gradient check / 梯度检验 · multilayer perceptron (MLP) / 多层感知机 ·
# binary cross-entropy / 二元交叉熵 · stochastic gradient descent (SGD) / 随机梯度下降 ·
# learning rate / 学习率 · mini-batch / 小批量 · decision boundary / 决策边界 ·
# ReLU / 线性整流函数 · saturation / 饱和 · vanishing gradient / 梯度消失 ·
# He initialisation / He 初始化 · optimizer / 优化器 · Adam / Adam 优化器 · log-softmax / 对数 softmax.
# The full list is in the [glossary](../book/glossary.md).
#
# **Further reading:**
# Rumelhart, Hinton and Williams, "Learning representations by back-propagating errors" (*Nature*, 1986);
# Goodfellow, Bengio and Courville, *Deep Learning* (MIT Press, 2016), sections 6.5 (back-propagation) and 8.5 (Adam);
# Glorot and Bengio, "Understanding the difficulty of training deep feedforward neural networks" (2010);
# He et al., "Delving Deep into Rectifiers" (2015, He initialisation);
# Kingma and Ba, "Adam: A Method for Stochastic Optimization" (2015);
# Andrej Karpathy's *micrograd* and "Neural Networks: Zero to Hero", a scalar engine like section 1;
# 《动手学深度学习》(Dive into Deep Learning), the chapters on backpropagation and numerical stability.
