"""Metrics against numbers worked out by hand (see the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hcl.metrics import (
    METRIC_KEYS,
    aggregate_seeds,
    binary_metrics,
    format_metrics,
    mae,
    multiclass_acc,
    pearson_corr,
    sentiment_metrics,
    weighted_f1,
)

# Six samples; index 1 has label 0 (dropped by non0), index 2 predicts exactly 0.
PRED = np.array([-2.6, -0.4, 0.0, 0.6, 1.4, 2.9])
LABEL = np.array([-3.0, 0.0, 0.4, 1.0, -0.5, 2.4])


def test_six_samples_by_hand() -> None:
    m = sentiment_metrics(PRED, LABEL)
    assert list(m) == list(METRIC_KEYS)
    # |errors| = 0.4, 0.4, 0.4, 0.4, 1.9, 0.5 -> 4.0 / 6
    assert m["mae"] == pytest.approx(4.0 / 6)
    # Acc-7: pred -> -3, 0, 0, 1, 1, 3 ; label -> -3, 0, 0, 1, 0 (-0.5 rounds to even), 2
    # equal at 0, 1, 2, 3 -> 4/6
    assert m["acc7"] == pytest.approx(400 / 6)
    # Acc-5: clip to [-2, 2]: pred -> -2, 0, 0, 1, 1, 2 ; label -> -2, 0, 0, 1, 0, 2
    # only index 4 differs -> 5/6
    assert m["acc5"] == pytest.approx(500 / 6)
    # non0 drops index 1. truth>0: F T T F T ; pred>0: F F T T T (0.0 is not > 0)
    # right at 0, 3, 5 -> 3/5
    assert m["acc2_non0"] == pytest.approx(60.0)
    # class T (support 3): tp=2 (3,5), fp=1 (4), fn=1 (2) -> 4/6
    # class F (support 2): tp=1 (0), fp=1 (2), fn=1 (4) -> 2/4
    # weighted: (3*2/3 + 2*1/2) / 5 = 0.6
    assert m["f1_non0"] == pytest.approx(60.0)
    # has0 keeps all six. truth>=0: F T T T F T ; pred>=0: F F T T T T
    # right at 0, 2, 3, 5 -> 4/6
    assert m["acc2_has0"] == pytest.approx(400 / 6)
    # class T (support 4): tp=3, fp=1 (4), fn=1 (1) -> 6/8
    # class F (support 2): tp=1, fp=1 (1), fn=1 (4) -> 2/4
    # weighted: (4*0.75 + 2*0.5) / 6 = 4/6
    assert m["f1_has0"] == pytest.approx(400 / 6)
    assert m["corr"] == pytest.approx(np.corrcoef(PRED, LABEL)[0, 1])


def test_pearson_by_hand() -> None:
    # dp = -1.5 -.5 .5 1.5 ; dy = -3 -1 0 4 ; sum dp*dy = 11, sum dp^2 = 5, sum dy^2 = 26
    assert pearson_corr(np.array([1, 2, 3, 4.0]), np.array([2, 4, 5, 9.0])) == pytest.approx(
        11 / math.sqrt(130)
    )


def test_constant_prediction_corr_is_zero_not_nan() -> None:
    label = np.array([-1.0, 0.5, 2.0, 3.0])
    assert pearson_corr(np.full(4, 0.7), label) == 0.0
    assert pearson_corr(label, np.full(4, 1.0)) == 0.0
    assert pearson_corr(np.array([1.0]), np.array([2.0])) == 0.0
    m = sentiment_metrics(np.zeros(4), label)
    assert m["corr"] == 0.0
    assert all(math.isfinite(v) for v in m.values())


def test_weighted_f1_unbalanced_by_hand() -> None:
    # 8 positives, 2 negatives. 7 positives right, 1 positive called negative,
    # both negatives called positive.
    truth = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=bool)
    pred = np.array([1, 1, 1, 1, 1, 1, 1, 0, 1, 1], dtype=bool)
    # pos: tp=7 fp=2 fn=1 -> 14/17 ; neg: tp=0 -> 0 ; weighted = 8*(14/17)/10
    assert weighted_f1(truth, pred) == pytest.approx(112 / 170)
    # everything predicted positive: pos F1 = 2*2/(4+1) = 0.8, support 2 of 3
    assert weighted_f1(np.array([1, 1, 0]), np.array([1, 1, 1])) == pytest.approx(1.6 / 3)
    # class only in the prediction counts with zero support
    assert weighted_f1(np.array([1, 1]), np.array([1, 0])) == pytest.approx(2 / 3)


def test_weighted_f1_matches_sklearn_if_available() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(20):
        t = rng.random(37) < rng.uniform(0.1, 0.9)
        p = rng.random(37) < rng.uniform(0.1, 0.9)
        assert weighted_f1(t, p) == pytest.approx(sk.f1_score(t, p, average="weighted"))


def test_non0_drops_zero_labels_has0_keeps_them() -> None:
    # labels 0 with negative predictions: has0 counts them wrong, non0 ignores them
    pred = np.array([1.0, -1.0, -0.2, -0.3])
    label = np.array([2.0, -2.0, 0.0, 0.0])
    acc, f1 = binary_metrics(pred, label, "non0")
    assert (acc, f1) == (pytest.approx(100.0), pytest.approx(100.0))
    acc, f1 = binary_metrics(pred, label, "has0")
    assert acc == pytest.approx(50.0)
    # has0: truth T T(0) T(0) F... order: T F T T ; pred T F F F
    # T (support 3): tp=1 fp=0 fn=2 -> 2/4 ; F (support 1): tp=1 fp=2 fn=0 -> 2/4 -> 0.5
    assert f1 == pytest.approx(50.0)
    # prediction exactly 0 is negative for non0 and non-negative for has0
    assert binary_metrics(np.array([0.0]), np.array([1.0]), "non0")[0] == 0.0
    assert binary_metrics(np.array([0.0]), np.array([1.0]), "has0")[0] == 100.0


def test_all_zero_labels_non0_is_nan() -> None:
    m = sentiment_metrics(np.array([0.5, -0.5]), np.zeros(2))
    assert math.isnan(m["acc2_non0"]) and math.isnan(m["f1_non0"])
    assert m["acc2_has0"] == pytest.approx(50.0)


def test_multiclass_clip() -> None:
    # beyond the range both clip to the edge class
    assert multiclass_acc(np.array([5.0, -4.0]), np.array([3.0, -3.0]), 3) == 100.0
    assert multiclass_acc(np.array([2.6]), np.array([3.0]), 2) == 100.0
    assert multiclass_acc(np.array([2.6]), np.array([2.0]), 3) == 0.0


def test_input_errors() -> None:
    with pytest.raises(ValueError, match="same number"):
        mae(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="empty"):
        sentiment_metrics(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="NaN"):
        mae(np.array([np.nan]), np.array([0.0]))
    with pytest.raises(ValueError, match="convention"):
        binary_metrics(np.zeros(2), np.zeros(2), "bogus")


def test_aggregate_and_format() -> None:
    runs = [{"mae": 0.7, "acc7": 40.0}, {"mae": 0.8, "acc7": 44.0}, {"mae": 0.9, "acc7": 48.0}]
    agg = aggregate_seeds(runs)
    assert agg["mae"]["mean"] == pytest.approx(0.8)
    assert agg["mae"]["std"] == pytest.approx(0.1)  # ddof=1
    assert agg["acc7"]["std"] == pytest.approx(4.0)
    assert aggregate_seeds(runs[:1])["mae"] == {"mean": 0.7, "std": 0.0}
    with pytest.raises(ValueError, match="empty"):
        aggregate_seeds([])
    with pytest.raises(ValueError, match="keys"):
        aggregate_seeds([{"mae": 1.0}, {"corr": 1.0}])

    line = format_metrics(sentiment_metrics(PRED, LABEL))
    assert "\n" not in line
    assert line.startswith("MAE 0.667 | Corr ")
    assert "Acc-7 66.67" in line and "F1(non0) 60.00" in line
    assert format_metrics(agg) == "MAE 0.800±0.100 | Acc-7 44.00±4.00"


def test_column_vectors_and_lists_are_flattened():
    """Model outputs often come as (N, 1): they score like (N,)."""
    col = PRED.reshape(-1, 1)
    assert sentiment_metrics(col, LABEL) == sentiment_metrics(PRED, LABEL)
    assert sentiment_metrics(PRED, LABEL.reshape(-1, 1)) == sentiment_metrics(PRED, LABEL)
    assert mae(col, LABEL.reshape(1, -1)) == pytest.approx(4.0 / 6)
    assert weighted_f1(np.array([[1], [0]]), np.array([1, 1])) == pytest.approx(1 / 3)


def test_corr_is_exactly_within_minus_one_one():
    # y = 3.5 x + 0.3: the raw quotient is 1.0000000000000002 in float64
    x = np.array([0.09, -0.74, -0.92])
    assert pearson_corr(x, 3.5 * x + 0.3) == 1.0
    assert pearson_corr(x, -(3.5 * x + 0.3)) == -1.0
    assert pearson_corr(np.array([1.0, 2.0]), np.array([3.0, 5.0])) == 1.0  # two samples are enough
    assert pearson_corr(np.array([1.0, 2.0]), np.array([5.0, 3.0])) == -1.0


def test_acc7_clips_at_three():
    m = sentiment_metrics(np.array([3.6, -3.7, 2.4]), np.array([3.0, -3.0, 2.0]))
    assert m["acc7"] == 100.0  # 3.6 and 3 are both "strongly positive"
    assert m["acc5"] == 100.0


def test_weighted_f1_edges():
    assert weighted_f1(np.array([True]), np.array([True])) == 1.0
    assert weighted_f1(np.array([True]), np.array([False])) == 0.0
    assert math.isnan(weighted_f1(np.array([], bool), np.array([], bool)))
    with pytest.raises(ValueError, match=r"^y_true and y_pred differ in length: 2 vs 3$"):
        weighted_f1(np.zeros(2), np.zeros(3))


def test_error_messages_say_what_is_wrong():
    with pytest.raises(ValueError, match=r"^metrics need at least one sample, got empty arrays$"):
        mae(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match=r"^pred and label must have the same number of elements, got 3 and 4$"):
        mae(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match=r"^pred/label contain NaN or inf; check the model output and the labels before scoring$"):
        mae(np.zeros(1), np.array([np.inf]))
    with pytest.raises(ValueError, match=r"^aggregate_seeds needs at least one run's metrics, got an empty list$"):
        aggregate_seeds([])
    with pytest.raises(ValueError, match=r"^run 2 has keys \['corr'\], run 0 has \['mae'\]; aggregate runs scored with the same metric set$"):
        aggregate_seeds([{"mae": 1.0}, {"mae": 2.0}, {"corr": 1.0}])


def test_two_seeds_have_a_std_and_extra_keys_format_by_name():
    agg = aggregate_seeds([{"mae": 0.7}, {"mae": 0.9}])
    assert agg["mae"]["std"] == pytest.approx(math.sqrt(0.02))  # ddof=1 over two runs
    assert format_metrics({"corr": 0.12345, "mae": 0.5, "loss": 1.0}) == "MAE 0.500 | Corr 0.123 | loss 1.00"


def test_integer_inputs_do_not_overflow():
    pred, label = np.array([100, -100], np.int8), np.array([-100, 100], np.int8)
    assert mae(pred, label) == 200.0  # int8 arithmetic would wrap around to 56
    assert mae(label, pred) == 200.0
    assert weighted_f1(np.array([1, 0]), np.array([[1], [1]])) == pytest.approx(1 / 3)
