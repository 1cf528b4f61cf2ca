"""labutils.stats: the binomial 95% interval the chapters print."""

import numpy as np
import pytest
from scipy.stats import norm

from labutils.stats import binomial_half_width, binomial_interval


def test_half_width_is_the_normal_quantile_times_the_standard_error():
    z = norm.ppf(0.975)
    assert binomial_half_width(0.9, 1000) == pytest.approx(z * np.sqrt(0.9 * 0.1 / 1000), rel=1e-4)
    low, high = binomial_interval(0.9, 1000)
    assert (low + high) / 2 == pytest.approx(0.9)
    assert high - low == pytest.approx(2 * binomial_half_width(0.9, 1000))


def test_the_interval_covers_the_true_accuracy_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    true_acc, n = 0.85, 1000
    measured = rng.binomial(n, true_acc, size=20_000) / n
    covered = [low <= true_acc <= high for low, high in (binomial_interval(a, n) for a in measured)]
    assert 0.94 < np.mean(covered) < 0.96


@pytest.mark.parametrize(("acc", "n"), [(1.2, 100), (-0.1, 100), (0.5, 0)])
def test_bad_input_says_what_is_wrong(acc, n):
    with pytest.raises(ValueError, match="accuracy in"):
        binomial_half_width(acc, n)
