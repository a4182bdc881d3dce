"""The comparison rule on its own: figures computed, tolerance applied, failures named."""

import numpy as np
import pytest

from onnxport.tolerance import compare_output
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


def test_nan_only_where_the_source_has_nan_and_only_when_allowed():
    expected = np.array([np.nan, 1.0])
    same = compare_output("y", np.array([np.nan, 1.0]), expected, Tolerance())
    assert not same.passed and "--allow-nonfinite" in same.problem  # proves nothing
    allowed = compare_output("y", np.array([np.nan, 1.0]), expected, Tolerance(),
                             allow_nonfinite=True)
    assert allowed.passed and allowed.nonfinite == 1
    result = compare_output("y", np.array([np.nan, np.nan]), expected, Tolerance(),
                            allow_nonfinite=True)
    assert not result.passed and "NaN" in result.problem


def test_an_all_nan_model_never_passes_by_default():
    """Both all-NaN used to pass with max abs 0 and cosine 1."""
    nan = np.full((2, 3), np.nan)
    result = compare_output("y", nan, nan, Tolerance())
    assert not result.passed and "6 NaN/inf values" in result.problem
    finite = compare_output("y", nan, np.zeros((2, 3)), Tolerance())
    assert not finite.passed and "6 NaN/inf values where the source has" in finite.problem


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


def test_worst_by_output_is_the_worst_batch_not_the_last_failing_one():
    from onnxport.conversion import BatchResult, Verification

    expected = np.linspace(-1, 1, 12).reshape(3, 4)
    budget = Tolerance(atol=1e-3, rtol=0)
    far = compare_output("y", expected + 0.5, expected, budget)
    near = compare_output("y", expected + 0.01, expected, budget)
    fine = compare_output("y", expected, expected, budget)
    verification = Verification(
        passed=False, checks=[], latency_ms={}, providers=[],
        batches=[BatchResult("batch 1", {}, [far]), BatchResult("batch 3", {}, [near]),
                 BatchResult("batch 5", {}, [fine])])
    assert verification.worst_by_output()["y"] is far


def test_budget_precedence_is_one_rule():
    from onnxport.conversion import VerificationSettings
    from onnxport.tolerance import budget_for

    target, user = Tolerance(atol=1e-5), Tolerance(atol=1e-3)
    mine, int8 = Tolerance(atol=1e-2), Tolerance(atol=float("inf"), min_cosine=0.99)
    settings = VerificationSettings(tolerance=user, output_tolerances={"y": mine})
    assert budget_for("y", target=target, settings=settings) is mine
    assert budget_for("z", target=target, settings=settings) is user
    assert budget_for("z", target=target, settings=VerificationSettings()) is target
    assert budget_for("y", target=target, settings=settings, stage_budget=int8) is int8


def test_budgets_round_trip_through_json_and_bad_ones_are_bad_input():
    import json

    from onnxport.artifact.writing import strict_json
    from onnxport.errors import BadInput
    from onnxport.tolerance import from_json, to_json

    int8 = Tolerance(atol=float("inf"), rtol=0.0, min_cosine=0.99, max_abs_of_range=0.05)
    stored = json.loads(json.dumps(strict_json(to_json(int8))))
    assert stored["atol"] == "inf" and from_json(stored) == int8
    with pytest.raises(BadInput, match="tolerance field atol must be a number"):
        from_json({"atol": [1]})
    with pytest.raises(BadInput, match="a tolerance must be an object"):
        from_json({"atoll": 1})


def test_the_conformance_kit_applies_the_pipelines_rule(tmp_path):
    """A pass that scales its model's output by 1.5 keeps the cosine at 1 but moves the
    values by half their range: the kit's old private check let it through with an INT8
    style budget; the pipeline's rule (max_abs_of_range) does not."""
    import onnx
    from onnx import helper, numpy_helper

    from onnxport.host import hookimpl
    from onnxport.records import Pass, PassOutcome
    from onnxport.testing import check_pass

    budget = Tolerance(atol=float("inf"), rtol=0.0, min_cosine=0.99, max_abs_of_range=0.05)

    def scale(context):
        model = onnx.load(str(context.input_path))
        graph = model.graph
        last = graph.output[0].name
        for node in graph.node:
            node.output[:] = [f"{o}_raw" if o == last else o for o in node.output]
        graph.initializer.append(numpy_helper.from_array(np.array(1.5, np.float32), "k"))
        graph.node.append(helper.make_node("Mul", [f"{last}_raw", "k"], [last]))
        onnx.save(model, str(context.output_path))
        return PassOutcome(applied=True, path=context.output_path, tolerance=budget)

    class Scaling:
        @hookimpl
        def onnxport_register_passes(self, register):
            register(Pass(name="scale", description="multiplies the output by 1.5",
                          run=scale))

    report = check_pass(Scaling(), work_dir=tmp_path)
    assert "verification" in report.rules(), report
    assert "above 0.05 x the source's range" in str(report)
