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
# the Keras accuracies, each against scikit-learn


@st.composite
def weights_for(draw, rows, min_value=0.0):
    """Per-sample weights, zeros included unless min_value > 0, never all zero."""
    weights = draw(arrays(np.float64, rows, elements=st.floats(min_value, 3.0)))
    assume(weights.sum() > 0)
    return weights


@given(integer_logits_and_labels(), st.data())
def test_sparse_and_categorical_accuracy_match_sklearn_with_weights(case, data):
    logits, y_true = case
    weights = data.draw(weights_for(len(y_true), min_value=0.1))
    expected = skm.accuracy_score(y_true, np.argmax(logits, axis=1), sample_weight=weights)
    one_hot = np.eye(logits.shape[1])[y_true]
    for value in (metrics.sparse_categorical_accuracy(y_true, logits, sample_weight=weights),
                  metrics.sparse_categorical_accuracy(y_true[:, None], logits,
                                                      sample_weight=weights[:, None]),
                  metrics.categorical_accuracy(one_hot, logits, sample_weight=weights),
                  metrics.accuracy(y_true, logits, sample_weight=weights),
                  metrics.accuracy(one_hot, logits, sample_weight=weights)):
        assert value == pytest.approx(expected, abs=1e-12)


@given(arrays(np.float64, st.tuples(st.integers(1, 30), st.integers(1, 4)),
              elements=st.floats(0, 1)), st.floats(0.05, 0.95), st.data())
def test_binary_accuracy_is_one_minus_sklearn_hamming_loss(probs, threshold, data):
    y_true = data.draw(arrays(np.int64, probs.shape, elements=st.integers(0, 1)))
    weights = data.draw(weights_for(len(probs), min_value=0.1))
    predicted = (probs > threshold).astype(np.int64)
    if probs.shape[1] == 1:
        expected = skm.accuracy_score(y_true[:, 0], predicted[:, 0], sample_weight=weights)
        assert metrics.accuracy(y_true[:, 0], probs, threshold, weights) == pytest.approx(
            expected, abs=1e-12)
    else:
        expected = 1.0 - skm.hamming_loss(y_true, predicted, sample_weight=weights)
    assert metrics.binary_accuracy(y_true, probs, threshold=threshold,
                                   sample_weight=weights) == pytest.approx(expected, abs=1e-12)


def test_binary_accuracy_counts_a_prediction_equal_to_the_threshold_as_class_zero():
    assert metrics.binary_accuracy([0, 1], [0.5, 0.5]) == 0.5
    assert metrics.accuracy([[0], [1]], [[0.7], [0.7]], threshold=0.7) == 0.5


@given(st.integers(3, 8), st.integers(1, 40), st.integers(0, 2**32 - 1), st.data())
def test_top_k_categorical_accuracies_match_sklearn_with_weights(num_classes, rows, seed, data):
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((rows, num_classes))  # continuous: no ties
    y_true = data.draw(arrays(np.int64, rows, elements=st.integers(0, num_classes - 1)))
    weights = data.draw(weights_for(rows, min_value=0.1))
    k = data.draw(st.integers(1, num_classes - 1))
    expected = skm.top_k_accuracy_score(y_true, scores, k=k, labels=np.arange(num_classes),
                                        sample_weight=weights)
    assert metrics.sparse_top_k_categorical_accuracy(
        y_true, scores, k=k, sample_weight=weights) == pytest.approx(expected, abs=1e-12)
    assert metrics.top_k_categorical_accuracy(
        np.eye(num_classes)[y_true], scores, k=k, sample_weight=weights) == pytest.approx(
        expected, abs=1e-12)
    assert metrics.top_k_accuracy(y_true, scores, k=k, sample_weight=weights) == pytest.approx(
        expected, abs=1e-12)


def test_keras_top_k_counts_ties_in_and_k_past_the_classes_counts_everything():
    scores = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0]])
    assert metrics.sparse_top_k_categorical_accuracy([1, 2], scores, k=1) == 1.0
    assert metrics.top_k_accuracy([1, 2], scores, k=1) == 0.0  # argmax's tie rule
    assert metrics.sparse_top_k_categorical_accuracy([2, 0], scores) == 1.0  # k=5 > 3 classes


# ---------------------------------------------------------------------------------------------
# counted metrics with weights and every average


@given(label_pairs(), st.data())
def test_weighted_confusion_matrix_matches_sklearn(case, data):
    num_classes, y_true, y_pred = case
    weights = data.draw(weights_for(len(y_true)))
    expected = skm.confusion_matrix(y_true, y_pred, labels=np.arange(num_classes),
                                    sample_weight=weights)
    cm = metrics.confusion_matrix(y_true, y_pred, num_classes, sample_weight=weights)
    assert cm.dtype == np.float64
    np.testing.assert_allclose(cm, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("average", ["micro", "macro", "weighted"])
@given(case=label_pairs(), data=st.data())
def test_averaged_precision_recall_f1_match_sklearn_with_weights(average, case, data):
    _, y_true, y_pred = case
    weights = data.draw(weights_for(len(y_true)))
    expected = skm.precision_recall_fscore_support(y_true, y_pred, average=average,
                                                   sample_weight=weights, zero_division=0)
    for metric, oracle in zip((metrics.precision, metrics.recall, metrics.f1), expected[:3],
                              strict=True):
        assert metric(y_true, y_pred, average=average, sample_weight=weights) == pytest.approx(
            oracle, abs=1e-12)


@given(arrays(np.float64, st.integers(1, 50), elements=st.floats(0, 1)), st.data())
def test_binary_precision_recall_f1_of_probabilities_match_sklearn(probs, data):
    y_true = data.draw(arrays(np.int64, probs.shape, elements=st.integers(0, 1)))
    weights = data.draw(weights_for(len(probs)))
    predicted = (probs > 0.5).astype(np.int64)
    expected = skm.precision_recall_fscore_support(
        y_true, predicted, average="binary", labels=[0, 1], sample_weight=weights,
        zero_division=0)
    for metric, oracle in zip((metrics.precision, metrics.recall, metrics.f1), expected[:3],
                              strict=True):
        assert metric(y_true, probs, average="binary", sample_weight=weights) == pytest.approx(
            oracle, abs=1e-12)


@st.composite
def multi_label_cases(draw, max_labels=5, max_rows=40):
    """(y_true 0/1 (N, C), scores (N, C) in (0, 1], weights (N,))."""
    rows, labels = draw(st.integers(1, max_rows)), draw(st.integers(2, max_labels))
    y_true = draw(arrays(np.int64, (rows, labels), elements=st.integers(0, 1)))
    scores = draw(arrays(np.float64, (rows, labels), elements=st.floats(0.01, 1.0)))
    return y_true, scores, draw(weights_for(rows))


@pytest.mark.parametrize("average", [None, "micro", "macro", "weighted"])
@given(case=multi_label_cases(), beta=st.sampled_from([0.5, 1.0, 2.0]),
       threshold=st.floats(0.05, 1.0))
def test_fbeta_score_of_thresholded_labels_matches_sklearn(average, case, beta, threshold):
    y_true, scores, weights = case
    expected = skm.fbeta_score(y_true, (scores > threshold).astype(np.int64), beta=beta,
                               average=average, sample_weight=weights, zero_division=0)
    value = metrics.fbeta_score(y_true, scores, beta=beta, average=average,
                                threshold=threshold, sample_weight=weights)
    np.testing.assert_allclose(value, expected, rtol=0, atol=1e-12)
    if beta == 1.0:
        np.testing.assert_allclose(metrics.f1_score(y_true, scores, average, threshold, weights),
                                   value, rtol=0, atol=0)


@given(integer_logits_and_labels(), st.data())
def test_fbeta_score_without_threshold_predicts_each_rows_maxima(case, data):
    logits, y_true = case
    scores = logits + 4.0  # positive: a row is never all zeros
    weights = data.draw(weights_for(len(y_true)))
    predicted = (scores == scores.max(axis=1, keepdims=True)).astype(np.int64)
    one_hot = np.eye(scores.shape[1], dtype=np.int64)[y_true]
    expected = skm.fbeta_score(one_hot, predicted, beta=2.0, average=None,
                               sample_weight=weights, zero_division=0)
    for targets in (one_hot, y_true, y_true[:, None]):  # sparse labels are one-hot encoded
        np.testing.assert_allclose(metrics.fbeta_score(targets, scores, beta=2.0,
                                                       sample_weight=weights),
                                   expected, rtol=0, atol=1e-12)


def test_fbeta_score_without_threshold_predicts_nothing_for_a_row_of_zeros():
    scores = np.array([[0.0, 0.0], [0.2, 0.8]])
    np.testing.assert_array_equal(metrics.f1_score([[1, 0], [0, 1]], scores), [0.0, 1.0])


# ---------------------------------------------------------------------------------------------
# weighted regression metrics, R2's options


@st.composite
def weighted_regression(draw, min_weight=0.0):
    y_true, y_pred = draw(regression_pairs())
    return y_true, y_pred, draw(weights_for(len(y_true), min_value=min_weight))


@given(weighted_regression(min_weight=0.1))
def test_weighted_errors_match_sklearn(case):
    y_true, y_pred, weights = case
    for metric, oracle in ((metrics.mse, skm.mean_squared_error),
                           (metrics.mae, skm.mean_absolute_error),
                           (metrics.relative_error, skm.mean_absolute_percentage_error)):
        assert metric(y_true, y_pred, sample_weight=weights) == pytest.approx(
            oracle(y_true, y_pred, sample_weight=weights), rel=1e-9, abs=1e-9)


@given(weighted_regression(min_weight=0.1))
def test_mape_is_sklearns_in_percent_and_msle_is_sklearns_above_epsilon(case):
    y_true, y_pred, weights = case
    assume(np.abs(y_true).min() > 1e-3)
    assert metrics.mape(y_true, y_pred, weights) == pytest.approx(
        100 * skm.mean_absolute_percentage_error(y_true, y_pred, sample_weight=weights),
        rel=1e-9)
    positive_true, positive_pred = np.abs(y_true), np.abs(y_pred) + 1e-3
    assert metrics.msle(positive_true, positive_pred, weights) == pytest.approx(
        skm.mean_squared_log_error(positive_true, positive_pred, sample_weight=weights),
        rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("aggregation", "multioutput"), [
    ("uniform_average", "uniform_average"), ("variance_weighted_average", "variance_weighted"),
    (None, "raw_values")])
@given(case=weighted_regression(min_weight=0.1))
def test_r2_score_matches_sklearn_with_weights(aggregation, multioutput, case):
    y_true, y_pred, weights = case
    assume(np.ptp(y_true.reshape(len(y_true), -1), axis=0).min() > 1e-3)
    expected = skm.r2_score(y_true, y_pred, sample_weight=weights, multioutput=multioutput)
    value = metrics.r2_score(y_true, y_pred, class_aggregation=aggregation,
                             sample_weight=weights)
    np.testing.assert_allclose(value, expected, rtol=1e-9, atol=1e-9)
    if aggregation == "uniform_average":
        assert metrics.r2(y_true, y_pred, weights) == pytest.approx(value, rel=1e-12, abs=1e-12)


def test_r2_score_weighs_each_element_with_a_weight_matrix():
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.standard_normal((2, 20, 3))
    weights = rng.uniform(0.1, 2.0, (20, 3))
    expected = [skm.r2_score(y_true[:, j], y_pred[:, j], sample_weight=weights[:, j])
                for j in range(3)]
    np.testing.assert_allclose(metrics.r2_score(y_true, y_pred, None, sample_weight=weights),
                               expected, rtol=1e-12)


def test_r2_score_of_constant_columns_is_one_if_exact_else_zero_and_never_nan():
    y_true = np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]])
    y_pred = np.array([[1.0, 2.0], [1.0, 2.5], [1.0, 2.0]])
    np.testing.assert_array_equal(metrics.r2_score(y_true, y_pred, None), [1.0, 0.0])
    assert metrics.r2_score(y_true, y_pred, "variance_weighted_average") == 0.5


def test_adjusted_r2_score_falls_back_to_r2_with_a_warning_when_undefined():
    y_true, y_pred = np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 3.0])
    with pytest.warns(UserWarning, match="returning the plain R2"):
        assert metrics.r2_score(y_true, y_pred, num_regressors=2) == metrics.r2_score(
            y_true, y_pred)


# ---------------------------------------------------------------------------------------------
# AUC: exact ROC and average precision


@st.composite
def ranking_cases(draw, max_labels=4, max_rows=40):
    """(y_true 0/1 (N, C), integer-valued scores (N, C): many ties, weights (N,) >= 0.1)."""
    rows, labels = draw(st.integers(2, max_rows)), draw(st.integers(1, max_labels))
    y_true = draw(arrays(np.int64, (rows, labels), elements=st.integers(0, 1)))
    assume(np.all(y_true.min(axis=0) == 0) and np.all(y_true.max(axis=0) == 1))
    scores = draw(arrays(np.float64, (rows, labels), elements=st.integers(-3, 3)))
    return y_true, scores, draw(weights_for(rows, min_value=0.1))


@pytest.mark.parametrize(("curve", "oracle"), [("ROC", skm.roc_auc_score),
                                               ("PR", skm.average_precision_score)])
@given(case=ranking_cases())
def test_auc_matches_sklearn_with_ties_and_weights(curve, oracle, case):
    y_true, scores, weights = case
    flat = oracle(y_true.ravel(), scores.ravel(), sample_weight=np.repeat(weights,
                                                                          y_true.shape[1]))
    per_label = [oracle(y_true[:, j], scores[:, j], sample_weight=weights)
                 for j in range(y_true.shape[1])]
    assert metrics.auc(y_true, scores, curve, sample_weight=weights) == pytest.approx(
        flat, abs=1e-12)
    assert metrics.auc(y_true, scores, curve, multi_label=True,
                       sample_weight=weights) == pytest.approx(np.mean(per_label), abs=1e-12)
    label_weights = np.arange(1.0, y_true.shape[1] + 1)
    assert metrics.auc(y_true, scores, curve, True, label_weights, weights) == pytest.approx(
        np.average(per_label, weights=label_weights), abs=1e-12)
    flat_label_weighted = oracle(y_true.ravel(), scores.ravel(),
                                 sample_weight=np.outer(weights, label_weights).ravel())
    assert metrics.auc(y_true, scores, curve, False, label_weights, weights) == pytest.approx(
        flat_label_weighted, abs=1e-12)


def test_auc_depends_only_on_the_order_of_the_scores():
    y_true = np.array([0, 0, 1, 1])
    probs = np.array([0.1, 0.5, 0.3, 0.9])
    logits = np.log(probs / (1 - probs))
    assert metrics.auc(y_true, probs) == metrics.auc(y_true, logits) == 0.75


def test_auc_of_a_single_class_is_zero_as_in_keras():
    assert metrics.auc([1, 1, 1], [0.2, 0.5, 0.9]) == 0.0
    assert metrics.auc([0, 0], [0.2, 0.5], curve="PR") == 0.0


# ---------------------------------------------------------------------------------------------
# sample_weight properties, for every registered metric

CLASSES = 3


@st.composite
def metric_inputs(draw, kind):
    """(y_true, y_pred) of one kind, with at least 4 rows."""
    rows = draw(st.integers(4, 25))
    if kind in ("sparse", "one_hot"):
        y_true = draw(arrays(np.int64, rows, elements=st.integers(0, CLASSES - 1)))
        scores = draw(arrays(np.float64, (rows, CLASSES), elements=st.integers(0, 4)))
        return (np.eye(CLASSES)[y_true] if kind == "one_hot" else y_true), scores + 0.5
    if kind == "binary":
        y_true = draw(arrays(np.int64, (rows, 1), elements=st.integers(0, 1)))
        return y_true, draw(arrays(np.float64, (rows, 1), elements=st.sampled_from(
            [0.1, 0.4, 0.5, 0.6, 0.9])))
    if kind == "multi_label":
        y_true = draw(arrays(np.int64, (rows, CLASSES), elements=st.integers(0, 1)))
        return y_true, draw(arrays(np.float64, (rows, CLASSES), elements=st.sampled_from(
            [0.1, 0.4, 0.6, 0.9])))
    values = arrays(np.float64, (rows, 2), elements=st.floats(0.5, 50))
    return draw(values), draw(values)


METRIC_KINDS = {
    "accuracy": "sparse", "acc": "binary", "binary_accuracy": "multi_label",
    "categorical_accuracy": "one_hot", "sparse_categorical_accuracy": "sparse",
    "top_k_categorical_accuracy": "one_hot", "sparse_top_k_categorical_accuracy": "sparse",
    "top_k_accuracy": "sparse", "precision": "sparse", "recall": "sparse", "f1": "one_hot",
    "f1_score": "multi_label", "fbeta_score": "one_hot", "f_beta_score": "sparse",
    "auc": "multi_label", "mse": "regression", "MSE": "regression",
    "mean_squared_error": "regression", "mae": "regression", "MAE": "regression",
    "mean_absolute_error": "regression", "mape": "regression", "MAPE": "regression",
    "mean_absolute_percentage_error": "regression", "msle": "regression",
    "MSLE": "regression", "mean_squared_logarithmic_error": "regression",
    "relative_error": "regression", "r2": "regression", "r2_score": "regression",
}
OPTIONS = {"top_k_categorical_accuracy": {"k": 2}, "sparse_top_k_categorical_accuracy": {"k": 2},
           "top_k_accuracy": {"k": 2}, "f1_score": {"threshold": 0.5}}


def call(name, y_true, y_pred, **weights):
    return metrics.get(name)(y_true, y_pred, **OPTIONS.get(name, {}), **weights)


@pytest.mark.parametrize("name", sorted(METRIC_KINDS))
@given(data=st.data())
def test_weights_of_ones_change_nothing_and_integer_weights_repeat_rows(name, data):
    y_true, y_pred = data.draw(metric_inputs(METRIC_KINDS[name]))
    counts = data.draw(arrays(np.int64, len(y_true), elements=st.integers(1, 3)))
    unweighted = call(name, y_true, y_pred)
    np.testing.assert_allclose(call(name, y_true, y_pred, sample_weight=np.ones(len(y_true))),
                               unweighted, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(call(name, y_true, y_pred, sample_weight=counts),
                               call(name, np.repeat(y_true, counts, axis=0),
                                    np.repeat(y_pred, counts, axis=0)), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(call(name, y_true, y_pred, sample_weight=2.5), unweighted,
                               rtol=1e-12, atol=1e-12)


def test_every_registered_name_has_a_weighting_property_test():
    assert sorted(METRIC_KINDS) == sorted(metrics.METRICS)


def test_mean_metrics_of_zero_total_weight_are_zero_as_in_keras():
    assert metrics.mse([1.0, 2.0], [0.0, 0.0], sample_weight=[0, 0]) == 0.0
    assert metrics.accuracy([0, 1], [0, 1], sample_weight=[0.0, 0.0]) == 0.0


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
     r"accuracy: y_true has shape \(2,\) but y_pred has shape \(2, 3, 4\)"),
    (lambda: metrics.accuracy(np.zeros((2, 2, 2)), np.zeros(2, dtype=np.int64)), ValueError,
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
    (lambda: metrics.precision([0, 1], [0, 1], average="samples"), ValueError,
     "precision: average must be one of None, 'binary', 'micro', 'macro', 'weighted', "
     "got 'samples'"),
    (lambda: metrics.recall([0, 1, 2], [0, 1, 2], average="binary"), ValueError,
     r"recall: average='binary' scores class 1 of two classes, but there are 3 classes; "
     r"use average='micro', 'macro' or 'weighted'"),
    # sample weights
    (lambda: metrics.mse([1.0, 2.0], [1.0, 2.0], sample_weight=[1.0, 2.0, 3.0]), ValueError,
     r"mse: sample_weight must be a number or have shape \(2,\) or \(2, 1\) \(one weight per "
     r"sample\), got shape \(3,\)"),
    (lambda: metrics.binary_accuracy(np.zeros((2, 3)), np.zeros((2, 3)),
                                     sample_weight=np.ones((2, 2))), ValueError,
     r"binary_accuracy: sample_weight must be a number or have shape \(2,\) or \(2, 1\) or "
     r"\(2, 3\) or \(1, 3\)"),
    (lambda: metrics.accuracy([0, 1], [0, 1], sample_weight=["a", "b"]), TypeError,
     "accuracy: sample_weight must be numeric, got dtype <U1"),
    (lambda: metrics.auc([0, 1], [0.2, 0.4], sample_weight=[1.0, np.nan]), ValueError,
     "auc: sample_weight holds a non-finite value"),
    # the Keras accuracies
    (lambda: metrics.binary_accuracy(np.zeros(4), np.zeros((4, 2))), ValueError,
     r"binary_accuracy: y_true has shape \(4,\) but y_pred has shape \(4, 2\); binary "
     r"accuracy compares them element by element"),
    (lambda: metrics.binary_accuracy([0, 1], [0.2, 0.9], threshold="0.5"), ValueError,
     "binary_accuracy: threshold must be a number, got '0.5'"),
    (lambda: metrics.categorical_accuracy([0, 1], np.eye(2)), ValueError,
     r"categorical_accuracy: y_true must be one-hot rows of the shape of y_pred \(2, 2\), got "
     r"shape \(2,\); use sparse_categorical_accuracy for class indices"),
    (lambda: metrics.sparse_categorical_accuracy(np.eye(2), np.eye(2)), ValueError,
     r"sparse_categorical_accuracy: y_true must be class indices of shape \(N,\) or \(N, 1\), "
     r"got one-hot rows of shape \(2, 2\); use categorical_accuracy for those"),
    (lambda: metrics.sparse_categorical_accuracy([0, 1], [0.2, 0.9]), ValueError,
     r"sparse_categorical_accuracy: y_pred must be scores of shape \(N, C\), got shape \(2,\)"),
    (lambda: metrics.sparse_top_k_categorical_accuracy([0, 1], np.eye(2), k=0), ValueError,
     "sparse_top_k_categorical_accuracy: k must be a positive integer, got 0"),
    # F-beta (Keras' FBetaScore checks, f_score_metrics_test.py::test_invalid_average_raises...)
    (lambda: metrics.fbeta_score(np.eye(2), np.eye(2), average="invalid_average"), ValueError,
     "fbeta_score: average must be one of None, 'micro', 'macro', 'weighted', "
     "got 'invalid_average'"),
    (lambda: metrics.fbeta_score(np.eye(2), np.eye(2), beta=0.0), ValueError,
     "fbeta_score: beta must be a positive number, got 0.0"),
    (lambda: metrics.fbeta_score(np.eye(2), np.eye(2), beta=None), ValueError,
     "fbeta_score: beta must be a positive number, got None"),
    (lambda: metrics.fbeta_score(np.eye(2), np.eye(2), beta="1.0"), ValueError,
     "fbeta_score: beta must be a positive number, got '1.0'"),
    (lambda: metrics.f1_score(np.eye(2), np.eye(2), threshold=1.1), ValueError,
     r"f1_score: threshold must be None \(the row's largest score\) or a number with "
     r"0 < threshold <= 1, got 1.1"),
    (lambda: metrics.f1_score(np.eye(2), np.eye(2), threshold=0.0), ValueError,
     r"f1_score: threshold must be None .* got 0.0"),
    (lambda: metrics.f1_score(np.zeros((2, 3, 4)), np.zeros((2, 3, 4))), ValueError,
     r"f1_score: y_pred must have shape \(N,\) or \(N, C\), got shape \(2, 3, 4\)"),
    (lambda: metrics.f1_score(np.eye(3)[:2], np.eye(2)), ValueError,
     r"f1_score: y_true has shape \(2, 3\) but y_pred has shape \(2, 2\); give one column per "
     r"label, or class indices"),
    # R2 (Keras' R2Score checks, regression_metrics_test.py::R2ScoreTest::test_errors)
    (lambda: metrics.r2_score([0.0, 1.0], [0.0, 1.0], class_aggregation="wrong"), ValueError,
     "r2_score: class_aggregation must be one of 'uniform_average', "
     "'variance_weighted_average', None, got 'wrong'"),
    (lambda: metrics.r2_score([0.0, 1.0], [0.0, 1.0], num_regressors=-1), ValueError,
     r"r2_score: num_regressors must be an integer >= 0 \(0 is the plain R2\), got -1"),
    (lambda: metrics.r2_score(np.zeros((3, 2)), np.zeros((3, 2)), sample_weight=np.ones((3, 3))),
     ValueError, r"r2_score: sample_weight must be a number or have shape \(3,\) or \(3, 1\) "
                 r"or \(3, 2\) or \(1, 2\)"),
    # AUC (Keras' AUC checks, confusion_metrics_test.py::AUCTest::test_invalid_curve)
    (lambda: metrics.auc([0, 1], [0.2, 0.4], curve="Invalid"), ValueError,
     "auc: curve must be 'ROC' or 'PR', got 'Invalid'"),
    (lambda: metrics.auc([0, 2], [0.2, 0.4]), ValueError,
     "auc: y_true must hold 0 or 1, got values such as 2.0"),
    (lambda: metrics.auc([0, 1], [0.2, np.inf]), ValueError,
     "auc: y_pred holds a non-finite score"),
    (lambda: metrics.auc([0, 1], [0.2, 0.4], multi_label=1), TypeError,
     "auc: multi_label must be True or False, got 1"),
    (lambda: metrics.auc(np.eye(2), np.eye(2), label_weights=[1.0]), ValueError,
     r"auc: label_weights must be 2 non-negative numbers, one per label, got array\(\[1\.\]\)"),
    (lambda: metrics.auc(np.eye(2), np.eye(2), label_weights=[1.0, -1.0]), ValueError,
     "auc: label_weights must be 2 non-negative numbers"),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD_CALLS,
                         ids=[message for _, _, message in BAD_CALLS])
def test_bad_input_raises_an_error_naming_the_problem(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ---------------------------------------------------------------------------------------------
# lookup by name

KERAS_NAMES = ["accuracy", "acc", "binary_accuracy", "categorical_accuracy",
               "sparse_categorical_accuracy", "top_k_categorical_accuracy",
               "sparse_top_k_categorical_accuracy", "mse", "MSE", "mean_squared_error", "mae",
               "MAE", "mean_absolute_error", "mape", "MAPE", "mean_absolute_percentage_error",
               "msle", "MSLE", "mean_squared_logarithmic_error", "auc", "precision", "recall",
               "f1_score", "f_beta_score", "r2_score"]
MINIDL_NAMES = ["top_k_accuracy", "relative_error", "r2", "f1", "fbeta_score"]


def test_registry_holds_keras_names_and_minidls_and_get_returns_them():
    assert sorted(metrics.METRICS) == sorted(KERAS_NAMES + MINIDL_NAMES)
    for name in ["accuracy", "top_k_accuracy", "mse", "mae", "relative_error", "r2",
                 "precision", "recall", "f1", "auc", "mape", "msle", "binary_accuracy",
                 "f1_score", "fbeta_score", "r2_score"]:
        assert metrics.get(name) is getattr(metrics, name)
    assert metrics.get("acc") is metrics.accuracy
    assert metrics.get("mean_squared_error") is metrics.get("MSE") is metrics.mse
    assert metrics.get("f_beta_score") is metrics.fbeta_score


def fixed_inputs(kind, rows=12):
    """One deterministic (y_true, y_pred) of each kind of metric_inputs."""
    rng = np.random.default_rng(0)
    if kind in ("sparse", "one_hot"):
        y_true = np.arange(rows) % CLASSES
        scores = rng.uniform(0.1, 1.0, (rows, CLASSES))
        return (np.eye(CLASSES)[y_true] if kind == "one_hot" else y_true), scores
    if kind in ("binary", "multi_label"):
        columns = 1 if kind == "binary" else CLASSES
        return (np.arange(rows * columns).reshape(rows, columns) % 2,
                rng.uniform(0.0, 1.0, (rows, columns)))
    return rng.uniform(0.5, 50, (rows, 2)), rng.uniform(0.5, 50, (rows, 2))


@pytest.mark.parametrize("name", sorted(METRIC_KINDS))
def test_registered_metrics_return_json_able_floats_by_default(name):
    value = call(name, *fixed_inputs(METRIC_KINDS[name]))
    if name in ("f1_score", "fbeta_score", "f_beta_score"):
        # Keras' F-scores default to average=None: one score per label
        assert value.dtype == np.float64 and value.shape == (CLASSES,)
    else:
        assert type(value) is float
        json.dumps(value)


def test_get_passes_a_function_through():
    def hit_rate(y_true, y_pred, sample_weight=None):
        return 1.0

    assert metrics.get(hit_rate) is hit_rate


def test_get_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown metric 'accuracyy'; known metrics: .*acc, "
                                         r"accuracy, auc"):
        metrics.get("accuracyy")
    with pytest.raises(TypeError, match="metric must be a name or a function"):
        metrics.get(3)
