"""minidl.metrics against scikit-learn's implementations, which serve as the independent oracle."""

import json

import numpy as np
import pytest
import sklearn.metrics as skm
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import softmax

from minidl import metrics

# ---------------------------------------------------------------------------------------------
# strategies


@st.composite
def label_pairs(draw, min_classes=2, max_classes=6, max_rows=60):
    """(num_classes, y_true, y_pred) integer labels in 0..num_classes-1."""
    num_classes = draw(st.integers(min_classes, max_classes))
    rows = draw(st.integers(1, max_rows))
    labels = arrays(np.int64, rows, elements=st.integers(0, num_classes - 1))
    return num_classes, draw(labels), draw(labels)


@st.composite
def integer_logits_and_labels(draw, max_classes=6, max_rows=40):
    """Small integer logits (many ties) with true labels."""
    num_classes = draw(st.integers(2, max_classes))
    rows = draw(st.integers(1, max_rows))
    logits = draw(arrays(np.float64, (rows, num_classes), elements=st.integers(-3, 3)))
    y_true = draw(arrays(np.int64, rows, elements=st.integers(0, num_classes - 1)))
    return logits, y_true


@st.composite
def regression_pairs(draw):
    """(y_true, y_pred) float64 of the same shape, (N,) or (N, D)."""
    rows = draw(st.integers(2, 40))
    shape = draw(st.sampled_from([(rows,), (rows, 1), (rows, 3)]))
    values = arrays(np.float64, shape, elements=st.floats(-1e3, 1e3, allow_nan=False))
    return draw(values), draw(values)


# ---------------------------------------------------------------------------------------------
# accuracy and top-k


@given(label_pairs())
def test_accuracy_of_labels_matches_sklearn(case):
    _, y_true, y_pred = case
    assert metrics.accuracy(y_true, y_pred) == pytest.approx(
        skm.accuracy_score(y_true, y_pred), abs=1e-12)


@given(integer_logits_and_labels())
def test_accuracy_agrees_for_logits_probabilities_indices_and_one_hot(case):
    logits, y_true = case
    num_classes = logits.shape[1]
    predicted = np.argmax(logits, axis=1)
    expected = skm.accuracy_score(y_true, predicted)
    y_true_forms = [y_true, y_true[:, None], y_true.astype(np.float32),
                    np.eye(num_classes)[y_true]]
    y_pred_forms = [logits, softmax(logits, axis=1), logits.astype(np.float32), predicted,
                    predicted[:, None], np.eye(num_classes)[predicted]]
    for true_form in y_true_forms:
        for pred_form in y_pred_forms:
            assert metrics.accuracy(true_form, pred_form) == pytest.approx(expected, abs=1e-12)


@given(arrays(np.float64, st.integers(1, 50), elements=st.floats(0, 1)), st.data())
def test_accuracy_thresholds_probabilities_of_class_one_at_one_half(probs, data):
    y_true = data.draw(arrays(np.int64, probs.shape, elements=st.integers(0, 1)))
    expected = skm.accuracy_score(y_true, (probs > 0.5).astype(np.int64))
    assert metrics.accuracy(y_true, probs) == pytest.approx(expected, abs=1e-12)
    assert metrics.accuracy(y_true[:, None].astype(np.float32), probs[:, None]) == pytest.approx(
        expected, abs=1e-12)


def test_accuracy_ties_go_to_the_lowest_class_index():
    assert metrics.accuracy([0, 1], [[2.0, 2.0], [5.0, 5.0]]) == 0.5


@given(st.integers(3, 8), st.integers(1, 40), st.integers(0, 2**32 - 1), st.data())
def test_top_k_accuracy_matches_sklearn(num_classes, rows, seed, data):
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((rows, num_classes))  # continuous: no ties, which sklearn orders
    y_true = data.draw(arrays(np.int64, rows, elements=st.integers(0, num_classes - 1)))
    k = data.draw(st.integers(1, num_classes - 1))
    expected = skm.top_k_accuracy_score(y_true, scores, k=k, labels=np.arange(num_classes))
    assert metrics.top_k_accuracy(y_true, scores, k=k) == pytest.approx(expected, abs=1e-12)
    assert metrics.top_k_accuracy(np.eye(num_classes)[y_true], scores, k=k) == pytest.approx(
        expected, abs=1e-12)


@given(integer_logits_and_labels())
def test_top_1_accuracy_equals_accuracy_even_with_ties(case):
    logits, y_true = case
    assert metrics.top_k_accuracy(y_true, logits, k=1) == metrics.accuracy(y_true, logits)


@given(integer_logits_and_labels(max_classes=8))
def test_top_k_accuracy_never_decreases_with_k(case):
    logits, y_true = case
    values = [metrics.top_k_accuracy(y_true, logits, k=k) for k in range(1, logits.shape[1])]
    assert values == sorted(values)


# ---------------------------------------------------------------------------------------------
# confusion matrix, precision, recall, f1


@given(label_pairs())
def test_confusion_matrix_matches_sklearn(case):
    num_classes, y_true, y_pred = case
    expected = skm.confusion_matrix(y_true, y_pred, labels=np.arange(num_classes))
    cm = metrics.confusion_matrix(y_true, y_pred, num_classes=num_classes)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, expected)


@given(integer_logits_and_labels())
def test_confusion_matrix_of_scores_has_one_row_per_class_and_accuracy_on_its_diagonal(case):
    logits, y_true = case
    cm = metrics.confusion_matrix(y_true, logits)
    assert cm.shape == (logits.shape[1], logits.shape[1])
    assert cm.sum() == len(y_true)
    assert np.trace(cm) / cm.sum() == pytest.approx(metrics.accuracy(y_true, logits), abs=1e-12)


def test_confusion_matrix_infers_num_classes_from_the_largest_label():
    cm = metrics.confusion_matrix([0, 3], [1, 3])
    np.testing.assert_array_equal(cm, [[0, 1, 0, 0], [0] * 4, [0] * 4, [0, 0, 0, 1]])


@given(label_pairs())
def test_per_class_precision_recall_f1_match_sklearn(case):
    num_classes, y_true, y_pred = case
    expected = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=np.arange(num_classes), average=None, zero_division=0)
    for metric, oracle in zip((metrics.precision, metrics.recall, metrics.f1), expected[:3],
                              strict=True):
        scores = metric(y_true, y_pred, average=None, num_classes=num_classes)
        assert scores.shape == (num_classes,)
        np.testing.assert_allclose(scores, oracle, rtol=0, atol=1e-12)


@given(label_pairs())
def test_macro_precision_recall_f1_match_sklearn(case):
    _, y_true, y_pred = case
    expected = skm.precision_recall_fscore_support(y_true, y_pred, average="macro",
                                                   zero_division=0)
    for metric, oracle in zip((metrics.precision, metrics.recall, metrics.f1), expected[:3],
                              strict=True):
        assert metric(y_true, y_pred) == pytest.approx(oracle, abs=1e-12)


def test_classes_never_predicted_or_never_present_score_zero_without_warning():
    y_true = np.array([0, 0, 1, 2])
    y_pred = np.array([0, 1, 1, 3])  # class 2 never predicted, class 3 never true
    np.testing.assert_array_equal(metrics.precision(y_true, y_pred, average=None),
                                  [1.0, 0.5, 0.0, 0.0])
    np.testing.assert_array_equal(metrics.recall(y_true, y_pred, average=None),
                                  [0.5, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(metrics.f1(y_true, y_pred, average=None),
                               [2 / 3, 2 / 3, 0.0, 0.0])


def test_macro_average_skips_classes_absent_from_both_sides():
    # class 1 of 3 never occurs: it must not drag the macro average down
    scores = np.array([[0.9, 0.0, 0.1], [0.1, 0.0, 0.9]])
    assert metrics.f1([0, 2], scores) == 1.0
    assert metrics.f1([0, 2], scores, average=None).tolist() == [1.0, 0.0, 1.0]


# ---------------------------------------------------------------------------------------------
# regression


@given(regression_pairs())
def test_mse_and_mae_match_sklearn(case):
    y_true, y_pred = case
    assert metrics.mse(y_true, y_pred) == pytest.approx(
        skm.mean_squared_error(y_true, y_pred), rel=1e-12, abs=1e-12)
    assert metrics.mae(y_true, y_pred) == pytest.approx(
        skm.mean_absolute_error(y_true, y_pred), rel=1e-12, abs=1e-12)


@given(regression_pairs())
def test_r2_matches_sklearn(case):
    y_true, y_pred = case
    assume(np.ptp(y_true.reshape(len(y_true), -1), axis=0).min() > 1e-3)
    assert metrics.r2(y_true, y_pred) == pytest.approx(skm.r2_score(y_true, y_pred),
                                                       rel=1e-9, abs=1e-9)


@given(regression_pairs())
def test_relative_error_matches_sklearn_mean_absolute_percentage_error(case):
    y_true, y_pred = case
    assert metrics.relative_error(y_true, y_pred) == pytest.approx(
        skm.mean_absolute_percentage_error(y_true, y_pred), rel=1e-12, abs=1e-12)


def test_relative_error_is_a_fraction_of_the_target():
    assert metrics.relative_error([2.0, -4.0], [3.0, -3.0]) == pytest.approx(0.375)


def test_r2_of_a_constant_target_is_one_if_exact_else_zero():
    constant = np.full(3, 0.1)  # the mean of 0.1, 0.1, 0.1 is not exactly 0.1 in floating point
    assert metrics.r2(constant, constant) == 1.0
    assert metrics.r2(constant, constant + 1.0) == 0.0


def test_r2_is_one_for_perfect_predictions_and_zero_for_the_mean():
    y_true = np.array([1.0, 2.0, 3.0, 6.0])
    assert metrics.r2(y_true, y_true) == 1.0
    assert metrics.r2(y_true, np.full(4, y_true.mean())) == pytest.approx(0.0, abs=1e-15)


def test_flat_and_column_targets_do_not_broadcast_against_each_other():
    y_true = np.array([1.0, 2.0, 3.0])
    y_pred = np.array([[1.0], [2.0], [5.0]])
    assert metrics.mse(y_true, y_pred) == pytest.approx(4 / 3)
    assert metrics.mae(y_pred, y_true) == pytest.approx(2 / 3)


def test_regression_metrics_accept_float32_and_integers_and_return_python_floats():
    value = metrics.mse(np.array([1, 2], dtype=np.int64), np.array([1.5, 2.5], dtype=np.float32))
    assert type(value) is float
    assert value == 0.25


# ---------------------------------------------------------------------------------------------
# bad input: a clear error naming the argument

BAD_CALLS = [
    (lambda: metrics.accuracy(np.zeros(100), np.zeros(99)), ValueError,
     "accuracy: y_true has 100 rows but y_pred has 99"),
    (lambda: metrics.mse(np.zeros(100), np.zeros(99)), ValueError,
     "mse: y_true has 100 rows but y_pred has 99"),
    (lambda: metrics.f1(np.zeros(3), np.zeros(4)), ValueError,
     "f1: y_true has 3 rows but y_pred has 4"),
    (lambda: metrics.mae(np.zeros((5, 2)), np.zeros((5, 3))), ValueError,
     r"mae: y_true has shape \(5, 2\) but y_pred has shape \(5, 3\)"),
    (lambda: metrics.r2(np.zeros(4), np.zeros((4, 2))), ValueError,
     r"r2: y_true has shape \(4,\) but y_pred has shape \(4, 2\)"),
    (lambda: metrics.accuracy(np.eye(3), np.zeros((3, 4))), ValueError,
     r"accuracy: y_true has 3 columns \(classes\) but y_pred has 4"),
    (lambda: metrics.accuracy([0, 5], np.zeros((2, 3))), ValueError,
     "accuracy: y_true holds class 5 but y_pred has 3 columns"),
    (lambda: metrics.accuracy(np.zeros(2), np.zeros((2, 3, 4))), ValueError,
     r"accuracy: y_pred must be scores of shape \(N, C\).*got shape \(2, 3, 4\)"),
    (lambda: metrics.accuracy(np.zeros((2, 2, 2)), np.zeros(2)), ValueError,
     r"accuracy: y_true must be class indices.*got shape \(2, 2, 2\)"),
    (lambda: metrics.accuracy([0.5, 1.0], [0, 1]), ValueError,
     "accuracy: y_true must hold whole class indices"),
    (lambda: metrics.accuracy([-1, 0], [0, 1]), ValueError,
     "accuracy: y_true holds the negative class -1"),
    (lambda: metrics.confusion_matrix([0, 1], [0, -2]), ValueError,
     "confusion_matrix: y_pred holds the negative class -2"),
    (lambda: metrics.accuracy(["a", "b"], [0, 1]), TypeError,
     "accuracy: y_true must be a numeric array, got dtype <U1"),
    (lambda: metrics.mse([1.0], [1 + 1j]), TypeError,
     "mse: y_pred must be a numeric array, got dtype complex128"),
    (lambda: metrics.accuracy(1, [1]), ValueError,
     "accuracy: y_true must have one row per sample, got a scalar"),
    (lambda: metrics.accuracy([], []), ValueError, "accuracy: y_true and y_pred are empty"),
    (lambda: metrics.r2([1.0], [1.0]), ValueError, "r2: needs at least 2 samples"),
    (lambda: metrics.top_k_accuracy([0, 1], np.zeros((2, 3)), k=3), ValueError,
     r"top_k_accuracy: k must be an integer with 1 <= k < 3.*got 3"),
    (lambda: metrics.top_k_accuracy([0, 1], np.zeros((2, 3)), k=0), ValueError,
     r"top_k_accuracy: k must be an integer with 1 <= k < 3.*got 0"),
    (lambda: metrics.top_k_accuracy([0, 1], np.zeros(2), k=1), ValueError,
     r"top_k_accuracy: y_pred must be scores of shape \(N, C\) with C > 1, got shape \(2,\)"),
    (lambda: metrics.confusion_matrix([0, 7], [0, 1], num_classes=5), ValueError,
     "confusion_matrix: y_true holds class 7 but num_classes is 5"),
    (lambda: metrics.confusion_matrix([0, 1], [0, 1], num_classes=0), ValueError,
     "confusion_matrix: num_classes must be a positive integer, got 0"),
    (lambda: metrics.precision([0, 1], [0, 1], average="micro"), ValueError,
     "precision: average must be 'macro' or None, got 'micro'"),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD_CALLS,
                         ids=[message for _, _, message in BAD_CALLS])
def test_bad_input_raises_an_error_naming_the_problem(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ---------------------------------------------------------------------------------------------
# lookup by name

CONTRACT_NAMES = ["accuracy", "top_k_accuracy", "mse", "mae", "relative_error", "r2",
                  "precision", "recall", "f1"]


def test_registry_holds_the_contract_names_and_get_returns_them():
    assert sorted(metrics.METRICS) == sorted(CONTRACT_NAMES)
    for name in CONTRACT_NAMES:
        assert metrics.get(name) is getattr(metrics, name)


def test_registered_metrics_return_json_able_floats():
    y_true, scores = np.array([0, 1, 2, 2, 1, 0]), np.eye(6)[:, :3] + 0.1
    values = {name: fn(y_true, scores) for name, fn in metrics.METRICS.items()
              if name not in ("mse", "mae", "relative_error", "r2", "top_k_accuracy")}
    values["top_k_accuracy"] = metrics.top_k_accuracy(y_true, scores, k=2)
    values.update({name: metrics.METRICS[name](np.arange(1.0, 4.0), np.arange(3.0))
                   for name in ("mse", "mae", "relative_error", "r2")})
    assert all(type(value) is float for value in values.values())
    json.dumps(values)


def test_get_passes_a_function_through():
    def hit_rate(y_true, y_pred):
        return 1.0

    assert metrics.get(hit_rate) is hit_rate


def test_get_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown metric 'acc'; known metrics: accuracy, f1"):
        metrics.get("acc")
    with pytest.raises(TypeError, match="metric must be a name or a function"):
        metrics.get(3)
