"""Auto-checked exercises: a clear pass or fail with a hint, never a crash.

An exercise is an id, the learner's answer, what it should match (a value
with a tolerance, a shape, or a test function) and a hint. Pass the answer as
a function when it is code the learner writes, so an error inside it is
reported as a failed exercise instead of stopping the notebook.

Example:
    >>> check("01.1", lambda: tanh_backward(0.5), expected=0.7864477, hint="d tanh(x)/dx = 1 - tanh(x)**2")
    ✅ Exercise 01.1 passed.

Set ``OML_STRICT_CHECKS=1`` (the test suite does) to turn a failure into an
``ExerciseFailed`` error; set ``OML_CHECK_LOG=path`` to append each result as
a JSON line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np

STRICT_ENV_VAR = "OML_STRICT_CHECKS"
LOG_ENV_VAR = "OML_CHECK_LOG"
_MISSING = object()


class ExerciseFailed(AssertionError):
    """Raised for a failed exercise in strict mode."""


class CheckResult:
    """Truthy when the exercise passed. Shows nothing in a notebook: ``check`` already printed."""

    def __init__(self, exercise_id: str, passed: bool, reason: str | None):
        self.exercise_id, self.passed, self.reason = exercise_id, passed, reason

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"CheckResult({self.exercise_id!r}, passed={self.passed})"

    def _ipython_display_(self) -> None:
        pass


def _to_array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _is_numeric(value: Any) -> bool:
    if hasattr(value, "detach") or isinstance(value, np.ndarray):
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float, np.number)):
        return True
    if isinstance(value, (list, tuple)) and value:
        return all(_is_numeric(v) for v in value)
    return False


def _compare(answer: Any, expected: Any, atol: float, rtol: float) -> str | None:
    """None when they match, else a one-line reason."""
    if _is_numeric(expected):
        if not _is_numeric(answer):
            return f"expected a number or array, got {type(answer).__name__}: {answer!r:.80}"
        got, want = _to_array(answer), _to_array(expected)
        if got.shape != want.shape:
            return f"shape {tuple(got.shape)} should be {tuple(want.shape)}"
        if not np.all(np.isfinite(got)):
            return "the answer contains inf or nan"
        if not np.allclose(got, want, atol=atol, rtol=rtol):
            diff = float(np.max(np.abs(got - want)))
            shown = f"{float(got):.6g}, expected {float(want):.6g}" if got.size == 1 else f"max abs difference {diff:.3g}"
            return f"got {shown} (tolerance atol={atol:g}, rtol={rtol:g})"
        return None
    if answer != expected:
        return f"got {answer!r:.80}, expected {expected!r:.80}"
    return None


def _evaluate(
    answer: Any, expected: Any, atol: float, rtol: float, shape: tuple | None, test: Callable | None
) -> str | None:
    if callable(answer):
        try:
            answer = answer()
        except NotImplementedError:
            return "not implemented yet: replace `raise NotImplementedError` with your code"
        except Exception as error:  # the learner's code failed: report, don't crash
            return f"your code raised {type(error).__name__}: {error}"
    if answer is None:
        return "the answer is None: did you forget to `return` it?"
    if shape is not None:
        got = tuple(getattr(answer, "shape", np.shape(answer)))
        if got != tuple(shape):
            return f"shape {got} should be {tuple(shape)}"
    if expected is not _MISSING:
        reason = _compare(answer, expected, atol, rtol)
        if reason:
            return reason
    if test is not None:
        try:
            ok = test(answer)
        except AssertionError as error:
            return str(error) or "the answer did not pass the test"
        except Exception as error:
            return f"checking the answer raised {type(error).__name__}: {error}"
        if ok is False:
            return "the answer did not pass the test"
    return None


def check(
    exercise_id: str,
    answer: Any,
    expected: Any = _MISSING,
    *,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    shape: tuple | None = None,
    test: Callable[[Any], bool | None] | None = None,
    hint: str = "",
    strict: bool | None = None,
) -> CheckResult:
    """Print whether an exercise passes; the result is truthy when it does.

    ``answer`` is a value or a zero-argument function returning it. It must
    match ``expected`` (numbers/arrays/tensors within ``atol``/``rtol``,
    anything else with ``==``), have ``shape``, and make ``test(answer)``
    return something other than False without raising AssertionError.
    """
    if expected is _MISSING and shape is None and test is None:
        raise ValueError(f"check({exercise_id!r}, ...) needs expected=, shape= or test= to check against")
    reason = _evaluate(answer, expected, atol, rtol, shape, test)
    passed = reason is None
    if passed:
        print(f"✅ Exercise {exercise_id} passed.")
    else:
        print(f"❌ Exercise {exercise_id} not passed yet: {reason}")
        if hint:
            print(f"   Hint: {hint}")
    log_path = os.environ.get(LOG_ENV_VAR)
    if log_path:
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps({"id": exercise_id, "passed": passed, "reason": reason}) + "\n")
    if strict is None:
        strict = os.environ.get(STRICT_ENV_VAR, "0") == "1"
    if strict and not passed:
        raise ExerciseFailed(f"Exercise {exercise_id}: {reason}")
    return CheckResult(exercise_id, passed, reason)
