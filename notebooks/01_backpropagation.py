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
# - apply the chain rule (链式法则) on a computational graph (计算图), and tell apart the two ways gradients
#   add up: over the paths of one graph, and across `backward()` calls (why PyTorch needs `zero_grad()`);
# - check any gradient with finite differences and with `torch.autograd`, and train a small MLP with your
#   own scalar engine;
# - derive, with shapes, the gradients of $\boldsymbol{a}^{(l)} = g(\boldsymbol{W}^{(l)}\boldsymbol{a}^{(l-1)} + \boldsymbol{b}^{(l)})$ and train an MLP with hand-written SGD;
# - measure where gradients vanish (梯度消失) in a deep network, and separate the activation's slope from
#   the initialisation with sigmoid, tanh and ReLU under two initialisations;
# - replace your hand-written loop by `torch.optim.SGD` (same numbers) and `Adam`.
#
# **Prerequisites:** [00 · Setup and tour](00_setup_and_tour.ipynb) (the first
# gradient, the sigmoid neuron). Derivatives of one variable; matrix products.
# **Run time:** about a minute on a 2-core laptop CPU (under half a minute with `SMOKE = True`).

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
    bootstrap("01")

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
DEPTH = 10                # hidden layers of the deep network in section 7
SCALAR_STEPS = 80         # full-batch steps of the scalar engine's own MLP (section 4)
TORCH_THREADS = 1         # CPU threads for torch: this chapter's matrices are tiny

# %%
if SMOKE:
    N_SAMPLES, EPOCHS, WIDGET_EPOCHS, SCALAR_STEPS = 400, 40, 40, 20
print(f"SMOKE={SMOKE}: {N_SAMPLES} points, {EPOCHS} epochs, hidden width {HIDDEN}")

# %%
import inspect
import itertools
import math
import random

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
from labutils.stats import binomial_half_width

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
# product, and silently drops the other two.
#
# ### Two different sums: paths in one graph, and `backward()` calls
#
# The `+=` above adds the paths of **one** graph, inside one `backward()`.
# A second, separate question is what happens to `.grad` when `backward()` is
# called **again**. Our `backward()` starts by setting every gradient in the
# graph to 0, so a second call gives the same 7. PyTorch does not reset
# anything: each `backward()` *adds* into the `.grad` of every leaf tensor.

# %%
# NBVAL_CHECK_OUTPUT
x_engine = Value(3.0)
x_torch = torch.tensor(3.0, requires_grad=True)
for call in (1, 2):
    f_used_twice(x_engine).backward()
    f_used_twice(x_torch).backward()
    print(f"after backward() call {call}: our engine {x_engine.grad:g}, PyTorch {x_torch.grad.item():g}")
assert x_engine.grad == 7 and x_torch.grad.item() == 14  # PyTorch summed the two calls
x_torch.grad = None  # what optimizer.zero_grad() does to every parameter
f_used_twice(x_torch).backward()
print(f"after zeroing and one more call: PyTorch {x_torch.grad.item():g}")

# %% [markdown]
# PyTorch keeps the running sum on purpose: it lets you split a batch that
# does not fit in memory into **micro-batches**, call `backward()` on each
# (weighting each loss by its share of the batch) and take one optimizer step
# on the summed gradient. That is **gradient accumulation** (梯度累加), and
# the two halves below give exactly the full batch's gradient. The price is
# that a training loop must clear `.grad` before every new step
# (`optimizer.zero_grad()`, section 8), or the previous step's gradient is added in.

# %%
accumulation_generator = torch.Generator().manual_seed(SEED)
w_demo = torch.randn(3, generator=accumulation_generator, dtype=torch.float64, requires_grad=True)
X_demo = torch.randn(8, 3, generator=accumulation_generator, dtype=torch.float64)
y_demo = torch.randn(8, generator=accumulation_generator, dtype=torch.float64)
((X_demo @ w_demo - y_demo) ** 2).mean().backward()
full_batch_grad = w_demo.grad.clone()
w_demo.grad = None
for X_half, y_half in zip(X_demo.split(4), y_demo.split(4)):
    (((X_half @ w_demo - y_half) ** 2).mean() * len(y_half) / len(y_demo)).backward()  # adds into .grad
print(f"full batch {full_batch_grad.numpy().round(4)}, two accumulated halves {w_demo.grad.numpy().round(4)}")
torch.testing.assert_close(w_demo.grad, full_batch_grad)

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
                        arrowprops={"arrowstyle": "->", "color": "gray", "shrinkA": 28, "shrinkB": 28})
        ax.text(x, y, f"{node.label or node.op}\ndata {node.data:.3f}\ngrad {node.grad:.3f}",
                ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round", "fc": "lightblue" if not node.parents else "lightyellow"})
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
# ## 4. Closing the loop: the engine trains a network
#
# The engine is complete enough to learn. A multilayer perceptron (多层感知机)
# is neurons all the way down: each hidden unit computes
# $\mathrm{ReLU}(\sum_i w_i a_i + b)$ from the previous layer's outputs, and
# the output unit gives a logit $z$. Every weight is a `Value`, so one call to
# `backward()` on the mean loss fills every weight's `.grad`, and gradient
# descent is a plain loop over the weights. The loss is binary cross-entropy
# written from the logit, $\log(1 + e^{z}) - yz$ (section 5 derives it), in the
# form whose `exp` never sees a large positive number.

# %%
def scalar_mlp(sizes, rng):
    """Layers of (weight rows, biases), every number a Value; He-scaled Gaussian weights, zero biases."""
    layers = []
    for n_in, n_out in itertools.pairwise(sizes):
        rows = [[Value(rng.gauss(0, math.sqrt(2 / n_in))) for _ in range(n_in)] for _ in range(n_out)]
        layers.append((rows, [Value(0.0) for _ in range(n_out)]))
    return layers


def scalar_logit(layers, x):
    """Forward pass for one example x (a list of floats): ReLU hidden units, a linear output unit."""
    a = list(x)
    for l, (rows, biases) in enumerate(layers):
        z = [sum((w * a_i for w, a_i in zip(row, a)), bias) for row, bias in zip(rows, biases)]
        a = z if l == len(layers) - 1 else [z_j.relu() for z_j in z]
    return a[0]


def scalar_bce(z, y):
    """log(1 + e^z) - y z, choosing the form that never exponentiates a large positive number."""
    softplus = z + (1 + (-z).exp()).log() if z.data > 0 else (1 + z.exp()).log()
    return softplus - y * z


# %% [markdown]
# Sixty noisy points of two interleaving half-moons (scikit-learn's
# `make_moons`, generated on the spot), a network $2 \to 8 \to 1$, and
# `SCALAR_STEPS` full-batch steps with learning rate 1. Each step builds a
# fresh graph of a few thousand `Value` nodes, which is why this is slow and
# why section 5 moves to matrices.

# %%
moon_points, moon_labels = make_moons(n_samples=260, noise=0.1, random_state=SEED + 1)
moon_points = (moon_points - moon_points[:60].mean(axis=0)) / moon_points[:60].std(axis=0)
scalar_train = list(zip(moon_points[:60].tolist(), moon_labels[:60].tolist()))
scalar_test = list(zip(moon_points[60:].tolist(), moon_labels[60:].tolist()))
scalar_net = scalar_mlp([2, 8, 1], random.Random(SEED))
scalar_weights = [p for rows, biases in scalar_net for row in rows + [biases] for p in row]


def scalar_accuracy(layers, examples):
    return sum((scalar_logit(layers, x).data > 0) == bool(y) for x, y in examples) / len(examples)


scalar_acc_before = scalar_accuracy(scalar_net, scalar_test)
scalar_losses = []
for step in tqdm(range(SCALAR_STEPS), desc="scalar engine"):
    loss = sum(scalar_bce(scalar_logit(scalar_net, x), y) for x, y in scalar_train) * (1 / len(scalar_train))
    loss.backward()  # one backward pass fills the .grad of all the weights
    for p in scalar_weights:
        p.data -= 1.0 * p.grad
    scalar_losses.append(loss.data)
graph_size = len(topological_order(loss))
scalar_acc_after = scalar_accuracy(scalar_net, scalar_test)

# %%
grid_scalar = np.linspace(-2.5, 2.5, 30)
scalar_probs = np.array([[1 / (1 + math.exp(-scalar_logit(scalar_net, [u, v]).data)) for u in grid_scalar]
                         for v in grid_scalar])
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
axes[0].plot(range(1, SCALAR_STEPS + 1), scalar_losses)
axes[0].set_xlabel("step"), axes[0].set_ylabel("training loss"), axes[0].set_title("the engine's own training")
axes[1].contourf(grid_scalar, grid_scalar, scalar_probs, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.6)
axes[1].contour(grid_scalar, grid_scalar, scalar_probs, levels=[0.5], colors="k")
train_xy = np.array([x for x, _ in scalar_train])
axes[1].scatter(train_xy[:, 0], train_xy[:, 1], c=[y for _, y in scalar_train], cmap="RdBu_r", edgecolors="k", s=18)
axes[1].set_title(f"decision boundary: held-out accuracy {scalar_acc_after:.0%}")
plt.show()
print(f"{len(scalar_weights)} weights, {graph_size:,} Value nodes per step; held-out accuracy {scalar_acc_before:.1%} before -> {scalar_acc_after:.1%} "
      f"after {SCALAR_STEPS} steps; training loss {scalar_losses[0]:.3f} -> {scalar_losses[-1]:.3f}")
assert scalar_acc_after > (0.9 if not SMOKE else 0.7), "the scalar engine alone learns the moons"
assert scalar_losses[-1] < 0.7 * scalar_losses[0]

# %% [markdown]
# With nothing but `+`, `*`, `relu`, `exp`, `log` and the chain rule, the
# few dozen weights learn a curved boundary between the moons: over 90% of 200
# held-out points are on the right side in the full run. This is all of
# backpropagation; the rest of the chapter makes it fast.

# %% [markdown]
# ## 5. From scalars to matrices
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
# The picture draws each matrix of (5)–(7) to scale for a layer with
# $n_{l-1} = 3$ inputs, $n_l = 4$ units and a batch of $m = 6$ examples.

# %%
def draw_product(ax, x0, blocks, symbols):
    """Draw matrices as boxes of their (rows, cols) side by side, with symbols between them."""
    for (name, rows, cols), symbol in zip(blocks, symbols + [""]):
        ax.add_patch(plt.Rectangle((x0, -rows / 2), cols, rows, fc="lightyellow", ec="k"))
        ax.text(x0 + cols / 2, 0, name, ha="center", va="center", fontsize=9)
        ax.text(x0 + cols / 2, -rows / 2 - 0.6, f"({rows}, {cols})", ha="center", fontsize=8)
        x0 += cols + 0.6
        ax.text(x0 - 0.3, 0, symbol, ha="center", va="center", fontsize=13)
        x0 += 0.4 if symbol else 0
    return x0


n_prev, n_l, m_batch = 3, 4, 6
equations = [
    ("(5)", [("δ⁽ˡ⁾", n_l, m_batch), ("A⁽ˡ⁻¹⁾ᵀ", m_batch, n_prev), ("∂J/∂W⁽ˡ⁾", n_l, n_prev)], ["@", "="]),
    ("(6)", [("δ⁽ˡ⁾", n_l, m_batch), ("1", m_batch, 1), ("∂J/∂b⁽ˡ⁾", n_l, 1)], ["@", "="]),
    ("(7)", [("W⁽ˡ⁾ᵀ", n_prev, n_l), ("δ⁽ˡ⁾", n_l, m_batch), ("δ⁽ˡ⁻¹⁾ before ⊙ g'", n_prev, m_batch)], ["@", "="]),
]
fig, axes = plt.subplots(1, 3, figsize=(13, 2.6))
for ax, (label, blocks, symbols) in zip(axes, equations):
    right = draw_product(ax, 0, blocks, symbols)
    ax.set_xlim(-0.5, right + 0.5), ax.set_ylim(-4.5, 3.5), ax.set_aspect("equal"), ax.axis("off")
    ax.set_title(f"equation {label}")
plt.show()

# %%
def init_mlp(sizes, generator, dtype=torch.float32):
    """W^(l): (n_l, n_{l-1}) with He scaling sqrt(2 / n_{l-1}); b^(l): (n_l, 1) zeros."""
    params = {}
    for l, (n_in, n_out) in enumerate(itertools.pairwise(sizes), start=1):
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
    print(f"{name:>5} | {tuple(grad.shape)!s:>8} | {True}")

# %%
max_diff = max((by_hand[n] - leaves[n].grad).abs().max().item() for n in by_hand)
print(f"largest |hand - autograd| over all {sum(p.numel() for p in check_params.values())} gradients: {max_diff:.1e}")
assert max_diff < 1e-10

# %% [markdown]
# ## 6. Training the MLP with hand-written SGD
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


def sgd_epoch(params, X_all, y_all, lr, batch_size, generator):
    """One pass over (X_all, y_all) in shuffled mini-batches; updates params in place, returns the mean batch loss."""
    losses = []
    for batch in torch.randperm(X_all.shape[1], generator=generator).split(batch_size):
        X, y = X_all[:, batch.to(X_all.device)], y_all[:, batch.to(X_all.device)]
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
loss_before = bce_from_logits(forward(params, X_train)[1]["Z3"], y_train).item()  # whole training set

with LivePlot(title="hand-written SGD on two moons") as live:
    for epoch in tqdm(range(1, EPOCHS + 1), desc="hand-written SGD"):
        loss = sgd_epoch(params, X_train, y_train, LEARNING_RATE, BATCH_SIZE, sgd_generator)
        if epoch % max(1, EPOCHS // 30) == 0 or epoch == EPOCHS:
            live.update(epoch, train_loss=loss, test_acc=accuracy_of(params, X_test, y_test))
hand_history = live.history

# %%
acc_after = accuracy_of(params, X_test, y_test)
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
plot_boundary(initial_params, axes[0], f"before training: test accuracy {acc_before:.1%}")
plot_boundary(params, axes[1], f"after {EPOCHS} epochs of SGD: test accuracy {acc_after:.1%}")
plt.show()
loss_after = bce_from_logits(forward(params, X_train)[1]["Z3"], y_train).item()
print(f"before training: test accuracy {acc_before:.1%}, training loss {loss_before:.3f}")
print(f"after {EPOCHS} epochs:  test accuracy {acc_after:.1%}, training loss {loss_after:.3f}")
assert acc_after > (0.95 if not SMOKE else 0.80), "the trained MLP separates the moons"
assert loss_after < 0.5 * loss_before, "training lowered the loss"

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
def train_quickly(lr, hidden, epochs=WIDGET_EPOCHS, seed=SEED):
    generator = torch.Generator().manual_seed(seed)
    params = {k: v.to(device) for k, v in init_mlp([2, hidden, hidden, 1], generator).items()}
    for _ in range(epochs):
        sgd_epoch(params, X_train, y_train, lr, BATCH_SIZE, generator)
    return params


def show_boundary(lr=0.1, hidden=16):
    params = train_quickly(lr, hidden)
    _, ax = plt.subplots(figsize=(4.5, 4))
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
# ## 7. Activation functions and vanishing gradients
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
# Now a deep network, `DEPTH` hidden layers of width 32, one backward pass on
# the moons training set. Equation (7) says how the gradient travels down one
# layer:
#
# $$
# \delta^{(l-1)} = \underbrace{\bigl(\boldsymbol{W}^{(l)\top}\delta^{(l)}\bigr)}_{\text{the } W^\top \text{ factor}}
# \odot \underbrace{g'\bigl(\boldsymbol{Z}^{(l-1)}\bigr)}_{\text{the } g' \text{ factor}},
# $$
#
# so the size of $\delta$ changes at every layer by two factors: how much
# $\boldsymbol{W}^\top$ stretches it (set by the **initialisation**: He scales
# weights by $\sqrt{2/n_{\text{in}}}$, Xavier/Glorot by $\sqrt{2/(n_{\text{in}}+n_{\text{out}})}$),
# and how much the activation's slope shrinks it. To tell the two apart, the
# experiment crosses four activations with both initialisations. Besides
# sigmoid, tanh and ReLU it has **sigmoid − ½**: the sigmoid's slope (at most
# ¼) with outputs centred on 0 like tanh's. (tanh is itself a rescaled sigmoid,
# $\tanh z = 2\sigma(2z) - 1$, whose slope at 0 is 1 instead of ¼.)

# %%
class CentredSigmoid(nn.Module):
    """sigmoid(z) - 1/2: the sigmoid's slope, with outputs centred on 0."""

    def forward(self, z):
        return torch.sigmoid(z) - 0.5


ACTIVATIONS = {"sigmoid": nn.Sigmoid, "sigmoid - 1/2": CentredSigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}
INIT_STD = {"He": lambda n_in, n_out: math.sqrt(2 / n_in), "Xavier": lambda n_in, n_out: math.sqrt(2 / (n_in + n_out))}


def deep_network(activation, init, generator, depth=DEPTH, width=32):
    """`depth` hidden layers, Gaussian weights scaled by INIT_STD[init] and drawn from `generator`, zero biases."""
    layers, sizes = [], [2] + [width] * depth + [1]
    for l, (n_in, n_out) in enumerate(itertools.pairwise(sizes), start=1):
        linear = nn.Linear(n_in, n_out)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(n_out, n_in, generator=generator) * INIT_STD[init](n_in, n_out))
            linear.bias.zero_()
        layers += [linear] if l == len(sizes) - 1 else [linear, activation()]
    return nn.Sequential(*layers).to(device)


# %%
def gradient_profile(net, X_rows, y_rows):
    """One backward pass; per layer ||dJ/dW||, ||delta|| = ||dJ/dZ||, and the two factors of eq. (7)."""
    h, zs = X_rows, []
    for module in net:
        h = module(h)
        if isinstance(module, nn.Linear):
            h.retain_grad()  # keep dJ/dZ of this layer after backward()
            zs.append(h)
    net.zero_grad()
    F.binary_cross_entropy_with_logits(h, y_rows).backward()
    weights = [m.weight for m in net if isinstance(m, nn.Linear)]
    deltas = [z.grad for z in zs]
    back = [deltas[l] @ weights[l] for l in range(1, len(zs))]  # W^T delta, with examples as rows
    return {"weight_grad": [w.grad.norm().item() for w in weights],
            "delta": [d.norm().item() for d in deltas],
            "W_factor": [(b.norm() / d.norm()).item() for b, d in zip(back, deltas[1:])],
            "slope_factor": [(d.norm() / b.norm()).item() for d, b in zip(deltas[:-1], back)]}


# %%
profiles = {(name, init): gradient_profile(deep_network(act, init, torch.Generator().manual_seed(SEED)),
                                           X_train.T, y_train.T)
            for init in INIT_STD for name, act in ACTIVATIONS.items()}
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
for ax, init in zip(axes, INIT_STD):
    for name in ACTIVATIONS:
        delta = profiles[(name, init)]["delta"][:-1]  # hidden layers 1 .. DEPTH
        ax.semilogy(range(1, len(delta) + 1), delta, marker="o", label=name)
    ax.set_xlabel("hidden layer (1 = next to the input)"), ax.set_title(f"{init} initialisation")
axes[0].set_ylabel("||dJ/dZ|| (log scale)"), axes[1].legend()
fig.suptitle(f"Size of the backpropagated gradient per layer, {DEPTH} hidden layers, one backward pass")
plt.show()

# %%
def geometric_mean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values))


print(f"{'activation':>13} {'init':>6} | {'first/last ||dJ/dW||':>20} {'first/last ||delta||':>20} | "
      f"per layer: {'W^T factor':>10} x {'g-prime':>7}")
delta_ratio = {}
for (name, init), prof in profiles.items():
    delta_ratio[(name, init)] = prof["delta"][0] / prof["delta"][-2]  # first / last hidden layer
    print(f"{name:>13} {init:>6} | {prof['weight_grad'][0] / prof['weight_grad'][-1]:20.1e} "
          f"{delta_ratio[(name, init)]:20.1e} | {geometric_mean(prof['W_factor']):21.2f} x "
          f"{geometric_mean(prof['slope_factor']):7.2f}")

# %%
for init in INIT_STD:
    for name in ("sigmoid", "sigmoid - 1/2"):
        assert delta_ratio[(name, init)] < 1e-3, f"{name}, {init}: the gradient vanishes on its way down"
        assert 0.15 < geometric_mean(profiles[(name, init)]["slope_factor"]) <= 0.25 + 1e-6  # about 1/4
    for name in ("tanh", "relu"):
        assert delta_ratio[(name, init)] > 1e-2, f"{name}, {init}: the gradient keeps its size"
W_factor = {init: [geometric_mean(profiles[(name, init)]["W_factor"]) for name in ACTIVATIONS] for init in INIT_STD}
assert all(0.8 < f < 1.25 for f in W_factor["Xavier"]) and all(1.2 < f < 1.7 for f in W_factor["He"])
print("sigmoid and sigmoid - 1/2 lose over 99.9% of the gradient on the way down; tanh and ReLU keep over 1%")

# %% [markdown]
# Read the table from the right. Per layer the $W^\top$ factor is about 1
# with Xavier and about $\sqrt 2$ with He, whatever the activation; the $g'$
# factor is what differs. Both sigmoids shrink the gradient by roughly ¼ per
# layer (their slope is never more than ¼), so over ten layers $\delta$ falls
# by four to six orders of magnitude, with either initialisation and whether
# or not the outputs are centred: **the slope bound, not centring, makes
# the sigmoid's gradient vanish**. tanh, whose slope near 0 is 1, and ReLU,
# whose slope is 1 on the active half of the units (a factor near $1/\sqrt2$,
# which He's $\sqrt 2$ makes up for), keep $\delta$ within an order of magnitude
# or two across the whole depth.
#
# Centring does show in the *weight* gradients, $\partial J/\partial \boldsymbol W^{(l)} = \delta^{(l)}\boldsymbol A^{(l-1)\top}$
# (equation (5)): the uncentred sigmoid's outputs stay near ½, so its weight
# gradients shrink exactly like $\delta$, whereas sigmoid − ½'s outputs shrink
# forward too, so its last layers' weight gradients are small as well and the
# first/last ratio looks healthy even though the network passes almost no
# signal either way. Which is why the table shows both ratios. So hidden
# layers want an activation whose slope is near 1 where the units operate
# (tanh, ReLU and its relatives) *and* an initialisation matched to it; the
# sigmoid survives mainly at the output, where (4) cancels its derivative.

# %% [markdown]
# ## 8. From hand-written SGD to `torch.optim`
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
def train_torch(model, optimizer, X_all, y_all, epochs, batch_size, generator):
    """Mini-batch training on columns X_all (2, m), labels y_all (1, m); returns the mean loss of each epoch."""
    losses = []
    for _ in tqdm(range(epochs), desc=type(optimizer).__name__):
        batch_losses = []
        for batch in torch.randperm(X_all.shape[1], generator=generator).split(batch_size):
            batch = batch.to(X_all.device)
            loss = F.binary_cross_entropy_with_logits(model(X_all[:, batch].T), y_all[:, batch].T)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            batch_losses.append(loss.item())
        losses.append(sum(batch_losses) / len(batch_losses))
    return losses


# %%
@torch.no_grad()
def torch_accuracy(model, X, y):
    """Share of the columns of X whose logit has the sign of the label in y."""
    return ((model(X.T) > 0).float() == y.T).float().mean().item()


# %% [markdown]
# `torch.optim.SGD`, from the same initial weights as our hand-written run,
# with a generator seeded the same way so the batches come in the same order:

# %%
torch_generator = torch.Generator().manual_seed(SEED)
init_mlp([2, HIDDEN, HIDDEN, 1], torch_generator)  # advance the generator exactly as the hand-written run did
sgd_model = mlp_from(initial_params)
sgd_losses = train_torch(sgd_model, torch.optim.SGD(sgd_model.parameters(), lr=LEARNING_RATE),
                         X_train, y_train, EPOCHS, BATCH_SIZE, torch_generator)
sgd_acc = torch_accuracy(sgd_model, X_test, y_test)

# %%
sgd_linears = [m for m in sgd_model.layers if isinstance(m, nn.Linear)]
param_diff = max(max((lin.weight - params[f"W{l}"]).abs().max().item(),
                     (lin.bias - params[f"b{l}"].squeeze(1)).abs().max().item())
                 for l, lin in enumerate(sgd_linears, start=1))
print(f"torch.optim.SGD vs hand-written SGD after {EPOCHS} epochs: "
      f"max |parameter difference| {param_diff:.1e}, test accuracy {sgd_acc:.1%} vs {acc_after:.1%}")
assert param_diff < 1e-4, "same data, same order, same rule: the same weights"
assert abs(sgd_acc - acc_after) <= 1 / len(test_idx) + 1e-9

# %% [markdown]
# The same weights up to float32 rounding (the two compute $\boldsymbol{W}\boldsymbol{A}$ and
# $\boldsymbol{X}\boldsymbol{W}^\top$ in a different order), the same accuracy
# to within one test point. `torch.optim.SGD` *is* `params -= lr * grad`.
#
# **Adam** (named in the seeds next to SGD) keeps running averages of each
# parameter's gradient and squared gradient and divides one by the square
# root of the other, so every parameter gets its own step size. Here it
# runs with a common default learning rate, 0.01, untuned, from the same
# initial weights and batches:

# %%
adam_generator = torch.Generator().manual_seed(SEED)
init_mlp([2, HIDDEN, HIDDEN, 1], adam_generator)
adam_model = mlp_from(initial_params)
adam_losses = train_torch(adam_model, torch.optim.Adam(adam_model.parameters(), lr=0.01),
                          X_train, y_train, EPOCHS, BATCH_SIZE, adam_generator)
adam_acc = torch_accuracy(adam_model, X_test, y_test)

fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(live.steps["train_loss"], hand_history["train_loss"], "o", label="hand-written SGD")
ax.plot(range(1, EPOCHS + 1), sgd_losses, label="torch.optim.SGD (lr 0.1)")
ax.plot(range(1, EPOCHS + 1), adam_losses, label="torch.optim.Adam (lr 0.01)")
ax.set_xlabel("epoch"), ax.set_ylabel("training loss"), ax.set_yscale("log"), ax.legend();

# %%
print(inspect.getsource(binomial_half_width))  # labutils.stats: chapters 03, 04, 06 and 07 use it too
n_test_points = y_test.shape[1]
for name, acc in (("hand-written SGD", acc_after), ("torch SGD", sgd_acc), ("Adam", adam_acc)):
    print(f"{name:>16}: test accuracy {acc:.1%} ± {binomial_half_width(acc, n_test_points):.1%} "
          f"(95% interval, {n_test_points} test points)")
gap = abs(adam_acc - sgd_acc)
print(f"gap between SGD and Adam: {gap:.1%} = {round(gap * n_test_points)} test points")
assert adam_acc > (0.93 if not SMOKE else 0.75), "Adam also separates the moons"
assert SMOKE or gap < binomial_half_width(min(adam_acc, sgd_acc), n_test_points), "the text says: within the interval"

# %% [markdown]
# Both optimizers separate the moons. In the full run the gap between them
# is a few test points, less than the ±2–3 points that a 200-point test set
# leaves on each accuracy (the intervals printed above), and neither learning rate
# was tuned on a validation split: this one run ranks neither optimizer.
# What it shows is that swapping the optimizer is one line.

# %% [markdown]
# ## 9. Exercises
#
# Each exercise is a function to complete. Replace the body, run the cell, then
# run the check below it: it prints [PASS] or [FAIL] with a hint, and never stops the
# notebook. The checks try your code on several random inputs and an edge
# case, against a reference they compute with PyTorch.
#
# **01.1 · `tanh` in the engine.** Add the hyperbolic tangent to our scalar
# engine, so that `value_tanh(x)` is a new `Value` whose backward step sends
# the right gradient to `x`. Use `make_node` (section 1); you need the
# derivative of $\tanh$, which you can write with $\tanh$ itself. The check
# builds a graph that uses your node twice, at random points and at $\pm 20$,
# where $\tanh$ saturates.

# %% tags=["solution"]
def value_tanh(x: Value) -> Value:
    """tanh(x) as a new Value, with its local derivative recorded for backward()."""
    # BEGIN SOLUTION
    t = math.tanh(x.data)
    return make_node(t, (x,), (1 - t**2,), "tanh")
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
def test_value_tanh(fn):
    points = [0.0, 20.0, -20.0] + torch.randn(5, generator=torch.Generator().manual_seed(11)).mul(2).tolist()
    for point in points:
        x = Value(point)
        out = fn(x) * fn(x) + x * fn(x)  # x reaches out by several paths
        out.backward()
        x_t = torch.tensor(point, dtype=torch.float64, requires_grad=True)
        out_t = torch.tanh(x_t) * torch.tanh(x_t) + x_t * torch.tanh(x_t)
        out_t.backward()
        assert isinstance(out, Value), "value_tanh must return a Value (use make_node)"
        assert math.isclose(out.data, out_t.item(), rel_tol=1e-9, abs_tol=1e-12), f"wrong value at x = {point}"
        assert math.isclose(x.grad, x_t.grad.item(), rel_tol=1e-9, abs_tol=1e-12), (
            f"at x = {point:.3f} the gradient is {x.grad:.6g}, autograd says {x_t.grad.item():.6g}")


check("01.1", lambda: value_tanh, test=test_value_tanh,
      hint="the local derivative of tanh at z can be written with t = tanh(z) only; compare sigmoid's s (1 - s)");

# %% [markdown]
# **01.2 · The backward pass of a tanh network, in matrix form.** Section 5
# derived equations (5)–(7) for ReLU hidden layers. Write the backward pass
# for an MLP whose hidden layers use $\tanh$ (output: one sigmoid unit, loss
# (4), examples as columns, `params` as made by `init_mlp`). Return a dict
# with the gradient of every `W{l}` and `b{l}`, without autograd. The check
# uses random depths and widths, a batch of a single example, and inputs large
# enough to saturate the units.

# %% tags=["solution"]
def tanh_mlp_gradients(params: dict, X: torch.Tensor, y: torch.Tensor) -> dict:
    """X: (n_0, m), y: (1, m). Hidden layers tanh, output sigmoid, mean binary cross-entropy (4)."""
    # BEGIN SOLUTION
    L, m = len(params) // 2, y.shape[1]
    activations = [X]
    for l in range(1, L + 1):
        Z = params[f"W{l}"] @ activations[-1] + params[f"b{l}"]
        activations.append(torch.sigmoid(Z) if l == L else torch.tanh(Z))
    grads, delta = {}, (activations[L] - y) / m
    for l in range(L, 0, -1):
        grads[f"W{l}"] = delta @ activations[l - 1].T
        grads[f"b{l}"] = delta.sum(dim=1, keepdim=True)
        if l > 1:
            delta = (params[f"W{l}"].T @ delta) * (1 - activations[l - 1] ** 2)
    return grads
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
def test_tanh_mlp_gradients(fn):
    generator = torch.Generator().manual_seed(12)
    cases = [([3, 5, 4, 1], 7, 1.0), ([2, 6, 1], 1, 1.0), ([4, 3, 3, 3, 1], 9, 1.0), ([2, 4, 4, 1], 5, 30.0)]
    for sizes, m, scale in cases:  # the last case saturates tanh
        params = init_mlp(sizes, generator, dtype=torch.float64)
        params = {k: v + 0.1 * torch.randn(v.shape, generator=generator, dtype=v.dtype) for k, v in params.items()}
        X = torch.randn(sizes[0], m, generator=generator, dtype=torch.float64) * scale
        y = torch.randint(0, 2, (1, m), generator=generator).double()
        leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        A, L = X, len(sizes) - 1
        for l in range(1, L + 1):
            Z = leaves[f"W{l}"] @ A + leaves[f"b{l}"]
            A = torch.tanh(Z) if l < L else Z
        F.binary_cross_entropy_with_logits(A, y).backward()
        got = fn(params, X, y)
        for name, leaf in leaves.items():
            assert name in got, f"the result has no entry {name!r}"
            assert got[name].shape == leaf.shape, f"{name}: shape {tuple(got[name].shape)}, should be {tuple(leaf.shape)}"
            torch.testing.assert_close(got[name], leaf.grad, rtol=1e-7, atol=1e-10,
                                       msg=lambda msg, n=name, s=sizes, m=m: f"{n} wrong for sizes {s}, m={m}")


check("01.2", lambda: tanh_mlp_gradients, test=test_tanh_mlp_gradients,
      hint="only the g' factor of equation (7) changes; keep the activations of the forward pass, "
           "you can write tanh's slope with them");

# %% [markdown]
# **01.3 · Find the bug: gradient accumulation.** A learner wants one
# optimizer step on a batch too large for memory, so they split it into
# `micro_batches` pieces and accumulate the gradients, as in section 1. Each
# micro-batch's loss is already weighted by its share of the batch. Yet the
# step differs from a full-batch step whenever there is more than one piece:

# %%
def accumulated_step_buggy(model, optimizer, X, y, micro_batches):
    for X_part, y_part in zip(X.chunk(micro_batches), y.chunk(micro_batches)):
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(X_part), y_part) * len(y_part) / len(y)
        loss.backward()
    optimizer.step()


def step_difference(step_fn, micro_batches, seed=0):
    """Max |parameter difference| between step_fn and one full-batch SGD step, from the same start."""
    generator = torch.Generator().manual_seed(seed)
    X, y = torch.randn(10, 3, generator=generator), torch.randint(0, 2, (10, 1), generator=generator).float()
    torch.manual_seed(seed)  # the models' initial weights
    models = [nn.Linear(3, 1), nn.Linear(3, 1)]
    models[1].load_state_dict(models[0].state_dict())
    full = torch.optim.SGD(models[0].parameters(), lr=0.5)
    full.zero_grad(), F.binary_cross_entropy_with_logits(models[0](X), y).backward(), full.step()
    step_fn(models[1], torch.optim.SGD(models[1].parameters(), lr=0.5), X, y, micro_batches)
    return max((a - b).abs().max().item() for a, b in zip(models[0].parameters(), models[1].parameters()))


for pieces in (1, 2, 3):
    print(f"{pieces} micro-batch(es): max |difference| from the full-batch step {step_difference(accumulated_step_buggy, pieces):.2e}")

# %% [markdown]
# Write the corrected `accumulated_step`. The check compares it with a
# full-batch step on several models and batch sizes, including pieces of
# unequal size and a single piece.

# %% tags=["solution"]
def accumulated_step(model, optimizer, X, y, micro_batches):
    """One optimizer step on (X, y), computed from `micro_batches` pieces; same result as the full batch."""
    # BEGIN SOLUTION
    optimizer.zero_grad()
    for X_part, y_part in zip(X.chunk(micro_batches), y.chunk(micro_batches)):
        loss = F.binary_cross_entropy_with_logits(model(X_part), y_part) * len(y_part) / len(y)
        loss.backward()
    optimizer.step()
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
def test_accumulated_step(fn):
    generator = torch.Generator().manual_seed(13)
    for n, features, pieces in [(10, 3, 3), (12, 5, 4), (7, 2, 1), (5, 4, 5), (9, 3, 2)]:
        X = torch.randn(n, features, generator=generator, dtype=torch.float64)
        y = torch.randint(0, 2, (n, 1), generator=generator).double()
        start = nn.Linear(features, 1).double()
        reference, learner = nn.Linear(features, 1).double(), nn.Linear(features, 1).double()
        reference.load_state_dict(start.state_dict()), learner.load_state_dict(start.state_dict())
        optimizer = torch.optim.SGD(reference.parameters(), lr=0.3, momentum=0.9)
        optimizer.zero_grad(), F.binary_cross_entropy_with_logits(reference(X), y).backward(), optimizer.step()
        for p in learner.parameters():
            p.grad = torch.ones_like(p)  # a stale gradient left over from an earlier step
        fn(learner, torch.optim.SGD(learner.parameters(), lr=0.3, momentum=0.9), X, y, pieces)
        for a, b in zip(reference.parameters(), learner.parameters()):
            torch.testing.assert_close(b, a, msg=f"{n} examples in {pieces} pieces: not the full-batch step")


check("01.3", lambda: accumulated_step, test=test_accumulated_step,
      hint="ask, after the loop, which micro-batches' gradients are still in .grad when step() runs");

# %% [markdown]
# **01.4 · Predict, then run.** Without running anything, predict the value
# of `w` printed by this loop, which forgets `zero_grad()`. The loss is
# $(2w)^2$, so each fresh gradient is $8w$.
#
# ```python
# w = torch.tensor(1.0, requires_grad=True)
# for step in range(3):
#     loss = (2 * w) ** 2
#     loss.backward()
#     with torch.no_grad():
#         w -= 0.1 * w.grad
# print(w.item())
# ```
#
# Write your number in `predicted_w` (pencil and paper, to three decimals),
# then run the check: it runs the loop and tells you whether you were right.

# %% tags=["solution"]
def predicted_w() -> float:
    """Your prediction of w after the three steps above."""
    # BEGIN SOLUTION
    return -1.112  # grads 8, 8 + 1.6, 9.6 - 6.08: w = 1 -> 0.2 -> -0.76 -> -1.112
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
def run_forgetful_loop():
    w = torch.tensor(1.0, requires_grad=True)
    for _ in range(3):
        loss = (2 * w) ** 2
        loss.backward()
        with torch.no_grad():
            w -= 0.1 * w.grad
    return w.item()


check("01.4", predicted_w, expected=run_forgetful_loop(), atol=5e-4, rtol=0,
      hint="write down w.grad after each backward(): it is not 8w any more after the first step");
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
#   (over 95% test accuracy); `torch.optim.SGD` gives the same weights; Adam, untuned, also separates
#   the moons, within the test set's 95% interval of SGD.
# - The scalar engine alone trains a small MLP: backpropagation needs nothing but local derivatives.
# - PyTorch adds each `backward()` into `.grad`: that enables gradient accumulation over micro-batches
#   and is why every training step starts with `zero_grad()`.
# - Through equation (7) the gradient is multiplied, per layer, by a $W^\top$ factor (set by the
#   initialisation) and a $g'$ factor: the sigmoid's slope bound of 1/4 makes it vanish in a 10-layer
#   network, centred or not, with He or Xavier init; tanh and ReLU keep it.
#
# **Glossary (术语):** backpropagation / 反向传播 · computational graph / 计算图 ·
# topological order / 拓扑排序 · gradient accumulation (summing micro-batch gradients before one step) / 梯度累加 ·
# finite difference / 有限差分 · gradient check / 梯度检验 · multilayer perceptron (MLP) / 多层感知机 ·
# binary cross-entropy / 二元交叉熵 · stochastic gradient descent (SGD) / 随机梯度下降 ·
# learning rate / 学习率 · mini-batch / 小批量 · decision boundary / 决策边界 ·
# ReLU / 线性整流函数 · saturation / 饱和 · vanishing gradient / 梯度消失 ·
# He initialisation / He 初始化 · Xavier (Glorot) initialisation / Xavier 初始化 · tanh / 双曲正切 ·
# micro-batch / 微批次 · optimizer / 优化器 · Adam / Adam 优化器.
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
