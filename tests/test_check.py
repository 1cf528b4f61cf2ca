import json

import numpy as np
import pytest
import torch

from labutils.check import ExerciseFailed, check


@pytest.fixture(autouse=True)
def lenient(monkeypatch):
    monkeypatch.delenv("OML_STRICT_CHECKS", raising=False)
    monkeypatch.delenv("OML_CHECK_LOG", raising=False)


def test_pass_prints_a_tick(capsys):
    result = check("t.1", 0.5 + 1e-9, expected=0.5)
    assert result and result.passed and result.reason is None
    assert "[PASS] Exercise t.1 passed." in capsys.readouterr().out


def test_fail_prints_reason_and_hint(capsys):
    result = check("t.2", 0.7, expected=0.5, hint="halve it")
    assert not result and "expected 0.5" in result.reason
    out = capsys.readouterr().out
    assert "[FAIL] Exercise t.2 not passed yet: got 0.7, expected 0.5" in out
    assert "Hint: halve it" in out


def test_tensors_arrays_and_shapes():
    assert check("t.3", torch.ones(2, 3), expected=np.ones((2, 3)))
    assert not check("t.4", torch.ones(3, 2), expected=np.ones((2, 3)))
    assert check("t.5", torch.zeros(4, 5), shape=(4, 5))
    assert not check("t.6", torch.zeros(4, 5), shape=(5, 4))
    assert not check("t.7", torch.tensor([float("nan")]), expected=[0.0])


def test_functions_are_called_and_their_errors_reported(capsys):
    def stub():
        raise NotImplementedError

    assert not check("t.8", stub, expected=1)
    assert "not implemented yet" in capsys.readouterr().out
    assert not check("t.9", lambda: 1 / 0, expected=1)
    assert "ZeroDivisionError" in capsys.readouterr().out
    assert not check("t.10", lambda: None, expected=1)
    assert "forget to `return`" in capsys.readouterr().out


def test_custom_test_function():
    def is_sorted(xs):
        assert xs == sorted(xs), "the list is not sorted"

    assert check("t.11", [1, 2, 3], test=is_sorted)
    assert not check("t.12", [3, 1], test=is_sorted)
    assert not check("t.13", 5, test=lambda x: x < 3)


def test_non_numeric_answers_compare_with_equality():
    assert check("t.14", ["[CLS]", "hi"], expected=["[CLS]", "hi"])
    assert not check("t.15", "text", expected=3)


def test_strict_mode_raises(monkeypatch):
    monkeypatch.setenv("OML_STRICT_CHECKS", "1")
    with pytest.raises(ExerciseFailed, match="t.16"):
        check("t.16", 1, expected=2)
    assert check("t.17", 2, expected=2)


def test_log_records_every_result(tmp_path, monkeypatch):
    log = tmp_path / "checks.jsonl"
    monkeypatch.setenv("OML_CHECK_LOG", str(log))
    check("a", 1, expected=1)
    check("b", 1, expected=2)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["id"], r["passed"]) for r in rows] == [("a", True), ("b", False)]


def test_a_check_needs_something_to_check_against():
    with pytest.raises(ValueError, match="needs expected="):
        check("t.18", 1)


# --- every odd answer a learner can give: a readable pass or fail, never a crash ---------------------------


def _fails_readably(result, *words):
    assert not result and isinstance(result.reason, str) and result.reason, result
    for word in words:
        assert word in result.reason, result.reason


def test_marks_are_in_every_common_font(capsys):
    check("t.19", 1, expected=1)
    check("t.20", 1, expected=2)
    out = capsys.readouterr().out
    assert out.isascii(), out  # no emoji: they render as empty boxes without an emoji font
    assert "[PASS] Exercise t.19 passed." in out and "[FAIL] Exercise t.20 not passed yet" in out


@pytest.mark.parametrize("answer, expected", [
    (np.array([0.7]), [0.5]), (np.array([[0.7]]), [[0.5]]), (torch.tensor([0.7]), np.array([0.5])),
    ([[0.7]], torch.tensor([[0.5]])),
])
def test_a_wrong_size_one_answer_is_a_fail_not_a_type_error(answer, expected, monkeypatch):
    _fails_readably(check("t.21", answer, expected=expected), "got 0.7, expected 0.5")
    monkeypatch.setenv("OML_STRICT_CHECKS", "1")
    with pytest.raises(ExerciseFailed, match="got 0.7"):
        check("t.21", answer, expected=expected)


def test_size_one_and_zero_d_answers_that_are_right_pass():
    assert check("t.22", np.array([0.5]), expected=[0.5])
    assert check("t.23", torch.tensor(0.5), expected=0.5)
    assert check("t.24", np.float32(0.5), expected=0.5)


def test_tensors_of_another_dtype_or_with_grad_are_compared_by_value():
    assert check("t.25", torch.ones(3, dtype=torch.bfloat16), expected=np.ones(3))
    assert check("t.26", torch.ones(3, dtype=torch.float16, requires_grad=True) * 1, expected=[1, 1, 1])
    assert check("t.27", torch.tensor([1, 2]), expected=torch.tensor([1.0, 2.0]))
    assert check("t.28", [torch.tensor(1.0, requires_grad=True), torch.tensor(2.0)], expected=[1.0, 2.0])
    assert check("t.29", torch.tensor([1 + 2j]), expected=[1 + 2j])


def test_a_tensor_on_another_device_is_moved_before_comparing():
    meta = torch.ones(2, device="meta")  # a device the check cannot read: a readable fail, not a crash
    _fails_readably(check("t.30", meta, expected=[1.0, 1.0]))
    if torch.cuda.is_available():
        assert check("t.31", torch.ones(2, device="cuda"), expected=[1.0, 1.0])


def test_nan_and_inf():
    _fails_readably(check("t.32", float("nan"), expected=1.0), "inf or nan")
    _fails_readably(check("t.33", np.array([1.0, np.inf]), expected=[1.0, 2.0]), "inf or nan")
    assert check("t.34", [np.nan, np.inf], expected=[np.nan, np.inf])  # when they are the right answer
    _fails_readably(check("t.35", [1e308, -1e308], expected=[-1e308, 1e308]), "max abs difference")


def test_string_arrays_compare_with_lists_item_by_item():
    assert check("t.36", np.array(["[CLS]", "hi"]), expected=["[CLS]", "hi"])
    _fails_readably(check("t.37", np.array(["[CLS]", "ho"]), expected=["[CLS]", "hi"]), "[1]")
    _fails_readably(check("t.38", np.array(["a"]), expected=["a", "a"]), "got 1 items")
    assert check("t.39", ("a", "b"), expected=np.array(["a", "b"]))


def test_ragged_lists():
    _fails_readably(check("t.40", [[1, 2], [3]], expected=[[1, 2], [3, 4]]), "ragged")
    _fails_readably(check("t.41", [[1, 2], [3]], shape=(2, 2)), "ragged")
    _fails_readably(check("t.42", [1, None], expected=[1, 2]))


def test_dicts_none_generators_dataframes_and_exceptions():
    assert check("t.43", {"a": np.float64(1.0), "b": [1, 2]}, expected={"a": 1, "b": [1, 2]})
    _fails_readably(check("t.44", {"a": 1}, expected={"a": 1, "b": 2}), "missing")
    _fails_readably(check("t.45", {"a": 1}, expected=[1]))
    _fails_readably(check("t.46", None, expected=1), "None")
    assert check("t.47", (x * x for x in range(3)), expected=[0, 1, 4])
    assert check("t.48", lambda: (x for x in "ab"), expected=["a", "b"])
    _fails_readably(check("t.49", lambda: iter(int, 1), expected=[1]), "more than")  # endless generator
    pd = pytest.importorskip("pandas")
    assert check("t.50", pd.DataFrame({"x": [1.0, 2.0]}), expected=[[1.0], [2.0]])
    assert check("t.51", pd.Series([1, 2]), shape=(2,))
    _fails_readably(check("t.52", lambda: {}["missing"], expected=1), "KeyError")
    _fails_readably(check("t.53", lambda: exit(), expected=1), "SystemExit")


def test_answers_whose_repr_or_eq_misbehave():
    class Weird:
        def __repr__(self):
            raise RuntimeError("no repr")

        def __eq__(self, other):
            raise RuntimeError("no eq")

        __hash__ = object.__hash__

    _fails_readably(check("t.54", Weird(), expected="x"), "Weird")
    _fails_readably(check("t.55", Weird(), expected=1.0), "number")
    _fails_readably(check("t.56", Weird(), shape=(2,)))


def test_a_test_function_that_errors_returns_non_bools_or_calls_a_stub():
    _fails_readably(check("t.57", 1, test=lambda x: 1 / 0), "ZeroDivisionError")
    _fails_readably(check("t.58", 1, test=lambda x: np.array([True, False])), "instead of True or False")
    _fails_readably(check("t.59", 1, test=lambda x: np.bool_(False)), "did not pass")

    def stub():
        raise NotImplementedError

    _fails_readably(check("t.60", stub, test=lambda f: f()), "not implemented yet")


def test_a_function_that_never_returns_is_stopped_at_the_time_limit(monkeypatch, capsys):
    import threading
    import time

    monkeypatch.setenv("OML_CHECK_TIMEOUT", "0.3")
    stop = threading.Event()

    def endless():
        while not stop.is_set():
            time.sleep(0.01)

    start = time.perf_counter()
    result = check("t.61", endless, expected=1, hint="look at the loop condition")
    assert time.perf_counter() - start < 5
    _fails_readably(result, "did not finish within 0.3 s")
    assert "Hint: look at the loop condition" in capsys.readouterr().out
    _fails_readably(check("t.62", 1, test=lambda x: endless()), "checking the answer did not finish")
    stop.set()


def test_an_endless_python_loop_is_stopped_not_left_running(monkeypatch):
    import threading
    import time

    monkeypatch.setenv("OML_CHECK_TIMEOUT", "0.2")

    def endless():
        while True:
            pass

    _fails_readably(check("t.67", endless, expected=1), "did not finish within 0.2 s")
    time.sleep(0.5)
    assert not [t for t in threading.enumerate() if t.name == "oml-check"]  # it does not burn the CPU on


def test_the_check_works_off_the_main_thread():
    import threading

    results = []
    thread = threading.Thread(target=lambda: results.append(check("t.63", lambda: 2, expected=2)))
    thread.start()
    thread.join(10)
    assert results and results[0]


def test_grad_mode_of_the_caller_is_kept():
    with torch.no_grad():
        assert check("t.64", lambda: not torch.is_grad_enabled(), expected=True)
    assert check("t.65", lambda: torch.is_grad_enabled(), expected=True)


def test_an_unwritable_log_does_not_crash(monkeypatch, tmp_path):
    monkeypatch.setenv("OML_CHECK_LOG", str(tmp_path / "missing-folder" / "log.jsonl"))
    assert check("t.66", 1, expected=1)
