"""minidl.metrics against Keras: the cases of Keras' own metric tests (their inputs and expected
numbers, each citing keras/src/metrics/<file>::<Class>::<test>), then, where Keras is installed,
Keras itself on random inputs."""

import os

import numpy as np
import pytest
import sklearn.metrics as skm

from minidl import metrics

ACC = "accuracy_metrics_test.py"
FSCORE = "f_score_metrics_test.py"
REGRESSION = "regression_metrics_test.py"
CONFUSION = "confusion_metrics_test.py"

# ---------------------------------------------------------------------------------------------
# accuracies (keras/src/metrics/accuracy_metrics_test.py)

ACCURACY_CASES = [
    # (Keras test, minidl metric, y_true, y_pred, options, expected)
    ("AccuracyTest::test_unweighted", metrics.accuracy,
     [[1], [2], [3], [4]], [[0], [2], [3], [4]], {}, 0.75),
    ("AccuracyTest::test_weighted", metrics.accuracy,
     [[1], [2], [3], [4]], [[0], [2], [3], [4]], {"sample_weight": [1, 1, 0, 0]}, 0.5),
    ("AccuracyTest::test_weighted_rank_1", metrics.accuracy,
     [1, 2, 3, 4], [0, 2, 3, 4], {"sample_weight": [1, 1, 0, 0]}, 0.5),
    ("BinaryAccuracyTest::test_unweighted", metrics.binary_accuracy,
     [[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]], {}, 0.75),
    ("BinaryAccuracyTest::test_unweighted (broadcasting)", metrics.binary_accuracy,
     [1, 1, 0, 0], [[0.98], [1], [0], [0.6]], {}, 0.75),
    ("BinaryAccuracyTest::test_weighted", metrics.binary_accuracy,
     [[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]], {"sample_weight": [1, 0, 0, 1]}, 0.5),
    ("BinaryAccuracyTest::test_weighted_rank_1", metrics.binary_accuracy,
     [1, 1, 0, 0], [0.98, 1, 0, 0.6], {"sample_weight": [1, 0, 0, 1]}, 0.5),
    ("BinaryAccuracyTest::test_weighted_nd_weights", metrics.binary_accuracy,
     [[1, 1], [0, 0]], [[0.98, 1], [0, 0.6]], {"sample_weight": [[1, 0], [0, 1]]}, 0.5),
    ("BinaryAccuracyTest::test_weighted_nd_broadcast_weights", metrics.binary_accuracy,
     [[1, 1], [0, 0]], [[0.98, 1], [0, 0.6]], {"sample_weight": [[1, 0]]}, 1.0),
    ("BinaryAccuracyTest::test_threshold (0.3)", metrics.binary_accuracy,
     [[1], [1], [0], [0]], [[0.98], [0.5], [0.1], [0.2]], {"threshold": 0.3}, 1.0),
    ("BinaryAccuracyTest::test_threshold (0.9)", metrics.binary_accuracy,
     [[1], [1], [0], [0]], [[0.98], [0.5], [0.1], [0.2]], {"threshold": 0.9}, 0.75),
    ("CategoricalAccuracyTest::test_unweighted", metrics.categorical_accuracy,
     [[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]], {}, 0.5),
    ("CategoricalAccuracyTest::test_weighted", metrics.categorical_accuracy,
     [[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]],
     {"sample_weight": [0.7, 0.3]}, 0.3),
    ("SparseCategoricalAccuracyTest::test_unweighted", metrics.sparse_categorical_accuracy,
     [[2], [1]], [[0.1, 0.6, 0.3], [0.05, 0.95, 0]], {}, 0.5),
    ("SparseCategoricalAccuracyTest::test_weighted", metrics.sparse_categorical_accuracy,
     [[2], [1]], [[0.1, 0.6, 0.3], [0.05, 0.95, 0]], {"sample_weight": [0.7, 0.3]}, 0.3),
    ("SparseCategoricalAccuracyTest::test_squeeze_y_true", metrics.sparse_categorical_accuracy,
     [[0], [1], [2]], [[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9]], {}, 1.0),
    ("SparseCategoricalAccuracyTest::test_cast_y_pred_dtype", metrics.sparse_categorical_accuracy,
     np.array([0, 1], dtype=np.int64), np.array([[0.9, 0.1], [0.1, 0.9]], dtype=np.float32),
     {}, 1.0),
    ("SparseCategoricalAccuracyTest::test_squeeze_y_true_shape",
     metrics.sparse_categorical_accuracy,
     [[0], [1], [2]], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], {}, 1.0),
    ("SparseCategoricalAccuracyTest::test_cast_y_pred_to_match_y_true_dtype",
     metrics.sparse_categorical_accuracy, np.array([0, 1, 2], dtype=np.int32),
     np.array([[0.9, 0.1, 0.0], [0.0, 0.9, 0.1], [0.1, 0.0, 0.9]]), {}, 1.0),
    ("SparseCategoricalAccuracyTest::test_reshape_matches_to_original_y_true_shape",
     metrics.sparse_categorical_accuracy, [[0], [1]], [[0.9, 0.1], [0.1, 0.9]], {}, 1.0),
    ("SparseCategoricalAccuracyTest::test_matching_shapes_without_squeeze",
     metrics.sparse_categorical_accuracy, np.array([2, 1, 0], dtype=np.int32),
     np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=np.float32), {}, 1.0),
    ("TopKCategoricalAccuracyTest::test_unweighted", metrics.top_k_categorical_accuracy,
     [[0, 0, 1], [0, 1, 0]], np.array([[0.1, 0.9, 0.8], [0.05, 0.95, 0]], dtype=np.float32),
     {"k": 1}, 0.5),
    ("TopKCategoricalAccuracyTest::test_weighted", metrics.top_k_categorical_accuracy,
     [[0, 0, 1], [0, 1, 0]], np.array([[0.1, 0.9, 0.8], [0.05, 0.95, 0]], dtype=np.float32),
     {"k": 1, "sample_weight": [0.7, 0.3]}, 0.3),
    ("SparseTopKCategoricalAccuracyTest::test_unweighted",
     metrics.sparse_top_k_categorical_accuracy, [2, 1],
     np.array([[0.1, 0.9, 0.8], [0.05, 0.95, 0]], dtype=np.float32), {"k": 1}, 0.5),
    ("SparseTopKCategoricalAccuracyTest::test_weighted",
     metrics.sparse_top_k_categorical_accuracy, [2, 1],
     np.array([[0.1, 0.9, 0.8], [0.05, 0.95, 0]], dtype=np.float32),
     {"k": 1, "sample_weight": [0.7, 0.3]}, 0.3),
]


@pytest.mark.parametrize(("test", "metric", "y_true", "y_pred", "options", "expected"),
                         ACCURACY_CASES, ids=[case[0] for case in ACCURACY_CASES])
def test_keras_accuracy_cases(test, metric, y_true, y_pred, options, expected):
    # keras/src/metrics/accuracy_metrics_test.py::<test>, Keras' tolerance atol=1e-3
    assert metric(y_true, y_pred, **options) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("y_true", "y_pred", "same_as"), [
    ([[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]], metrics.binary_accuracy),
    ([[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]], metrics.categorical_accuracy),
    ([[2], [1]], [[0.1, 0.6, 0.3], [0.05, 0.95, 0]], metrics.sparse_categorical_accuracy),
    ([2, 1], [[0.1, 0.6, 0.3], [0.05, 0.95, 0]], metrics.sparse_categorical_accuracy),
])
def test_accuracy_resolves_as_keras_compile_does(y_true, y_pred, same_as):
    # keras/src/trainers/compile_utils.py::get_metric: binary when y_pred's last axis is 1,
    # sparse when y_true has a lower rank or a last axis of 1, categorical otherwise; the inputs
    # are those of the accuracy_metrics_test.py cases above
    weights = np.linspace(0.3, 0.7, len(y_true))
    for name in ("accuracy", "acc"):
        assert metrics.get(name)(y_true, y_pred, sample_weight=weights) == same_as(
            y_true, y_pred, sample_weight=weights)


# ---------------------------------------------------------------------------------------------
# F-beta (keras/src/metrics/f_score_metrics_test.py::FBetaScoreTest)

RANDOM_PRED = [[0.7, 0.7, 0.7], [1, 0, 0], [0.9, 0.8, 0]]
SIX_TRUE = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0], [1, 0, 0], [0, 0, 1]]
SIX_PRED = [[0.9, 0.1, 0], [0.2, 0.6, 0.2], [0, 0, 1], [0.4, 0.3, 0.3], [0, 0.9, 0.1],
            [0, 0, 1]]
AVERAGES_AND_BETAS = [(average, beta) for average in ("micro", "macro", "weighted")
                      for beta in (0.5, 1.0, 2.0)]


@pytest.mark.parametrize(("average", "beta"), AVERAGES_AND_BETAS)
def test_keras_fbeta_perfect_and_worst_scores(average, beta):
    # f_score_metrics_test.py::FBetaScoreTest::test_fbeta_perfect_score / test_fbeta_worst_score
    assert metrics.fbeta_score([[1, 1, 1], [1, 0, 0], [1, 1, 0]], RANDOM_PRED, beta, average,
                               threshold=0.66) == pytest.approx(1.0, abs=1e-6)
    assert metrics.fbeta_score([[0, 0, 0], [0, 1, 0], [0, 0, 1]], RANDOM_PRED, beta, average,
                               threshold=0.66) == 0.0


@pytest.mark.parametrize(("average", "beta", "expected"), [
    (None, 0.5, [0.71428573, 0.5, 0.833334]),
    (None, 1.0, [0.8, 0.5, 0.6666667]),
    (None, 2.0, [0.9090904, 0.5, 0.555556]),
    ("micro", 0.5, 0.6666667), ("micro", 1.0, 0.6666667), ("micro", 2.0, 0.6666667),
    ("macro", 0.5, 0.6825397), ("macro", 1.0, 0.6555555), ("macro", 2.0, 0.6548822),
    ("weighted", 0.5, 0.6825397), ("weighted", 1.0, 0.6555555), ("weighted", 2.0, 0.6548822),
])
def test_keras_fbeta_random_score(average, beta, expected):
    # f_score_metrics_test.py::FBetaScoreTest::test_fbeta_random_score (Keras: atol=1e-6)
    value = metrics.fbeta_score([[0, 0, 1], [1, 1, 0], [1, 1, 1]], RANDOM_PRED, beta, average,
                                threshold=0.66)
    np.testing.assert_allclose(value, expected, atol=1e-6)


@pytest.mark.parametrize(("average", "beta", "expected"), [
    (None, 0.5, [0.9090904, 0.555556, 1.0]),
    (None, 1.0, [0.8, 0.6666667, 1.0]),
    (None, 2.0, [0.71428573, 0.833334, 1.0]),
    ("micro", 0.5, 0.833334), ("micro", 1.0, 0.833334), ("micro", 2.0, 0.833334),
    ("macro", 0.5, 0.821549), ("macro", 1.0, 0.822222), ("macro", 2.0, 0.849206),
    ("weighted", 0.5, 0.880471), ("weighted", 1.0, 0.844445), ("weighted", 2.0, 0.829365),
])
def test_keras_fbeta_random_score_none(average, beta, expected):
    # f_score_metrics_test.py::FBetaScoreTest::test_fbeta_random_score_none
    value = metrics.fbeta_score(SIX_TRUE, SIX_PRED, beta, average, threshold=None)
    np.testing.assert_allclose(value, expected, atol=1e-6)


WEIGHTS_ONES, WEIGHTS_DROP, WEIGHTS_HALF = ([1.0] * 6, [1.0, 0.0, 1.0, 1.0, 0.0, 1.0],
                                            [0.5, 1.0, 1.0, 1.0, 0.5, 1.0])


@pytest.mark.parametrize(("average", "beta", "weights", "expected"), [
    (None, 0.5, WEIGHTS_ONES, [0.909091, 0.555556, 1.0]),
    (None, 0.5, WEIGHTS_DROP, [1.0, 0.0, 1.0]),
    (None, 0.5, WEIGHTS_HALF, [0.9375, 0.714286, 1.0]),
    (None, 1.0, WEIGHTS_ONES, [0.8, 0.666667, 1.0]),
    (None, 1.0, WEIGHTS_DROP, [1.0, 0.0, 1.0]),
    (None, 1.0, WEIGHTS_HALF, [0.857143, 0.8, 1.0]),
    (None, 2.0, WEIGHTS_ONES, [0.714286, 0.833333, 1.0]),
    (None, 2.0, WEIGHTS_DROP, [1.0, 0.0, 1.0]),
    (None, 2.0, WEIGHTS_HALF, [0.789474, 0.909091, 1.0]),
    ("micro", 0.5, WEIGHTS_ONES, 0.833333), ("micro", 0.5, WEIGHTS_DROP, 1.0),
    ("micro", 0.5, WEIGHTS_HALF, 0.9), ("micro", 1.0, WEIGHTS_ONES, 0.833333),
    ("micro", 1.0, WEIGHTS_DROP, 1.0), ("micro", 1.0, WEIGHTS_HALF, 0.9),
    ("micro", 2.0, WEIGHTS_ONES, 0.833333), ("micro", 2.0, WEIGHTS_DROP, 1.0),
    ("micro", 2.0, WEIGHTS_HALF, 0.9),
    ("macro", 0.5, WEIGHTS_ONES, 0.821549), ("macro", 0.5, WEIGHTS_DROP, 0.666667),
    ("macro", 0.5, WEIGHTS_HALF, 0.883929), ("macro", 1.0, WEIGHTS_ONES, 0.822222),
    ("macro", 1.0, WEIGHTS_DROP, 0.666667), ("macro", 1.0, WEIGHTS_HALF, 0.885714),
    ("macro", 2.0, WEIGHTS_ONES, 0.849206), ("macro", 2.0, WEIGHTS_DROP, 0.666667),
    ("macro", 2.0, WEIGHTS_HALF, 0.899522),
    ("weighted", 0.5, WEIGHTS_ONES, 0.880471), ("weighted", 0.5, WEIGHTS_DROP, 1.0),
    ("weighted", 0.5, WEIGHTS_HALF, 0.917857), ("weighted", 1.0, WEIGHTS_ONES, 0.844444),
    ("weighted", 1.0, WEIGHTS_DROP, 1.0), ("weighted", 1.0, WEIGHTS_HALF, 0.902857),
    ("weighted", 2.0, WEIGHTS_ONES, 0.829365), ("weighted", 2.0, WEIGHTS_DROP, 1.0),
    ("weighted", 2.0, WEIGHTS_HALF, 0.897608),
])
def test_keras_fbeta_weighted_random_score_none(average, beta, weights, expected):
    # f_score_metrics_test.py::FBetaScoreTest::test_fbeta_weighted_random_score_none
    value = metrics.fbeta_score(SIX_TRUE, SIX_PRED, beta, average, None, weights)
    np.testing.assert_allclose(value, expected, atol=1e-6)


def test_keras_f1_score_correctness():
    # f_score_metrics_test.py::F1ScoreTest::test_correctness, and the F1Score docstring example
    np.testing.assert_array_equal(metrics.f1_score(SIX_TRUE, SIX_PRED),
                                  metrics.fbeta_score(SIX_TRUE, SIX_PRED, beta=1.0))
    np.testing.assert_allclose(metrics.f1_score([[1, 1, 1], [1, 0, 0], [1, 1, 0]],
                                                [[0.2, 0.6, 0.7], [0.2, 0.6, 0.6],
                                                 [0.6, 0.8, 0.0]], threshold=0.5),
                               [0.5, 0.8, 0.6666667], atol=1e-6)


# ---------------------------------------------------------------------------------------------
# regression (keras/src/metrics/regression_metrics_test.py)

FOUR_BY_FIVE_TRUE = np.array([[0, 1, 0, 1, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 0],
                              [0, 0, 0, 0, 1]])
FOUR_BY_FIVE_PRED = np.array([[0, 0, 1, 1, 0], [1, 1, 1, 1, 1], [0, 1, 0, 1, 0],
                              [1, 1, 1, 1, 1]], dtype=np.float32)
FOUR_WEIGHTS = np.array([1.0, 1.5, 2.0, 2.5])


@pytest.mark.parametrize(("test", "metric", "weights", "expected", "tolerance"), [
    ("MeanSquaredErrorTest::test_unweighted", metrics.mse, None, 0.5, 1e-5),
    ("MeanSquaredErrorTest::test_weighted", metrics.mse, FOUR_WEIGHTS, 0.54285, 1e-5),
    ("MeanAbsoluteErrorTest::test_unweighted", metrics.mae, None, 0.5, 1e-5),
    ("MeanAbsoluteErrorTest::test_weighted", metrics.mae, FOUR_WEIGHTS, 0.54285, 1e-5),
    # zero targets make terms of 100 / 1e-7 = 1e9, and Keras' float32 result keeps 7 digits:
    # the exact mean is 35e7 + 15, so the comparison is to a relative 1e-6
    ("MeanAbsolutePercentageErrorTest::test_unweighted", metrics.mape, None, 35e7, 350.0),
    ("MeanAbsolutePercentageErrorTest::test_weighted", metrics.mape, FOUR_WEIGHTS, 40e7, 400.0),
    ("MeanSquaredLogarithmicErrorTest::test_unweighted", metrics.msle, None, 0.24022, 1e-5),
    ("MeanSquaredLogarithmicErrorTest::test_weighted", metrics.msle, FOUR_WEIGHTS, 0.26082,
     1e-5),
], ids=lambda value: value if isinstance(value, str) else None)
def test_keras_regression_cases(test, metric, weights, expected, tolerance):
    # regression_metrics_test.py::<test>
    assert metric(FOUR_BY_FIVE_TRUE, FOUR_BY_FIVE_PRED, sample_weight=weights) == pytest.approx(
        expected, abs=tolerance)


def test_keras_root_mean_squared_error_cases_through_mse():
    # regression_metrics_test.py::RootMeanSquaredErrorTest::test_unweighted / test_weighted
    assert np.sqrt(metrics.mse([2, 4, 6], [1, 3, 2])) == pytest.approx(np.sqrt(6), abs=1e-12)
    assert np.sqrt(metrics.mse([2, 4, 6, 8], [1, 3, 2, 3], [0, 1, 0, 1])) == pytest.approx(
        np.sqrt(13), abs=1e-12)


R2_TRUE = [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]


@pytest.mark.parametrize(("aggregation", "expected"), [
    (None, [0.37, -1.295, 0.565]), ("uniform_average", -0.12),
    ("variance_weighted_average", -0.12)])
def test_keras_r2_sklearn_comparison(aggregation, expected):
    # regression_metrics_test.py::R2ScoreTest::test_r2_sklearn_comparison (atol=1e-6)
    y_pred = [[0.4, 0.5, 0.6], [0.1, 0.2, 0.3], [0.5, 0.8, 0.2]]
    np.testing.assert_allclose(metrics.r2_score(R2_TRUE, y_pred, aggregation), expected,
                               atol=1e-6)


@pytest.mark.parametrize(("aggregation", "regressors", "expected"), [
    (None, 0, [0.17305559, -8.836666, -0.521]),
    (None, 1, [0.054920673, -10.241904, -0.7382858]),
    (None, 2, [-0.10259259, -12.115555, -1.0280001]),
    ("uniform_average", 0, -3.0615367889404297),
    ("uniform_average", 1, -3.641756534576416),
    ("uniform_average", 2, -4.415382385253906),
    ("variance_weighted_average", 0, -1.3710224628448486),
    ("variance_weighted_average", 1, -1.7097399234771729),
    ("variance_weighted_average", 2, -2.161363363265991),
])
def test_keras_r2_tfa_comparison(aggregation, regressors, expected):
    # regression_metrics_test.py::R2ScoreTest::test_r2_tfa_comparison; Keras' float32 numbers
    # agree to its atol=1e-6 only in float32, minidl computes in float64
    y_pred = [[0.4, 0.9, 1.6], [0.1, 1.2, 0.6], [1.5, 0.8, 0.6]]
    np.testing.assert_allclose(metrics.r2_score(R2_TRUE, y_pred, aggregation, regressors,
                                                sample_weight=[0.8, 0.1, 0.4]),
                               expected, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# precision, recall (keras/src/metrics/confusion_metrics_test.py): Keras' Precision and Recall
# score thresholded binary predictions, element by element, which is average="binary" here;
# Keras' 2-D cases are flattened to one binary problem, exactly what Keras counts


def test_keras_precision_cases():
    # CONFUSION::PrecisionTest::test_unweighted, test_unweighted_with_threshold (0.5),
    # test_weighted, test_div_by_zero, test_unweighted_all_incorrect
    assert metrics.precision([0, 1, 1, 0], [1, 0, 1, 0], average="binary") == 0.5
    assert metrics.precision([0, 1, 1, 0], [1, 0, 0.6, 0], average="binary") == 0.5
    y_true, y_pred = np.array([[0, 1, 1, 0], [1, 0, 0, 1]]), np.array([[1, 0, 1, 0], [1, 0, 1, 0]])
    weights = np.array([[1, 2, 3, 4], [4, 3, 2, 1]])
    assert metrics.precision(y_true.ravel(), y_pred.ravel(), "binary",
                             sample_weight=weights.ravel()) == pytest.approx(7 / 10)
    assert metrics.precision([0, 0, 0, 0], [0, 0, 0, 0], average="binary") == 0.0
    inputs = np.random.default_rng(0).integers(0, 2, size=(100, 1))
    assert metrics.precision(1 - inputs, inputs, average="binary") == 0.0


def test_keras_recall_cases():
    # CONFUSION::RecallTest::test_unweighted, test_unweighted_with_threshold (0.5),
    # test_weighted, test_div_by_zero, test_unweighted_all_incorrect
    assert metrics.recall([0, 1, 1, 0], [1, 0, 1, 0], average="binary") == 0.5
    assert metrics.recall([0, 1, 1, 0], [1, 0, 0.6, 0], average="binary") == 0.5
    y_true, y_pred = np.array([[0, 1, 1, 0], [1, 0, 0, 1]]), np.array([[1, 0, 1, 0], [0, 1, 0, 1]])
    weights = np.array([[1, 2, 3, 4], [4, 3, 2, 1]])
    assert metrics.recall(y_true.ravel(), y_pred.ravel(), "binary",
                          sample_weight=weights.ravel()) == pytest.approx(4 / 10)
    assert metrics.recall([0, 0, 0, 0], [0, 0, 0, 0], average="binary") == 0.0
    inputs = np.random.default_rng(0).integers(0, 2, size=(100, 1))
    assert metrics.recall(1 - inputs, inputs, average="binary") == 0.0


# ---------------------------------------------------------------------------------------------
# AUC (keras/src/metrics/confusion_metrics_test.py::AUCTest, MultiAUCTest). Keras' expected
# numbers there come from 3 or 5 thresholds; minidl's exact areas are checked against
# scikit-learn on the same inputs, and equal Keras' where the buckets lose nothing.

AUC_TRUE, AUC_PRED, AUC_WEIGHTS = [0, 0, 1, 1], [0, 0.5, 0.3, 0.9], [1, 2, 3, 4]
MULTI_PRED = np.array([[0, 0.5, 0.3, 0.9], [0.1, 0.2, 0.3, 0.4]]).T
MULTI_GOOD = np.array([[0, 0, 1, 1], [0, 0, 1, 1]]).T
MULTI_BAD = np.array([[0, 0, 1, 1], [1, 1, 0, 0]]).T


def test_keras_auc_all_correct_cases():
    # CONFUSION::AUCTest::test_unweighted_all_correct, MultiAUCTest::test_unweighted_all_correct
    # and test_unweighted_all_correct_flat: 1 exactly, as in Keras
    assert metrics.auc(AUC_TRUE, AUC_TRUE) == 1.0
    assert metrics.auc(MULTI_GOOD, MULTI_GOOD, multi_label=True) == 1.0
    assert metrics.auc(MULTI_GOOD, MULTI_GOOD, multi_label=False) == 1.0


def test_keras_auc_unweighted_equals_keras_where_three_thresholds_lose_nothing():
    # CONFUSION::AUCTest::test_unweighted (Keras 0.75 with num_thresholds=3) and
    # test_unweighted_from_logits (the same on logits: minidl needs no from_logits)
    assert metrics.auc(AUC_TRUE, AUC_PRED) == 0.75 == skm.roc_auc_score(AUC_TRUE, AUC_PRED)
    logits = -np.log(1.0 / (np.array(AUC_PRED) + 1e-12) - 1.0)
    assert metrics.auc(AUC_TRUE, logits) == 0.75


@pytest.mark.parametrize(("case", "options", "oracle"), [
    # Keras with its coarse thresholds: 0.7855 (ROC), 2.416/7 + 4/7 (PR, interpolated)
    ("AUCTest::test_weighted_roc_interpolation", {"sample_weight": AUC_WEIGHTS},
     lambda: skm.roc_auc_score(AUC_TRUE, AUC_PRED, sample_weight=AUC_WEIGHTS)),
    ("AUCTest::test_weighted_pr_interpolation", {"curve": "PR", "sample_weight": AUC_WEIGHTS},
     lambda: skm.average_precision_score(AUC_TRUE, AUC_PRED, sample_weight=AUC_WEIGHTS)),
], ids=lambda value: value if isinstance(value, str) else None)
def test_keras_weighted_auc_cases_are_exact(case, options, oracle):
    assert metrics.auc(AUC_TRUE, AUC_PRED, **options) == pytest.approx(oracle(), abs=1e-12)


@pytest.mark.parametrize(("case", "y_true", "options", "average", "sample_weight"), [
    ("MultiAUCTest::test_unweighted", MULTI_GOOD, {"multi_label": True}, "macro", None),
    ("MultiAUCTest::test_unweighted_flat", MULTI_GOOD, {}, "micro", None),
    ("MultiAUCTest::test_sample_weight_flat", MULTI_GOOD, {"sample_weight": AUC_WEIGHTS},
     "micro", np.repeat(AUC_WEIGHTS, 2)),
    ("MultiAUCTest::test_weighted_roc_interpolation", MULTI_GOOD,
     {"multi_label": True, "sample_weight": AUC_WEIGHTS}, "macro", AUC_WEIGHTS),
    ("MultiAUCTest::test_pr_interpolation_unweighted (bad)", MULTI_BAD,
     {"multi_label": True, "curve": "PR"}, "macro", None),
], ids=lambda value: value if isinstance(value, str) else None)
def test_keras_multi_label_auc_cases_match_sklearn(case, y_true, options, average,
                                                   sample_weight):
    oracle = skm.average_precision_score if options.get("curve") == "PR" else skm.roc_auc_score
    if average == "micro":
        expected = oracle(y_true.ravel(), MULTI_PRED.ravel(), sample_weight=sample_weight)
    else:
        expected = oracle(y_true, MULTI_PRED, average="macro", sample_weight=sample_weight)
    assert metrics.auc(y_true, MULTI_PRED, **options) == pytest.approx(expected, abs=1e-12)


def test_keras_multi_label_auc_label_weights():
    # CONFUSION::MultiAUCTest::test_label_weights: Keras' weighted mean of the label areas
    per_label = skm.roc_auc_score(MULTI_GOOD, MULTI_PRED, average=None)
    assert metrics.auc(MULTI_GOOD, MULTI_PRED, multi_label=True,
                       label_weights=[0.75, 0.25]) == pytest.approx(
        0.75 * per_label[0] + 0.25 * per_label[1], abs=1e-12)


# ---------------------------------------------------------------------------------------------
# Keras itself, when installed


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


def keras_value(metric, y_true, y_pred, sample_weight=None):
    metric.update_state(np.asarray(y_true, np.float32), np.asarray(y_pred, np.float32),
                        sample_weight=None if sample_weight is None
                        else np.asarray(sample_weight, np.float32))
    return np.asarray(metric.result(), dtype=np.float64)


SEEDS = [0, 1, 2]


@pytest.mark.parametrize("seed", SEEDS)
def test_accuracies_equal_keras(keras, seed):
    rng = np.random.default_rng(seed)
    rows, classes = 40, 4
    weights = rng.uniform(0, 2, rows)
    probs = rng.uniform(0, 1, (rows, 1))
    y_binary = rng.integers(0, 2, (rows, 1))
    scores = rng.standard_normal((rows, classes))
    labels = rng.integers(0, classes, rows)
    one_hot = np.eye(classes)[labels]
    cases = [
        (keras.metrics.BinaryAccuracy(threshold=0.3), metrics.binary_accuracy,
         y_binary, probs, {"threshold": 0.3}),
        (keras.metrics.CategoricalAccuracy(), metrics.categorical_accuracy, one_hot, scores, {}),
        (keras.metrics.SparseCategoricalAccuracy(), metrics.sparse_categorical_accuracy,
         labels[:, None], scores, {}),
        (keras.metrics.TopKCategoricalAccuracy(k=2), metrics.top_k_categorical_accuracy,
         one_hot, scores, {"k": 2}),
        (keras.metrics.SparseTopKCategoricalAccuracy(k=3),
         metrics.sparse_top_k_categorical_accuracy, labels, scores, {"k": 3}),
    ]
    for keras_metric, metric, y_true, y_pred, options in cases:
        assert metric(y_true, y_pred, sample_weight=weights, **options) == pytest.approx(
            keras_value(keras_metric, y_true, y_pred, weights), abs=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_accuracy_picks_the_metric_keras_compile_picks(keras, seed):
    from keras.src.trainers.compile_utils import get_metric

    rng = np.random.default_rng(seed)
    rows, classes = 30, 3
    weights = rng.uniform(0, 2, rows)
    labels = rng.integers(0, classes, rows)
    for y_true, y_pred in [(rng.integers(0, 2, (rows, 1)), rng.uniform(0, 1, (rows, 1))),
                           (labels, rng.uniform(0, 1, (rows, classes))),
                           (labels[:, None], rng.uniform(0, 1, (rows, classes))),
                           (np.eye(classes)[labels], rng.uniform(0, 1, (rows, classes)))]:
        for name in ("accuracy", "acc"):
            keras_metric = get_metric(name, y_true, y_pred)
            assert metrics.get(name)(y_true, y_pred, sample_weight=weights) == pytest.approx(
                keras_value(keras_metric, y_true, y_pred, weights), abs=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_regression_errors_equal_keras(keras, seed):
    rng = np.random.default_rng(seed)
    y_true, y_pred = rng.uniform(0.1, 5, (2, 30, 3))
    weights = rng.uniform(0, 2, 30)
    for keras_metric, metric in [(keras.metrics.MeanSquaredError(), metrics.mse),
                                 (keras.metrics.MeanAbsoluteError(), metrics.mae),
                                 (keras.metrics.MeanAbsolutePercentageError(), metrics.mape),
                                 (keras.metrics.MeanSquaredLogarithmicError(), metrics.msle)]:
        assert metric(y_true, y_pred, sample_weight=weights) == pytest.approx(
            keras_value(keras_metric, y_true, y_pred, weights), rel=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("aggregation", ["uniform_average", "variance_weighted_average", None])
def test_r2_score_equals_keras(keras, seed, aggregation):
    rng = np.random.default_rng(seed)
    y_true, y_pred = rng.standard_normal((2, 30, 3))
    for weights in (rng.uniform(0, 2, 30), rng.uniform(0, 2, (30, 3))):
        keras_metric = keras.metrics.R2Score(class_aggregation=aggregation, num_regressors=4)
        np.testing.assert_allclose(
            metrics.r2_score(y_true, y_pred, aggregation, 4, sample_weight=weights),
            keras_value(keras_metric, y_true, y_pred, weights), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("average", [None, "micro", "macro", "weighted"])
def test_fbeta_score_equals_keras(keras, seed, average):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, (40, 4))
    scores = rng.uniform(0, 1, (40, 4))
    weights = rng.uniform(0, 2, 40)
    for beta, threshold in [(1.0, None), (0.5, 0.4), (2.0, 0.7)]:
        keras_metric = keras.metrics.FBetaScore(average=average, beta=beta, threshold=threshold)
        # Keras' epsilon in each denominator moves its value by about 1e-7 relative
        np.testing.assert_allclose(
            metrics.fbeta_score(y_true, scores, beta, average, threshold, weights),
            keras_value(keras_metric, y_true, scores, weights), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_binary_precision_and_recall_equal_keras(keras, seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, (50, 1))
    probs = rng.uniform(0, 1, (50, 1))
    weights = rng.uniform(0, 2, 50)
    for keras_metric, metric in [(keras.metrics.Precision(), metrics.precision),
                                 (keras.metrics.Recall(), metrics.recall)]:
        assert metric(y_true, probs, average="binary", sample_weight=weights) == pytest.approx(
            keras_value(keras_metric, y_true, probs, weights), abs=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("multi_label", [False, True])
def test_roc_auc_is_the_limit_of_keras_auc_with_many_thresholds(keras, seed, multi_label):
    # probabilities on a grid of 1/1000 that fall between Keras' 10001 thresholds (i/10000):
    # with no sample between two thresholds tied, Keras' trapezoids are then the exact ones
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, (60, 3))
    probs = (rng.integers(0, 1000, (60, 3)) + 0.55) / 1000
    weights = rng.uniform(0.1, 2, 60)
    label_weights = [0.2, 0.3, 0.5]
    keras_metric = keras.metrics.AUC(num_thresholds=10001, multi_label=multi_label,
                                     num_labels=3 if multi_label else None,
                                     label_weights=label_weights)
    assert metrics.auc(y_true, probs, multi_label=multi_label, label_weights=label_weights,
                       sample_weight=weights) == pytest.approx(
        keras_value(keras_metric, y_true, probs, weights), abs=1e-4)


def test_keras_logs_metrics_under_the_names_given_to_compile(keras):
    # what minidl's METRICS keys are for: Keras 3 logs "acc" as "acc", "mse" as "mse"
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile("sgd", "binary_crossentropy", metrics=["acc", "accuracy", "mse", "mae"])
    x = np.random.default_rng(0).uniform(size=(8, 3)).astype(np.float32)
    history = model.fit(x, (x[:, :1] > 0.5).astype(np.float32), epochs=1, verbose=0)
    assert sorted(history.history) == ["acc", "accuracy", "loss", "mae", "mse"]
    assert {"acc", "accuracy", "mse", "mae"} <= set(metrics.METRICS)
