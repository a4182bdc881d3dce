"""The comparison rule on its own: figures computed, tolerance applied, failures named."""

import numpy as np
import pytest

from onnxport.flow.metrics import compare_output
from onnxport.records import Tolerance


def test_identical_outputs_pass_with_zero_error():
    a = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    result = compare_output("y", a, a.copy(), Tolerance())
    assert result.passed and result.max_abs == 0 and result.cosine == pytest.approx(1.0)
    assert result.argmax_agreement == 1.0


def test_rule_is_atol_plus_rtol_times_source():
    expected = np.array([1.0, 100.0], dtype=np.float32)
    tol = Tolerance(atol=1e-3, rtol=1e-2)
    within = expected + np.array([1e-3, 1.0])  # 1.0 <= 1e-3 + 1e-2 * 100
    beyond = expected + np.array([0.02, 0.0])  # 0.02 > 1e-3 + 1e-2 * 1
    assert compare_output("y", within, expected, tol).passed
    failed = compare_output("y", beyond, expected, tol)
    assert not failed.passed and failed.mismatched == 1
    assert "1 of 2 values differ" in failed.problem
    assert failed.max_abs == pytest.approx(0.02, rel=1e-3)


def test_shape_mismatch_fails_and_says_both_shapes():
    result = compare_output("y", np.zeros((2, 3)), np.zeros((3, 3)), Tolerance())
    assert not result.passed
    assert "[2, 3]" in result.problem and "[3, 3]" in result.problem


def test_nan_only_where_the_source_has_nan():
    expected = np.array([np.nan, 1.0])
    assert compare_output("y", np.array([np.nan, 1.0]), expected, Tolerance()).passed
    result = compare_output("y", np.array([np.nan, np.nan]), expected, Tolerance())
    assert not result.passed and "NaN" in result.problem


def test_optional_floors_cosine_and_argmax():
    expected = np.array([[0.0, 1.0], [1.0, 0.0]])
    swapped = np.array([[1.0, 0.0], [1.0, 0.0]])
    loose = Tolerance(atol=10, rtol=0, min_argmax_agreement=1.0)
    result = compare_output("logits", swapped, expected, loose, classifier=True)
    assert result.argmax_agreement == 0.5 and not result.passed
    assert "argmax agrees on 50.0%" in result.problem
    assert compare_output("logits", swapped, expected, Tolerance(atol=10)).passed
    not_declared = compare_output("logits", swapped, expected, loose, classifier=False)
    assert not_declared.passed and not_declared.argmax_agreement == 0.5
    cosine = compare_output("logits", swapped, expected, Tolerance(atol=10, min_cosine=0.99))
    assert not cosine.passed and "cosine" in cosine.problem


def test_argmax_only_for_class_shaped_outputs():
    assert compare_output("y", np.ones(4), np.ones(4), Tolerance()).argmax_agreement is None


def test_int8_style_budget_relative_to_the_output_range():
    expected = np.linspace(0, 10, 50)
    budget = Tolerance(atol=float("inf"), rtol=0, max_abs_of_range=0.05)
    assert compare_output("y", expected + 0.4, expected, budget).passed  # 0.4 < 0.5
    result = compare_output("y", expected + 0.6, expected, budget)
    assert not result.passed and "0.05 x the source's range 10" in result.problem
