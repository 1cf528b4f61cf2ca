"""Auto-checked exercises: a clear pass or fail with a hint, never a crash.

An exercise is an id, the learner's answer, what it should match (a value
with a tolerance, a shape, or a test function) and a hint. Pass the answer as
a function when it is code the learner writes, so an error inside it, or a
loop that never ends, is reported as a failed exercise instead of stopping
the notebook.

Example:
    >>> check("01.1", lambda: tanh_backward(0.5), expected=0.7864477, hint="d tanh(x)/dx = 1 - tanh(x)**2")
    [PASS] Exercise 01.1 passed.

Whatever the answer is (a size-1 array, a tensor on a GPU, NaN, strings, a
ragged list, a dict, None, a generator, a DataFrame...), ``check`` prints a
pass or a fail with a reason and returns; it raises only in strict mode.

Set ``OML_STRICT_CHECKS=1`` (the test suite does) to turn a failure into an
``ExerciseFailed`` error; set ``OML_CHECK_LOG=path`` to append each result as
a JSON line; set ``OML_CHECK_TIMEOUT=seconds`` to change how long a learner's
function may run (default 120 s).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from labutils.language import language

STRICT_ENV_VAR = "OML_STRICT_CHECKS"
LOG_ENV_VAR = "OML_CHECK_LOG"
TIMEOUT_ENV_VAR = "OML_CHECK_TIMEOUT"
TIME_LIMIT_S = 120.0
# Marks every common font has (an emoji tick renders as an empty box without an emoji font).
PASS_MARK, FAIL_MARK = "[PASS]", "[FAIL]"
# check()'s own words per edition (labutils.language decides which); the marks stay, so every
# reader of saved outputs (course/notebooks.py FAIL_MARKS, the grader) parses both.
WORDS = {
    "en": {"passed": "{mark} Exercise {id} passed.",
           "failed": "{mark} Exercise {id} not passed yet: {reason}", "hint": "   Hint: {hint}"},
    "zh": {"passed": "{mark} 练习 {id} 通过。", "failed": "{mark} 练习 {id} 未通过：{reason}",
           "hint": "   提示：{hint}"},
}
MAX_ITEMS = 100_000  # a generator answer is read up to this many items
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


class _Failed(Exception):
    """Internal: the answer does not match; the message says why."""


def _short(value: Any, limit: int = 80) -> str:
    """A repr that never raises and never floods the output."""
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__} object>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _time_limit() -> float:
    try:
        return max(0.01, float(os.environ.get(TIMEOUT_ENV_VAR, TIME_LIMIT_S)))
    except ValueError:
        return TIME_LIMIT_S


def _run_limited(fn: Callable[[], Any], what: str) -> Any:
    """Call ``fn`` in a worker thread, give up after the time limit. Errors come back as ``_Failed``.

    A thread (not a signal) works in a notebook kernel and off the main thread. A function that never
    returns keeps running in the background: the message says so.
    """
    outcome: dict[str, Any] = {}
    torch = sys.modules.get("torch")
    grad_enabled = torch.is_grad_enabled() if torch is not None else None

    def work() -> None:
        try:
            if torch is not None:
                torch.set_grad_enabled(grad_enabled)  # grad mode is per thread: keep the caller's
            value = fn()
            if isinstance(value, Iterator) and not hasattr(value, "shape"):
                items = list(itertools.islice(value, MAX_ITEMS + 1))
                if len(items) > MAX_ITEMS:
                    raise _Failed(f"{what} gave a generator with more than {MAX_ITEMS:,} items")
                value = items
            outcome["value"] = value
        except BaseException as error:  # noqa: BLE001 - anything the learner's code does is reported
            outcome["error"] = error

    limit = _time_limit()
    worker = threading.Thread(target=work, name="oml-check", daemon=True)
    worker.start()
    try:
        worker.join(limit)
    except KeyboardInterrupt:  # the learner pressed stop: stop their code too, then stop as asked
        _stop(worker)
        raise
    if worker.is_alive():
        stopped = _stop(worker)
        raise _Failed(
            f"{what} did not finish within {limit:g} s (an endless loop?)"
            + ("" if stopped else ". It is still running in the background, inside a long operation: "
               "if the notebook gets slow, restart the kernel")
        )
    if "error" in outcome:
        error = outcome["error"]
        if isinstance(error, _Failed):
            raise error
        if isinstance(error, NotImplementedError):
            raise _Failed("not implemented yet: replace `raise NotImplementedError` with your code")
        raise _Failed(f"{what} raised {type(error).__name__}: {_short(str(error), 200)}")
    return outcome.get("value")


class _Stopped(BaseException):
    """Raised inside a learner's function that ran past the time limit, to end it."""


def _stop(worker: threading.Thread, wait: float = 1.0) -> bool:
    """Ask ``worker`` to stop (an exception raised in it at its next Python line); True once it has."""
    try:
        import ctypes

        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(worker.ident), ctypes.py_object(_Stopped))
    except Exception:  # not CPython: the thread runs on in the background
        return False
    worker.join(wait)
    return not worker.is_alive()


def _plain(value: Any) -> Any:
    """Tensors and DataFrames as NumPy arrays (on the CPU, in a dtype NumPy has); others unchanged."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, on any device, any dtype
        tensor = value.detach()
        if getattr(tensor, "is_sparse", False):
            tensor = tensor.to_dense()
        if tensor.is_complex():
            tensor = tensor.to(dtype=__import__("torch").complex128)
        elif tensor.is_floating_point():
            tensor = tensor.double()
        value = tensor.cpu().numpy()
    elif not isinstance(value, np.ndarray) and hasattr(value, "to_numpy"):  # pandas DataFrame / Series
        value = value.to_numpy()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _deep_plain(value: Any) -> Any:
    """``_plain`` applied inside lists and tuples too (a list of tensors becomes a list of numbers)."""
    value = _plain(value)
    if isinstance(value, (list, tuple)):
        return [_deep_plain(v) for v in value]
    return value


def _is_numeric(value: Any) -> bool:
    if hasattr(value, "detach"):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "biufc"
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, float, complex, np.number)):
        return True
    if isinstance(value, (list, tuple)) and value:
        return all(_is_numeric(v) for v in value)
    return False


def _numbers(value: Any, what: str) -> np.ndarray:
    """``value`` as an array of numbers, or ``_Failed`` saying why it is not one."""
    if isinstance(value, (str, bytes, Mapping)) or value is None:
        raise _Failed(f"expected a number or array, got {type(value).__name__}: {_short(value)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            array = np.asarray(_deep_plain(value))
    except ValueError:
        raise _Failed(f"{what} is a ragged list (rows of different lengths), not an array") from None
    except Exception as error:
        kind = type(error).__name__
        raise _Failed(f"{what} could not be read as numbers ({kind}): {_short(value)}") from None
    if array.dtype.kind == "b":
        return array.astype(np.float64)
    if array.dtype.kind in "iuf":
        return array.astype(np.float64)
    if array.dtype.kind == "c":
        return array.astype(np.complex128)
    try:
        return array.astype(np.float64)
    except (TypeError, ValueError, OverflowError):
        try:
            return array.astype(np.complex128)
        except (TypeError, ValueError, OverflowError):
            raise _Failed(f"expected numbers, got {array.dtype} values: {_short(value)}") from None


def _fmt(x: complex | float) -> str:
    return f"{x:.6g}"


def _compare_numbers(answer: Any, expected: Any, atol: float, rtol: float, where: str) -> None:
    want = _numbers(expected, "the expected value")
    got = _numbers(answer, f"the answer{where}")
    if got.shape != want.shape:
        raise _Failed(f"shape{where} {tuple(got.shape)} should be {tuple(want.shape)}")
    with np.errstate(all="ignore"):
        if np.all(np.isfinite(want)) and not np.all(np.isfinite(got)):
            raise _Failed(f"the answer{where} contains inf or nan")
        if np.allclose(got, want, atol=atol, rtol=rtol, equal_nan=True):
            return
        if got.size == 1:
            raise _Failed(f"got {_fmt(got.reshape(-1)[0])}{where}, expected {_fmt(want.reshape(-1)[0])} "
                          f"(tolerance atol={atol:g}, rtol={rtol:g})")
        diff = np.abs(got - want)
        diff = diff[~np.isnan(diff)] if np.isnan(diff).any() else diff
        worst = float(np.max(diff)) if diff.size else math.nan
    raise _Failed(f"got{where} max abs difference {worst:.3g} (tolerance atol={atol:g}, rtol={rtol:g})")


def _equal(answer: Any, expected: Any) -> bool:
    """``answer == expected`` that copes with arrays, odd ``__eq__`` methods and errors."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = answer == expected
            if isinstance(result, (bool, np.bool_)):
                return bool(result)
        # an elementwise result (an array): equal only as whole objects of the same shape
        return bool(np.array_equal(np.asarray(answer, dtype=object), np.asarray(expected, dtype=object)))
    except Exception:
        return False


def _compare(answer: Any, expected: Any, atol: float, rtol: float, where: str = "") -> None:
    """Return when they match, else raise ``_Failed`` with a one-line reason."""
    answer, expected = _plain(answer), _plain(expected)
    if isinstance(expected, np.ndarray) and not _is_numeric(expected):  # strings, objects: item by item
        expected = expected.tolist()
    if isinstance(answer, np.ndarray) and not _is_numeric(answer):
        answer = answer.tolist()
    if isinstance(expected, bool):
        if not (isinstance(answer, (bool, int)) and answer == expected):
            raise _Failed(f"got {_short(answer)}{where}, expected {expected}")
        return
    if _is_numeric(expected):
        _compare_numbers(answer, expected, atol, rtol, where)
        return
    if isinstance(expected, Mapping):
        if not isinstance(answer, Mapping):
            raise _Failed(f"expected a dict{where}, got {type(answer).__name__}: {_short(answer)}")
        missing = [k for k in expected if k not in answer]
        extra = [k for k in answer if k not in expected]
        if missing or extra:
            raise _Failed(f"keys{where} differ: missing {_short(missing)}, unexpected {_short(extra)}")
        for key in expected:
            _compare(answer[key], expected[key], atol, rtol, f"{where}[{key!r}]")
        return
    if isinstance(expected, (list, tuple)) and not isinstance(answer, (str, bytes, Mapping)):
        if isinstance(answer, np.ndarray):
            answer = answer.tolist()
        if isinstance(answer, (list, tuple)):
            if len(answer) != len(expected):
                raise _Failed(f"got {len(answer)} items{where}, expected {len(expected)}")
            for index, (a, e) in enumerate(zip(answer, expected)):
                _compare(a, e, atol, rtol, f"{where}[{index}]")
            return
    if not _equal(answer, expected):
        raise _Failed(f"got {_short(answer)}{where}, expected {_short(expected)}")


def _shape_of(answer: Any) -> tuple:
    shape = getattr(answer, "shape", None)
    if shape is not None and not callable(shape):
        try:
            return tuple(int(n) for n in shape)
        except Exception:
            pass
    if isinstance(answer, (str, bytes, Mapping)) or answer is None:
        raise _Failed(f"expected an array, got {type(answer).__name__}: {_short(answer)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return tuple(np.shape(_deep_plain(answer)))
    except ValueError:
        raise _Failed("the answer is a ragged list (rows of different lengths), so it has no shape") from None


def _want_shape(shape: Any) -> tuple:
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(n) for n in shape)


def _evaluate(
    answer: Any, expected: Any, atol: float, rtol: float, shape: tuple | None, test: Callable | None
) -> str | None:
    try:
        if callable(answer) and not hasattr(answer, "shape"):
            answer = _run_limited(answer, "your code")
        elif isinstance(answer, Iterator) and not hasattr(answer, "shape"):
            answer = _run_limited(lambda: answer, "your answer")
        if answer is None:
            return "the answer is None: did you forget to `return` it?"
        if shape is not None:
            got, want = _shape_of(answer), _want_shape(shape)
            if got != want:
                return f"shape {got} should be {want}"
        if expected is not _MISSING:
            _compare(answer, expected, atol, rtol)
        if test is not None:
            ok = _run_test(test, answer)
            if ok is not None and ok is not True and not _truthy(ok):
                return "the answer did not pass the test"
    except _Failed as failure:
        return str(failure)
    except Exception as error:  # a case the checker did not foresee: still a readable fail, never a crash
        return f"the answer could not be checked ({type(error).__name__}: {_short(str(error), 200)})"
    return None


def _run_test(test: Callable, answer: Any) -> Any:
    outcome: dict[str, Any] = {}

    def call() -> Any:
        try:
            outcome["value"] = test(answer)
        except AssertionError as error:
            outcome["assertion"] = str(error) or "the answer did not pass the test"

    _run_limited(call, "checking the answer")
    if "assertion" in outcome:
        raise _Failed(_short(outcome["assertion"], 300))
    return outcome.get("value")


def _truthy(value: Any) -> bool:
    try:
        return bool(value)
    except Exception:
        raise _Failed(f"the test returned {_short(value)} instead of True or False") from None


def _say(text: str) -> None:
    try:
        print(text)
    except UnicodeEncodeError:  # a console that cannot show the characters in the reason
        encoding = getattr(sys.stdout, "encoding", None) or "ascii"
        print(text.encode(encoding, "backslashreplace").decode(encoding, "replace"))
    except Exception:
        pass


def _record_progress(exercise_id: str, passed: bool, reason: str | None) -> None:
    """In a learner's workspace, note the result on their progress page (labutils.progress); never raises."""
    try:
        from labutils.progress import record

        record(exercise_id, passed, reason)
    except Exception:  # noqa: BLE001, S110 -- progress is a convenience, the check's result is what counts
        pass


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

    ``answer`` is a value or a zero-argument function returning it (run with a
    time limit). It must match ``expected`` (numbers/arrays/tensors within
    ``atol``/``rtol``, lists and dicts item by item, anything else with
    ``==``), have ``shape``, and make ``test(answer)`` return something other
    than False without raising AssertionError.
    """
    if expected is _MISSING and shape is None and test is None:
        raise ValueError(f"check({exercise_id!r}, ...) needs expected=, shape= or test= to check against")
    reason = _evaluate(answer, expected, atol, rtol, shape, test)
    passed = reason is None
    words = WORDS.get(language(), WORDS["en"])
    if passed:
        _say(words["passed"].format(mark=PASS_MARK, id=exercise_id))
    else:
        _say(words["failed"].format(mark=FAIL_MARK, id=exercise_id, reason=reason))
        if hint:
            _say(words["hint"].format(hint=hint))
    log_path = os.environ.get(LOG_ENV_VAR)
    if log_path:
        try:
            with open(log_path, "a", encoding="utf-8") as log:
                row = {"id": exercise_id, "passed": passed, "reason": reason}
                log.write(json.dumps(row, default=str) + "\n")
        except OSError as error:
            _say(f"   (could not append to {LOG_ENV_VAR}={log_path}: {error})")
    _record_progress(exercise_id, passed, reason)
    if strict is None:
        strict = os.environ.get(STRICT_ENV_VAR, "0") == "1"
    if strict and not passed:
        raise ExerciseFailed(f"Exercise {exercise_id}: {reason}")
    return CheckResult(exercise_id, passed, reason)
