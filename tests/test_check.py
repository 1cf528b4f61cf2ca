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
    assert "✅ Exercise t.1 passed." in capsys.readouterr().out


def test_fail_prints_reason_and_hint(capsys):
    result = check("t.2", 0.7, expected=0.5, hint="halve it")
    assert not result and "expected 0.5" in result.reason
    out = capsys.readouterr().out
    assert "❌ Exercise t.2 not passed yet: got 0.7, expected 0.5" in out
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
