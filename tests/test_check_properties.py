"""Property-based: whatever a learner returns, against any kind of expectation, check() returns a result
with a readable message and (outside strict mode) never raises.

The example count is printed with ``pytest tests/test_check_properties.py --hypothesis-show-statistics``.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from labutils.check import CheckResult, check

EXAMPLES = 300  # per property

floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), floats, st.complex_numbers(allow_nan=True),
    st.text(max_size=5), st.binary(max_size=5),
)
arrays = hnp.arrays(
    dtype=st.one_of(hnp.floating_dtypes(), hnp.integer_dtypes(), hnp.boolean_dtypes(),
                    hnp.complex_number_dtypes(), hnp.unicode_string_dtypes(max_len=3)),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3),
)
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.bool]


@st.composite
def tensors(draw):
    shape = draw(st.lists(st.integers(0, 3), max_size=3))
    dtype = draw(st.sampled_from(DTYPES))
    tensor = (torch.randn(shape) * draw(st.sampled_from([1.0, 1e30, float("nan")]))).to(dtype)
    return tensor.requires_grad_() if tensor.is_floating_point() and draw(st.booleans()) else tensor


def _odd(children):
    return st.one_of(
        st.lists(children, max_size=4),  # ragged and mixed lists included
        st.tuples(children, children),
        st.dictionaries(st.text(max_size=2), children, max_size=3),
    )


leaves = st.one_of(scalars, arrays, tensors())
answers = st.recursive(leaves, _odd, max_leaves=8)


@st.composite
def wrapped_answers(draw):
    """The answer as a value, a function returning it, a generator, a function that raises, a DataFrame."""
    value = draw(answers)
    kind = draw(st.sampled_from(["value", "function", "generator", "raises", "not implemented", "frame"]))
    if kind == "function":
        return lambda: value
    if kind == "generator":
        return iter(value) if isinstance(value, (list, tuple)) else (v for v in [value])
    if kind == "raises":
        return lambda: value[10**6]  # IndexError, TypeError, KeyError...
    if kind == "not implemented":
        def stub():
            raise NotImplementedError
        return stub
    if kind == "frame":
        import warnings

        import pandas as pd

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return pd.DataFrame(value)
        except Exception:
            return value
    return value


def _tests():
    def asserting(x):
        assert x is not None, "no answer"

    return st.sampled_from([lambda x: True, lambda x: False, lambda x: x, asserting, lambda x: 1 / 0,
                            lambda x: len(x) > 0, lambda x: np.asarray(x) > 0])


def _assert_readable(result):
    assert isinstance(result, CheckResult)
    assert isinstance(result.passed, bool) and bool(result) == result.passed
    if not result.passed:
        assert isinstance(result.reason, str) and result.reason.strip()
        assert len(result.reason) < 1000


common = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(autouse=True)
def lenient(monkeypatch):
    monkeypatch.delenv("OML_STRICT_CHECKS", raising=False)
    monkeypatch.delenv("OML_CHECK_LOG", raising=False)


@common
@given(answer=wrapped_answers(), expected=answers, atol=st.sampled_from([0.0, 1e-6, 1.0, math.inf]))
def test_any_answer_against_any_expected_value(answer, expected, atol):
    _assert_readable(check("p.1", answer, expected=expected, atol=atol, rtol=1e-5))


@common
@given(answer=wrapped_answers(), shape=st.lists(st.integers(0, 3), max_size=3).map(tuple))
def test_any_answer_against_a_shape(answer, shape):
    _assert_readable(check("p.2", answer, shape=shape))


@common
@given(answer=wrapped_answers(), test=_tests())
def test_any_answer_against_a_test_function(answer, test):
    _assert_readable(check("p.3", answer, test=test))


@common
@given(answer=wrapped_answers(), expected=answers, shape=st.lists(st.integers(0, 3), max_size=3).map(tuple),
       test=_tests())
def test_any_answer_against_everything_at_once(answer, expected, shape, test):
    _assert_readable(check("p.4", answer, expected=expected, shape=shape, test=test))


@common
@given(value=hnp.arrays(np.float64, hnp.array_shapes(max_dims=3, max_side=4),
                        elements=st.floats(-1e6, 1e6)))
def test_a_right_numeric_answer_passes_in_every_container(value):
    expected = value.tolist()
    for answer in (value, torch.from_numpy(value), value.astype(np.float32).astype(np.float64), expected):
        assert check("p.5", answer, expected=expected, atol=1e-6, rtol=1e-5), answer
    assert check("p.6", lambda: torch.from_numpy(value), expected=value)
