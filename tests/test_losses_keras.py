"""minidl.losses' Keras classes: the values of Keras' own tests (keras/src/losses/losses_test.py,
ported: inputs and expected numbers), direct comparison with Keras (value, and gradient by
torch autograd) on random inputs with every reduction and sample weights, gradients against
central differences, extreme inputs, fusion with the output activation, and configuration.

minidl calls a loss as ``loss(pred, target, sample_weight)``: Keras' ``(y_true, y_pred)``
swapped. Keras and torch are optional: the direct comparisons skip without them.
"""

import json
import os

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import scipy.special
from hypothesis import given
from hypothesis import strategies as st

from minidl import losses
from minidl.losses import (
    LOSSES,
    BinaryCrossentropy,
    CategoricalCrossentropy,
    CategoricalHinge,
    CosineSimilarity,
    Hinge,
    Huber,
    KLDivergence,
    LogCosh,
    MeanAbsoluteError,
    MeanAbsolutePercentageError,
    MeanSquaredError,
    MeanSquaredLogarithmicError,
    Poisson,
    SparseCategoricalCrossentropy,
    SquaredHinge,
)
from minidl.testing import arrays_for, gradcheck

KERAS_TEST = "keras/src/losses/losses_test.py"
# Keras' assertAlmostEqual(decimal=3) and assertAllClose(atol=rtol=1e-6, in float32)
ALMOST, CLOSE = {"abs": 1.5e-3}, {"abs": 1e-5, "rel": 1e-5}

# the regression tests' shared inputs
Y1 = np.array([[1, 9, 2], [-5, -2, 6]])
P1 = np.array([[4, 8, 12], [8, 1, 3]], dtype="float32")
SW = np.array([[1.2], [3.4]])
Y1_T, P1_T = Y1.reshape(2, 3, 1), P1.reshape(2, 3, 1)
SW_T = np.array([3, 6, 5, 0, 4, 2]).reshape((2, 3))
# the hinge tests'
YH = np.array([[0.0, 1.0], [0.0, 0.0]])
PH = np.array([[0.6, 0.4], [0.4, 0.6]])
# the cross-entropy tests'
Y3 = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
P3 = np.array([[0.9, 0.05, 0.05], [0.5, 0.89, 0.6], [0.05, 0.01, 0.94]], dtype="float32")
L3 = np.array([[8.0, 1.0, 1.0], [0.0, 9.0, 1.0], [2.0, 3.0, 5.0]])
SW3 = np.array([[1.2], [3.4], [5.6]])
YB = np.array([1, 0, 1, 0]).reshape([2, 2])
PB = np.array([1, 1, 1, 0], dtype="float32").reshape([2, 2])
YBL, LB = np.array([[1, 0, 1], [0, 1, 1]]), np.array([[10.0, -10.0, 10.0], [10.0, 10.0, -10.0]])


def _keras_l2_norm(x, axis):
    """CosineSimilarityTest.l2_norm."""
    return x / np.sqrt(np.maximum(np.sum(np.square(x), axis=axis, keepdims=True), 1e-12))


def _huber(y, p, delta=1.0):
    """HuberLossTest.huber_loss."""
    quadratic = np.minimum(np.abs(p - y), delta)
    return 0.5 * quadratic**2 + delta * (np.abs(p - y) - quadratic)


_COSINE = np.sum(_keras_l2_norm(Y1.astype(float), 1) * _keras_l2_norm(P1, 1), axis=1)
_COSINE_T = np.sum(_keras_l2_norm(Y1_T.astype(float), 2) * _keras_l2_norm(P1_T, 2), axis=2)
_HUB_P = np.array([[0.9, 0.2, 0.2], [0.8, 0.4, 0.6]])
_HUB_Y = np.array([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
_LOGCOSH = np.log(np.cosh((P1 - Y1).astype(float)))
_KLD_P = np.array([0.4, 0.9, 0.12, 0.36, 0.3, 0.4], dtype=np.float32).reshape((2, 3))
_KLD_Y = np.array([0.5, 0.8, 0.12, 0.7, 0.43, 0.8], dtype=np.float32).reshape((2, 3))
_KLD = _KLD_Y * np.log(_KLD_Y / _KLD_P)
_POI_P = np.array([1, 9, 2, 5, 2, 6], dtype=np.float32).reshape((2, 3))
_POI_Y = np.array([4, 8, 12, 8, 1, 3], dtype=np.float32).reshape((2, 3))
_POI = _POI_P - _POI_Y * np.log(_POI_P)
_SEG_Y = np.array([[0, 1, 1, 0], [1, 0, 1, 0], [0, 0, 1, 1], [1, 1, 0, 1]])
_SEG_P = np.array([
    [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.2, 0.8]], [[0.0, 1.0], [1.0, 0.0], [0.0, 1.0],
                                                       [1.0, 0.0]],
    [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0], [1.0, 0.0],
                                                       [0.6, 0.4]]])
_SEG3_Y = np.array([[0, 1, 2, 0], [1, 0, 1, 0], [0, 0, 1, 1], [1, 1, 0, 1]])
_SEG3_P = np.array([
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.2, 0.0, 0.8]],
    [[0.7, 0.3, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]],
    [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]],
    [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0]]])

# (Keras test, loss, y_true, y_pred, sample_weight, expected, tolerance)
KERAS_CASES = [
    ("MeanSquaredErrorTest::test_all_correct_unweighted", MeanSquaredError(), P1, P1, None,
     0.0, ALMOST),
    ("MeanSquaredErrorTest::test_unweighted", MeanSquaredError(), Y1, P1, None, 49.5, ALMOST),
    ("MeanSquaredErrorTest::test_scalar_weighted", MeanSquaredError(), Y1, P1, 2.3, 113.85,
     ALMOST),
    ("MeanSquaredErrorTest::test_sample_weighted", MeanSquaredError(), Y1, P1, SW, 767.8 / 6,
     ALMOST),
    ("MeanSquaredErrorTest::test_timestep_weighted", MeanSquaredError(), Y1_T, P1_T, SW_T,
     97.833336, ALMOST),
    ("MeanSquaredErrorTest::test_zero_weighted", MeanSquaredError(), Y1, P1, 0, 0.0, ALMOST),
    ("MeanSquaredErrorTest::test_no_reduction", MeanSquaredError(reduction=None), Y1, P1, 2.3,
     [84.3333, 143.3666], ALMOST),
    ("MeanSquaredErrorTest::test_sum_reduction", MeanSquaredError(reduction="sum"), Y1, P1, 2.3,
     227.69998, ALMOST),
    ("MeanSquaredErrorTest::test_mean_with_sample_weight_reduction",
     MeanSquaredError(reduction="mean_with_sample_weight"), Y1, P1, SW,
     (110 / 3 * 1.2 + 187 / 3 * 3.4) / (1.2 + 3.4), ALMOST),
    ("MeanAbsoluteErrorTest::test_unweighted", MeanAbsoluteError(), Y1, P1, None, 5.5, ALMOST),
    ("MeanAbsoluteErrorTest::test_scalar_weighted", MeanAbsoluteError(), Y1, P1, 2.3, 12.65,
     ALMOST),
    ("MeanAbsoluteErrorTest::test_sample_weighted", MeanAbsoluteError(), Y1, P1, SW, 81.4 / 6,
     ALMOST),
    ("MeanAbsoluteErrorTest::test_timestep_weighted", MeanAbsoluteError(), Y1_T, P1_T, SW_T,
     13.833333, ALMOST),
    ("MeanAbsoluteErrorTest::test_zero_weighted", MeanAbsoluteError(), Y1, P1, 0, 0.0, ALMOST),
    ("MeanAbsoluteErrorTest::test_no_reduction", MeanAbsoluteError(reduction=None), Y1, P1, 2.3,
     [10.7333, 14.5666], ALMOST),
    ("MeanAbsoluteErrorTest::test_sum_reduction", MeanAbsoluteError(reduction="sum"), Y1, P1,
     2.3, 25.29999, ALMOST),
    ("MeanAbsoluteErrorTest::test_mean_with_sample_weight_reduction",
     MeanAbsoluteError(reduction="mean_with_sample_weight"), Y1, P1, SW,
     (14 / 3 * 1.2 + 19 / 3 * 3.4) / (1.2 + 3.4), ALMOST),
    ("MeanAbsolutePercentageErrorTest::test_unweighted", MeanAbsolutePercentageError(), Y1, P1,
     None, 211.8518, ALMOST),
    ("MeanAbsolutePercentageErrorTest::test_scalar_weighted", MeanAbsolutePercentageError(),
     Y1, P1, 2.3, 487.259, ALMOST),
    ("MeanAbsolutePercentageErrorTest::test_sample_weighted", MeanAbsolutePercentageError(),
     Y1, P1, SW, 422.8888, ALMOST),
    ("MeanAbsolutePercentageErrorTest::test_timestep_weighted", MeanAbsolutePercentageError(),
     Y1_T, P1_T, SW_T, 694.4444, ALMOST),
    ("MeanAbsolutePercentageErrorTest::test_no_reduction",
     MeanAbsolutePercentageError(reduction=None), Y1, P1, 2.3, [621.8518, 352.6666], ALMOST),
    ("MeanAbsolutePercentageErrorTest::test_mean_with_sample_weight_reduction",
     MeanAbsolutePercentageError(reduction="mean_with_sample_weight"), Y1, P1, SW, 183.865,
     ALMOST),
    ("MeanSquaredLogarithmicErrorTest::test_unweighted", MeanSquaredLogarithmicError(), Y1, P1,
     None, 1.4370, ALMOST),
    ("MeanSquaredLogarithmicErrorTest::test_scalar_weighted", MeanSquaredLogarithmicError(),
     Y1, P1, 2.3, 3.3051, ALMOST),
    ("MeanSquaredLogarithmicErrorTest::test_sample_weighted", MeanSquaredLogarithmicError(),
     Y1, P1, SW, 3.7856, ALMOST),
    ("MeanSquaredLogarithmicErrorTest::test_timestep_weighted", MeanSquaredLogarithmicError(),
     Y1_T, P1_T, SW_T, 2.647374, ALMOST),
    ("MeanSquaredLogarithmicErrorTest::test_mean_with_sample_weight_reduction",
     MeanSquaredLogarithmicError(reduction="mean_with_sample_weight"), Y1, P1, SW, 1.646,
     ALMOST),
    ("HingeTest::test_unweighted", Hinge(), YH, PH, None, 1.3, ALMOST),
    ("HingeTest::test_unweighted", Hinge(reduction="sum"), YH, PH, None, 2.6, ALMOST),
    ("HingeTest::test_unweighted", Hinge(reduction=None), YH, PH, None, [1.1, 1.5], CLOSE),
    ("HingeTest::test_weighted", Hinge(), YH, PH, [1, 0], 0.55, ALMOST),
    ("HingeTest::test_weighted", Hinge(reduction="sum"), YH, PH, [1, 0], 1.1, ALMOST),
    ("HingeTest::test_weighted", Hinge(reduction=None), YH, PH, [1, 0], [1.1, 0.0], ALMOST),
    ("HingeTest::test_zero_weighted", Hinge(), YH, PH, 0.0, 0.0, CLOSE),
    ("SquaredHingeTest::test_unweighted", SquaredHinge(), YH, PH, None, 1.86, ALMOST),
    ("SquaredHingeTest::test_unweighted", SquaredHinge(reduction="sum"), YH, PH, None, 3.72,
     ALMOST),
    ("SquaredHingeTest::test_unweighted", SquaredHinge(reduction=None), YH, PH, None,
     [1.46, 2.26], CLOSE),
    ("SquaredHingeTest::test_weighted", SquaredHinge(), YH, PH, [1, 0], 0.73, ALMOST),
    ("SquaredHingeTest::test_weighted", SquaredHinge(reduction="sum"), YH, PH, [1, 0], 1.46,
     ALMOST),
    ("SquaredHingeTest::test_weighted", SquaredHinge(reduction=None), YH, PH, [1, 0],
     [1.46, 0.0], ALMOST),
    ("CategoricalHingeTest::test_unweighted", CategoricalHinge(), YH, PH, None, 1.4, ALMOST),
    ("CategoricalHingeTest::test_unweighted", CategoricalHinge(reduction="sum"), YH, PH, None,
     2.8, ALMOST),
    ("CategoricalHingeTest::test_unweighted", CategoricalHinge(reduction=None), YH, PH, None,
     [1.2, 1.6], CLOSE),
    ("CategoricalHingeTest::test_weighted", CategoricalHinge(), YH, PH, [1, 0], 0.6, ALMOST),
    ("CategoricalHingeTest::test_weighted", CategoricalHinge(reduction=None), YH, PH, [1, 0],
     [1.2, 0.0], ALMOST),
    ("CosineSimilarityTest::test_unweighted", CosineSimilarity(), Y1, P1, None,
     -np.mean(_COSINE), ALMOST),
    ("CosineSimilarityTest::test_scalar_weighted", CosineSimilarity(), Y1, P1, 2.3,
     -np.mean(_COSINE * 2.3), ALMOST),
    ("CosineSimilarityTest::test_sample_weighted", CosineSimilarity(), Y1, P1,
     np.array([1.2, 3.4]), -np.mean(_COSINE * np.array([1.2, 3.4])), ALMOST),
    ("CosineSimilarityTest::test_timestep_weighted", CosineSimilarity(), Y1_T, P1_T, SW_T,
     -np.mean(_COSINE_T * SW_T), ALMOST),
    ("CosineSimilarityTest::test_zero_weighted", CosineSimilarity(), Y1, P1, 0, 0.0, ALMOST),
    ("CosineSimilarityTest::test_axis", CosineSimilarity(axis=1), Y1, P1, None,
     -np.mean(_COSINE), ALMOST),
    ("HuberLossTest::test_all_correct", Huber(), _HUB_Y, _HUB_Y, None, 0.0, ALMOST),
    ("HuberLossTest::test_unweighted", Huber(), _HUB_Y, _HUB_P, None,
     np.sum(_huber(_HUB_Y, _HUB_P)) / 6, ALMOST),
    ("HuberLossTest::test_scalar_weighted", Huber(), _HUB_Y, _HUB_P, 2.3,
     2.3 * np.sum(_huber(_HUB_Y, _HUB_P)) / 6, ALMOST),
    ("HuberLossTest::test_sample_weighted", Huber(), _HUB_Y, _HUB_P, SW,
     np.sum(_huber(_HUB_Y, _HUB_P) * SW) / 6, ALMOST),
    ("HuberLossTest::test_timestep_weighted", Huber(), _HUB_Y.reshape(2, 3, 1),
     _HUB_P.reshape(2, 3, 1), SW_T.reshape(2, 3, 1),
     np.sum(_huber(_HUB_Y, _HUB_P) * SW_T) / 6, ALMOST),
    ("HuberLossTest::test_zero_weighted", Huber(), _HUB_Y, _HUB_P, 0, 0.0, ALMOST),
    ("HuberLossTest::test_non_default_delta", Huber(delta=0.8), _HUB_Y, _HUB_P, 2.3,
     2.3 * np.sum(_huber(_HUB_Y, _HUB_P, 0.8)) / 6, ALMOST),
    ("LogCoshTest::test_unweighted", LogCosh(), Y1, P1, None, np.sum(_LOGCOSH) / 6, ALMOST),
    ("LogCoshTest::test_scalar_weighted", LogCosh(), Y1, P1, 2.3, 2.3 * np.sum(_LOGCOSH) / 6,
     ALMOST),
    ("LogCoshTest::test_sample_weighted", LogCosh(), Y1, P1, np.array([1.2, 3.4]),
     np.sum(_LOGCOSH * SW) / 6, ALMOST),
    ("LogCoshTest::test_timestep_weighted", LogCosh(), Y1_T, P1_T, SW_T.reshape(2, 3, 1),
     np.sum(_LOGCOSH * SW_T) / 6, ALMOST),
    ("LogCoshTest::test_zero_weighted", LogCosh(), Y1, P1, 0, 0.0, ALMOST),
    ("KLDivergenceTest::test_unweighted", KLDivergence(), _KLD_Y, _KLD_P, None,
     np.sum(_KLD) / 2, ALMOST),
    ("KLDivergenceTest::test_scalar_weighted", KLDivergence(), _KLD_Y, _KLD_P, 2.3,
     2.3 * np.sum(_KLD) / 2, ALMOST),
    ("KLDivergenceTest::test_sample_weighted", KLDivergence(), _KLD_Y, _KLD_P, SW,
     np.sum(_KLD * SW) / 2, ALMOST),
    ("KLDivergenceTest::test_timestep_weighted", KLDivergence(), _KLD_Y.reshape(2, 3, 1),
     _KLD_P.reshape(2, 3, 1), SW_T, np.sum(_KLD * SW_T) / 6, ALMOST),
    ("KLDivergenceTest::test_zero_weighted", KLDivergence(), _KLD_Y, _KLD_P, 0, 0.0, ALMOST),
    ("PoissonTest::test_unweighted", Poisson(), _POI_Y, _POI_P, None, np.sum(_POI) / 6, ALMOST),
    ("PoissonTest::test_scalar_weighted", Poisson(), _POI_Y, _POI_P, 2.3,
     2.3 * np.sum(_POI) / 6, ALMOST),
    ("PoissonTest::test_sample_weighted", Poisson(), _POI_Y, _POI_P, SW,
     np.sum(_POI * SW) / 6, ALMOST),
    ("PoissonTest::test_timestep_weighted", Poisson(), _POI_Y.reshape(2, 3, 1),
     _POI_P.reshape(2, 3, 1), SW_T, np.sum(_POI * SW_T) / 6, ALMOST),
    ("PoissonTest::test_zero_weighted", Poisson(), _POI_Y, _POI_P, 0, 0.0, ALMOST),
    ("BinaryCrossentropyTest::test_all_correct_unweighted", BinaryCrossentropy(),
     Y3.astype("float32"), Y3.astype("float32"), None, 0.0, ALMOST),
    ("BinaryCrossentropyTest::test_all_correct_unweighted", BinaryCrossentropy(from_logits=True),
     Y3.astype("float32"), 20.0 * Y3 - 10.0, None, 0.0, ALMOST),
    ("BinaryCrossentropyTest::test_unweighted", BinaryCrossentropy(), Y3.astype("float32"),
     np.array([[0.9, 0.1, 0.2], [0.3, 0.8, 0.1], [0.1, 0.2, 0.7]], dtype="float32"), None,
     0.20046903, CLOSE),
    ("BinaryCrossentropyTest::test_unweighted", BinaryCrossentropy(), YB, PB, None, 3.98559,
     ALMOST),
    ("BinaryCrossentropyTest::test_unweighted", BinaryCrossentropy(from_logits=True), YBL, LB,
     None, 3.3333, ALMOST),
    ("BinaryCrossentropyTest::test_scalar_weighted", BinaryCrossentropy(), YB, PB, 2.3, 9.1668,
     ALMOST),
    ("BinaryCrossentropyTest::test_scalar_weighted", BinaryCrossentropy(from_logits=True), YBL,
     LB, 2.3, 7.666, ALMOST),
    ("BinaryCrossentropyTest::test_sample_weighted", BinaryCrossentropy(), YB, PB,
     np.array([1.2, 3.4]).reshape((2, 1)), 4.7827, ALMOST),
    ("BinaryCrossentropyTest::test_sample_weighted", BinaryCrossentropy(from_logits=True), YBL,
     LB, np.array([4, 3]), 10.0, ALMOST),
    ("BinaryCrossentropyTest::test_no_reduction",
     BinaryCrossentropy(from_logits=True, reduction=None), YBL, LB, None, [0.0, 6.666],
     {"abs": 1e-3}),
    ("BinaryCrossentropyTest::test_label_smoothing",
     BinaryCrossentropy(from_logits=True, label_smoothing=0.1), np.array([[1, 0, 1]]),
     np.array([[10.0, -10.0, -10.0]]), None, (10.0 + 5.0 * 0.1) / 3.0, ALMOST),
    ("CategoricalCrossentropyTest::test_all_correct_unweighted", CategoricalCrossentropy(), Y3,
     Y3.astype("float32"), None, 0.0, ALMOST),
    ("CategoricalCrossentropyTest::test_all_correct_unweighted",
     CategoricalCrossentropy(from_logits=True), Y3, 10.0 * Y3, None, 0.0, ALMOST),
    ("CategoricalCrossentropyTest::test_unweighted", CategoricalCrossentropy(), Y3, P3, None,
     0.3239, ALMOST),
    ("CategoricalCrossentropyTest::test_unweighted", CategoricalCrossentropy(from_logits=True),
     Y3, L3, None, 0.0573, ALMOST),
    ("CategoricalCrossentropyTest::test_scalar_weighted", CategoricalCrossentropy(), Y3, P3,
     2.3, 0.7449, ALMOST),
    ("CategoricalCrossentropyTest::test_scalar_weighted",
     CategoricalCrossentropy(from_logits=True), Y3, L3, 2.3, 0.1317, ALMOST),
    ("CategoricalCrossentropyTest::test_sample_weighted", CategoricalCrossentropy(), Y3, P3,
     SW3, 1.0696, ALMOST),
    ("CategoricalCrossentropyTest::test_sample_weighted",
     CategoricalCrossentropy(from_logits=True), Y3, L3, SW3, 0.31829, ALMOST),
    ("CategoricalCrossentropyTest::test_no_reduction",
     CategoricalCrossentropy(from_logits=True, reduction=None), Y3, L3, None,
     [0.001822, 0.000459, 0.169846], CLOSE),
    ("CategoricalCrossentropyTest::test_label_smoothing",
     CategoricalCrossentropy(from_logits=True, label_smoothing=0.1), np.array([[1, 0, 0]]),
     np.array([[100.0, -100.0, -100.0]]), None, 400.0 * 0.1 / 3.0, ALMOST),
    ("SparseCategoricalCrossentropyTest::test_all_correct_unweighted",
     SparseCategoricalCrossentropy(), np.array([[0], [1], [2]]), Y3.astype("float32"), None,
     0.0, ALMOST),
    ("SparseCategoricalCrossentropyTest::test_all_correct_unweighted",
     SparseCategoricalCrossentropy(from_logits=True), np.array([[0], [1], [2]]), 10.0 * Y3,
     None, 0.0, ALMOST),
    ("SparseCategoricalCrossentropyTest::test_unweighted", SparseCategoricalCrossentropy(),
     np.array([0, 1, 2]), P3, None, 0.3239, ALMOST),
    ("SparseCategoricalCrossentropyTest::test_unweighted",
     SparseCategoricalCrossentropy(from_logits=True), np.array([0, 1, 2]), L3, None, 0.0573,
     ALMOST),
    ("SparseCategoricalCrossentropyTest::test_scalar_weighted", SparseCategoricalCrossentropy(),
     np.array([[0], [1], [2]]), P3, 2.3, 0.7449, ALMOST),
    ("SparseCategoricalCrossentropyTest::test_sample_weighted", SparseCategoricalCrossentropy(),
     np.array([[0], [1], [2]]), P3, SW3, 1.0696, ALMOST),
    ("SparseCategoricalCrossentropyTest::test_sample_weighted",
     SparseCategoricalCrossentropy(from_logits=True), np.array([[0], [1], [2]]), L3, SW3,
     0.31829, ALMOST),
    ("SparseCategoricalCrossentropyTest::test_no_reduction",
     SparseCategoricalCrossentropy(from_logits=True, reduction=None), np.array([[0], [1], [2]]),
     L3, None, [0.001822, 0.000459, 0.169846], CLOSE),
    ("SparseCategoricalCrossentropyTest::test_ignore_class",
     SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1, reduction=None),
     np.array([[-1, 2]]), np.array([[[0.854, 0.698, 0.598], [0.088, 0.86, 0.018]]]), None,
     [[0.0, 1.480129]], CLOSE),
    ("SparseCategoricalCrossentropyTest::test_ignore_class",
     SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1, reduction=None),
     np.array([[[-1], [2]]]), np.array([[[0.854, 0.698, 0.598], [0.088, 0.86, 0.018]]]), None,
     [[0.0, 1.480129]], CLOSE),
    ("SparseCategoricalCrossentropyTest::test_binary_segmentation",
     SparseCategoricalCrossentropy(), _SEG_Y, _SEG_P, None,
     (-np.log(0.2) - np.log(0.4)) / 16.0, CLOSE),
    ("SparseCategoricalCrossentropyTest::test_binary_segmentation_different_axis",
     SparseCategoricalCrossentropy(axis=0), _SEG_Y, np.moveaxis(_SEG_P, 2, 0), None,
     (-np.log(0.2) - np.log(0.4)) / 16.0, CLOSE),
    ("SparseCategoricalCrossentropyTest::test_multi_class_segmentation",
     SparseCategoricalCrossentropy(), _SEG3_Y, _SEG3_P, None,
     (-np.log(0.2) - np.log(0.3) - np.log(0.5)) / 16.0, CLOSE),
    ("SparseCategoricalCrossentropyTest::test_multi_class_segmentation_different_axis",
     SparseCategoricalCrossentropy(axis=1), np.array([_SEG3_Y] * 3),
     np.array([np.moveaxis(_SEG3_P, 2, 0)] * 3), None,
     (-np.log(0.2) - np.log(0.3) - np.log(0.5)) / 16.0, CLOSE),
]


@pytest.mark.parametrize(("keras_test", "loss", "y_true", "y_pred", "sample_weight", "expected",
                          "tolerance"), KERAS_CASES, ids=[case[0] for case in KERAS_CASES])
def test_values_of_keras_own_tests(keras_test, loss, y_true, y_pred, sample_weight, expected,
                                   tolerance):
    # each case is KERAS_TEST::<keras_test>, with minidl's argument order (pred first)
    value = loss(y_pred, y_true, sample_weight=sample_weight)
    np.testing.assert_allclose(value, expected, atol=tolerance["abs"],
                               rtol=tolerance.get("rel", 0))
    assert np.all(np.isfinite(loss.backward()))


def test_keras_shape_checks_and_bad_reduction():
    # BinaryCrossentropyTest::test_shape_mismatch, CategoricalCrossentropyTest::
    # test_shape_mismatch, HingeTest::test_unweighted ("Bad reduction")
    for loss in (BinaryCrossentropy(), CategoricalCrossentropy()):
        with pytest.raises(ValueError, match="must have the same shape"):
            loss(P3, np.array([[0], [1], [2]]))
    for loss_class in (Hinge, SquaredHinge, CategoricalHinge):
        with pytest.raises(ValueError, match="Invalid value for argument `reduction`"):
            loss_class(reduction="abc")


def test_keras_configs():
    # MeanSquaredErrorTest::test_config ... CosineSimilarityTest::test_config: Keras' names and
    # reductions; minidl also keeps axis and delta, which Keras' configs drop
    assert CosineSimilarity(axis=2, reduction="sum", name="cosine_loss").get_config() == {
        "axis": 2, "reduction": "sum", "name": "cosine_loss"}
    assert Huber(reduction="sum", name="huber").get_config() == {
        "delta": 1.0, "reduction": "sum", "name": "huber"}
    assert KLDivergence(reduction="sum", name="kld").name == "kld"
    assert SparseCategoricalCrossentropy(name="scce").get_config() == {
        "from_logits": False, "ignore_class": None, "reduction": "sum_over_batch_size",
        "axis": -1, "name": "scce"}


def test_binary_crossentropy_of_a_certain_wrong_probability_is_keras_clipped_value():
    value = BinaryCrossentropy()(np.array([[1.0]]), np.array([[0.0]]))
    assert value == pytest.approx(-np.log(1e-7), rel=1e-9)  # 16.118, not -log(tiny)


# ------------------------------------------------------------------------- against Keras itself

@pytest.fixture(scope="module")
def keras_losses():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("the gradient comparison needs Keras' torch backend")
    return keras.losses


def _random_case(name, rng, batch=5):
    """(kwargs, pred, target) in the region where the loss is smooth."""
    shape = (batch, 4)
    labels = rng.integers(0, 4, size=batch)
    one_hot = np.eye(4)[labels]
    if name in ("MeanSquaredError", "MeanAbsoluteError", "MeanAbsolutePercentageError",
                "MeanSquaredLogarithmicError", "LogCosh", "CosineSimilarity"):
        return {}, rng.normal(size=shape), rng.normal(size=shape)
    if name == "Huber":
        return {"delta": 0.7}, rng.normal(size=shape), rng.normal(size=shape)
    if name == "Poisson":
        return {}, rng.uniform(0.1, 3, size=shape), rng.poisson(1.5, size=shape).astype(float)
    if name == "KLDivergence":
        return {}, rng.uniform(0.01, 1, size=shape), rng.uniform(0, 1, size=shape)
    if name in ("Hinge", "SquaredHinge"):
        return {}, rng.normal(size=shape), rng.integers(0, 2, size=shape).astype(float)
    if name == "CategoricalHinge":
        return {}, rng.normal(size=shape), one_hot
    if name == "BinaryCrossentropy":
        return ({"label_smoothing": 0.1}, rng.uniform(0.01, 0.99, size=shape),
                rng.integers(0, 2, size=shape).astype(float))
    if name == "CategoricalCrossentropy":
        # unnormalised rows: Keras divides each by its sum first
        return {"label_smoothing": 0.1}, rng.uniform(0.05, 1, size=shape), one_hot
    assert name == "SparseCategoricalCrossentropy"
    return {}, rng.uniform(0.05, 1, size=shape), labels[:, None]


KERAS_NAMED = [name for name in LOSSES if name not in ("CrossEntropy", "BinaryCrossEntropy")]
REDUCTIONS = ["sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", None]


def keras_value_and_grad(keras_loss, pred, target, sample_weight):
    """Keras' value and, by torch autograd, the gradient of its sum with respect to pred."""
    import torch

    pred_t = torch.tensor(pred, dtype=torch.float64, requires_grad=True)
    weight_t = None if sample_weight is None else torch.tensor(sample_weight)
    value = keras_loss(torch.tensor(target), pred_t, sample_weight=weight_t)
    value.sum().backward()
    return value.detach().numpy(), pred_t.grad.numpy()


def assert_same_as_keras(loss, keras_loss, pred, target, sample_weight=None):
    expected_value, expected_grad = keras_value_and_grad(keras_loss, pred, target, sample_weight)
    value = loss(pred, target, sample_weight=sample_weight)
    # Keras' torch backend rounds some steps to float32 (ops.maximum(x, 0.0), the means),
    # even with dtype="float64": float32 tolerances
    np.testing.assert_allclose(value, expected_value, rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(loss.backward(), expected_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", KERAS_NAMED)
def test_value_and_gradient_equal_keras_for_every_reduction(keras_losses, name, reduction):
    rng = np.random.default_rng(sum(map(ord, name)))
    kwargs, pred, target = _random_case(name, rng)
    for sample_weight in (None, rng.uniform(0, 2, size=len(pred))):
        loss = LOSSES[name](reduction=reduction, **kwargs)
        keras_loss = getattr(keras_losses, name)(reduction=reduction, dtype="float64", **kwargs)
        assert_same_as_keras(loss, keras_loss, pred, target, sample_weight)


@pytest.mark.parametrize("name", ["BinaryCrossentropy", "CategoricalCrossentropy",
                                  "SparseCategoricalCrossentropy"])
def test_cross_entropies_on_logits_equal_keras(keras_losses, name):
    rng = np.random.default_rng(7)
    _, _, target = _random_case(name, rng)
    logits = rng.normal(scale=3, size=(5, 4))
    kwargs = {"from_logits": True} | ({"label_smoothing": 0.2} if "Sparse" not in name else {})
    assert_same_as_keras(LOSSES[name](**kwargs),
                         getattr(keras_losses, name)(dtype="float64", **kwargs), logits, target,
                         rng.uniform(0, 2, size=5))


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "mean_with_sample_weight", None])
@pytest.mark.parametrize("from_logits", [False, True])
def test_per_pixel_sparse_labels_with_ignore_class_equal_keras(keras_losses, from_logits,
                                                               reduction):
    # a segmentation head: (N, H, W, C) against (N, H, W, 1), class 3 is "void"
    rng = np.random.default_rng(11)
    pred = rng.uniform(0.05, 1, size=(2, 3, 3, 4)) if not from_logits else rng.normal(
        size=(2, 3, 3, 4))
    target = rng.integers(0, 4, size=(2, 3, 3, 1))
    kwargs = {"from_logits": from_logits, "ignore_class": 3, "reduction": reduction}
    loss = SparseCategoricalCrossentropy(**kwargs)
    keras_loss = keras_losses.SparseCategoricalCrossentropy(dtype="float64", **kwargs)
    weights = rng.uniform(0, 2, size=(2, 3, 3))
    if from_logits:
        assert_same_as_keras(loss, keras_loss, pred, target, weights)
    else:
        # torch's nll_loss backward fails on Keras' moved class axis ("grad_input must be
        # contiguous"): the value against Keras, the gradient against central differences
        import torch

        expected = keras_loss(torch.tensor(target), torch.tensor(pred),
                              sample_weight=torch.tensor(weights)).numpy()
        np.testing.assert_allclose(loss(pred, target, weights), expected, rtol=2e-6, atol=1e-7)
        assert gradcheck(loss_and_backward(loss, target, weights), [pred])


@pytest.mark.parametrize(("name", "pred", "target"), [
    ("BinaryCrossentropy", [[0.0, 1.0, 1.0, 0.0]], [[0.0, 0.0, 1.0, 1.0]]),
    ("CategoricalCrossentropy", [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], [[0, 1, 0], [0, 0, 1]]),
    ("SparseCategoricalCrossentropy", [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], [1, 2]),
    ("KLDivergence", [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]),
    ("Poisson", [[0.0, 1.0]], [[3.0, 0.0]]),
])
def test_probabilities_zero_and_one_give_keras_clipped_values_and_gradients(keras_losses, name,
                                                                           pred, target):
    pred, target = np.array(pred), np.array(target)
    assert_same_as_keras(LOSSES[name](), getattr(keras_losses, name)(dtype="float64"), pred,
                         target)


# ------------------------------------------------------------------------- gradients

def loss_and_backward(loss, target, sample_weight=None):
    """fn for gradcheck: one forward call of ``loss`` and its backward."""
    def fn(pred):
        value = np.sum(loss(pred, target, sample_weight=sample_weight))
        return value, [loss.backward()]
    return fn


reductions = st.sampled_from(REDUCTIONS)
shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


@st.composite
def weighted_cases(draw, low=-3.0, high=3.0, target_low=-3.0, target_high=3.0):
    """(pred, target, sample_weight) of one shape, weights None or one per sample."""
    shape = draw(shapes)
    pred = draw(arrays_for(shape, low, high))
    target = draw(arrays_for(shape, target_low, target_high))
    weights = draw(st.none() | arrays_for((shape[0],), 0.0, 2.0))
    return pred, target, weights


@given(weighted_cases(), reductions,
       st.sampled_from([MeanSquaredError, LogCosh, Poisson, MeanSquaredLogarithmicError]))
def test_smooth_losses_gradients_match_central_differences(case, reduction, loss_class):
    pred, target, weights = case
    if loss_class in (Poisson, MeanSquaredLogarithmicError):
        pred, target = np.abs(pred) + 0.1, np.abs(target)  # rates; logs of positive numbers
    loss = loss_class(reduction=reduction)
    assert gradcheck(loss_and_backward(loss, target, weights), [pred])


@given(weighted_cases(), reductions, st.data())
def test_kinked_losses_gradients_match_central_differences(case, reduction, data):
    pred, target, weights = case
    loss = data.draw(st.sampled_from([MeanAbsoluteError(reduction=reduction),
                                      MeanAbsolutePercentageError(reduction=reduction),
                                      Huber(delta=0.5, reduction=reduction),
                                      Hinge(reduction=reduction),
                                      SquaredHinge(reduction=reduction)]))
    if isinstance(loss, MeanAbsolutePercentageError):
        # a target near 0 weighs 1/ε_K = 1e7 times more: keep the sum's rounding small
        target = np.where(np.abs(target) < 0.1, 1.0, target)
    if isinstance(loss, (Hinge, SquaredHinge)):
        target = np.sign(target) + (target == 0)  # ±1 labels
        kinks = 1 - target * pred
    elif isinstance(loss, Huber):
        kinks = np.abs(pred - target) - 0.5
    else:
        kinks = pred - target
    # central differences are wrong within eps of a kink: step such points off it
    pred = np.where(np.abs(kinks) < 1e-3, pred + 0.01, pred)
    assert gradcheck(loss_and_backward(loss, target, weights), [pred])


@given(weighted_cases(low=0.02, high=0.98, target_low=0.0, target_high=1.0), reductions,
       st.sampled_from([0.0, 0.2]))
def test_binary_crossentropy_gradients_match_central_differences(case, reduction, smoothing):
    pred, target, weights = case
    for from_logits in (False, True):
        loss = BinaryCrossentropy(from_logits, smoothing, reduction=reduction)
        assert gradcheck(loss_and_backward(loss, target, weights), [pred])


@st.composite
def class_cases(draw):
    """(scores, one-hot target, labels, sample_weight): batch of rows or of pixels."""
    shape = draw(st.sampled_from([(3, 4), (1, 2), (2, 2, 3), (2, 2, 2, 3)]))
    scores = draw(arrays_for(shape, 0.05, 1.0))
    labels = draw(hnp.arrays(np.int64, shape[:-1], elements=st.integers(0, shape[-1] - 1)))
    weights = draw(st.none() | arrays_for((shape[0],), 0.0, 2.0))
    return scores, np.eye(shape[-1])[labels], labels, weights


@given(class_cases(), reductions, st.booleans())
def test_categorical_crossentropies_gradients_match_central_differences(case, reduction,
                                                                        from_logits):
    scores, one_hot, labels, weights = case
    soft = 0.7 * one_hot + 0.3 / one_hot.shape[-1]
    dense = CategoricalCrossentropy(from_logits, 0.1, reduction=reduction)
    assert gradcheck(loss_and_backward(dense, soft, weights), [scores])
    sparse = SparseCategoricalCrossentropy(from_logits, reduction=reduction)
    assert gradcheck(loss_and_backward(sparse, labels[..., None], weights), [scores])
    ignoring = SparseCategoricalCrossentropy(from_logits, ignore_class=0, reduction=reduction)
    assert gradcheck(loss_and_backward(ignoring, labels, weights), [scores])


@given(class_cases(), reductions)
def test_categorical_hinge_kl_and_cosine_gradients_match_central_differences(case, reduction):
    scores, one_hot, _, weights = case
    # spread the scores so that the best wrong class is never within eps of a tie
    pred = scores * 3 + np.arange(scores.shape[-1]) * 0.05
    assert gradcheck(loss_and_backward(CategoricalHinge(reduction=reduction), one_hot, weights),
                     [np.where(np.abs(pred - 1) < 1e-3, pred + 0.01, pred)])
    target = 0.8 * one_hot + 0.1
    # probabilities inside (ε_K, 1), off the clip's kinks
    assert gradcheck(loss_and_backward(KLDivergence(reduction=reduction), target, weights),
                     [scores * 0.9])
    assert gradcheck(loss_and_backward(CosineSimilarity(reduction=reduction), target - 0.3,
                                       weights), [scores - 0.5 * one_hot])


def test_gradients_are_zero_where_keras_clips():
    bce = BinaryCrossentropy()
    bce(np.array([[0.0, 1.0, 0.5]]), np.array([[1.0, 0.0, 1.0]]))
    np.testing.assert_array_equal(bce.backward()[0, :2], [0.0, 0.0])
    assert bce.backward()[0, 2] == pytest.approx(-2 / 3)


# ------------------------------------------------------------------------- extreme inputs

@pytest.mark.parametrize("loss", [
    BinaryCrossentropy(from_logits=True), CategoricalCrossentropy(from_logits=True),
    SparseCategoricalCrossentropy(from_logits=True), CategoricalHinge(), Hinge(),
    MeanSquaredError(), LogCosh(), Huber(), CosineSimilarity(), MeanAbsolutePercentageError()])
def test_logits_of_1e4_give_finite_values_and_gradients(loss):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]])
    target = (np.array([1, 2]) if isinstance(loss, SparseCategoricalCrossentropy)
              else np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    for dtype in (np.float64, np.float32):
        value = loss(logits.astype(dtype), target)
        assert np.isfinite(value)
        grad = loss.backward()
        assert grad.dtype == dtype and np.all(np.isfinite(grad))


def test_log_cosh_does_not_overflow():
    loss = LogCosh(reduction=None)
    np.testing.assert_allclose(loss(np.array([[1e4, -800.0]]), np.zeros((1, 2))),
                               [(1e4 + 800 - 2 * np.log(2)) / 2])


@pytest.mark.parametrize("loss", [BinaryCrossentropy(), CategoricalCrossentropy(),
                                  SparseCategoricalCrossentropy(), KLDivergence(), Poisson(),
                                  MeanSquaredLogarithmicError()])
def test_probabilities_zero_and_one_give_finite_values_and_gradients(loss):
    probs = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    target = (np.array([1, 2]) if isinstance(loss, SparseCategoricalCrossentropy)
              else np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    for dtype in (np.float64, np.float32):
        assert np.isfinite(loss(probs.astype(dtype), target))
        assert np.all(np.isfinite(loss.backward()))


# ------------------------------------------------------------------------- fusion

@given(class_cases(), reductions)
def test_sparse_categorical_crossentropy_on_logits_is_the_fused_softmax(case, reduction):
    scores, _, labels, weights = case
    logits = scores * 4 - 2
    probs = scipy.special.softmax(logits, axis=-1)
    on_probs = SparseCategoricalCrossentropy(reduction=reduction)
    fused = on_probs.on_logits()
    assert fused.from_logits and fused.reduction == reduction
    np.testing.assert_allclose(fused(logits, labels, weights),
                               on_probs(probs, labels, weights), rtol=1e-9, atol=1e-12)
    grad_probs = on_probs.backward()
    chained = probs * (grad_probs - np.sum(grad_probs * probs, axis=-1, keepdims=True))
    np.testing.assert_allclose(fused.backward(), chained, rtol=1e-7, atol=1e-10)


def test_cross_entropies_name_the_activation_they_fuse_with():
    assert CategoricalCrossentropy().fuses_with == "softmax"
    assert SparseCategoricalCrossentropy().fuses_with == "softmax"
    assert BinaryCrossentropy().fuses_with == "sigmoid"
    # logits in, or a softmax over another axis: the model's output is not fused
    assert CategoricalCrossentropy(from_logits=True).fuses_with is None
    assert SparseCategoricalCrossentropy(axis=1).fuses_with is None
    assert BinaryCrossentropy(label_smoothing=0.1).on_logits().get_config() == {
        "from_logits": True, "label_smoothing": 0.1, "axis": -1,
        "reduction": "sum_over_batch_size", "name": "binary_crossentropy"}
    logits = np.array([[2.0, -1.0]])
    np.testing.assert_allclose(
        CategoricalCrossentropy(from_logits=True).predictions(logits),
        scipy.special.softmax(logits, axis=-1))
    assert MeanSquaredError().fuses_with is None


# ------------------------------------------------------------------------- names and config

@pytest.mark.parametrize(("name", "loss_class"), [
    ("mean_squared_error", MeanSquaredError), ("mse", MeanSquaredError),
    ("MSE", MeanSquaredError), ("mae", MeanAbsoluteError), ("mape", MeanAbsolutePercentageError),
    ("msle", MeanSquaredLogarithmicError), ("binary_crossentropy", BinaryCrossentropy),
    ("bce", BinaryCrossentropy), ("categorical_crossentropy", CategoricalCrossentropy),
    ("sparse_categorical_crossentropy", SparseCategoricalCrossentropy), ("huber", Huber),
    ("log_cosh", LogCosh), ("logcosh", LogCosh), ("kl_divergence", KLDivergence),
    ("kld", KLDivergence), ("poisson", Poisson), ("hinge", Hinge),
    ("squared_hinge", SquaredHinge), ("categorical_hinge", CategoricalHinge),
    ("cosine_similarity", CosineSimilarity), ("CategoricalCrossentropy", CategoricalCrossentropy),
])
def test_get_takes_keras_names(name, loss_class):
    loss = losses.get(name)
    assert type(loss) is loss_class
    assert loss.get_config() == loss_class().get_config()


def test_get_takes_a_class_a_config_dict_and_none_as_keras_does():
    assert type(losses.get(Huber)) is Huber
    loss = losses.get({"class_name": "CategoricalCrossentropy", "config": {"from_logits": True}})
    assert type(loss) is CategoricalCrossentropy and loss.from_logits
    assert losses.get(None) is None


@pytest.mark.parametrize("loss", [
    MeanSquaredError(reduction="sum", name="mymse"), BinaryCrossentropy(True, 0.2, axis=1),
    CategoricalCrossentropy(label_smoothing=0.3, reduction=None),
    SparseCategoricalCrossentropy(ignore_class=255, reduction="mean_with_sample_weight"),
    Huber(delta=0.5), CosineSimilarity(axis=0), KLDivergence(name="kld"), Poisson(), Hinge(),
    SquaredHinge(), CategoricalHinge(), LogCosh(), MeanAbsolutePercentageError(),
    MeanSquaredLogarithmicError(), MeanAbsoluteError(reduction="none")])
def test_serialize_round_trips_through_json(loss):
    spec = json.loads(json.dumps(losses.serialize(loss)))
    assert spec["class_name"] == type(loss).__name__
    restored = losses.deserialize(spec)
    assert type(restored) is type(loss) and restored.get_config() == loss.get_config()


def test_models_saved_with_the_earlier_loss_specs_still_load():
    # what minidl 0.1 wrote for these losses (tests/data holds a CrossEntropy model)
    assert losses.deserialize({"class_name": "MeanSquaredError", "config": {}}).get_config() == (
        MeanSquaredError().get_config())
    assert type(losses.deserialize({"class_name": "CrossEntropy", "config": {
        "from_logits": True, "label_smoothing": 0.0}})) is losses.CrossEntropy


def test_mean_squared_error_without_weights_is_the_mean_over_all_elements():
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(4, 3, 2)), rng.normal(size=(4, 3, 2))
    assert MeanSquaredError()(pred, target) == pytest.approx(np.mean((pred - target) ** 2))
    # Keras' rank rule: targets (N,) against outputs (N, 1)
    assert MeanAbsoluteError()(pred[:, :1, 0], target[:, 0, 0]) == pytest.approx(
        np.mean(np.abs(pred[:, 0, 0] - target[:, 0, 0])))


def test_empty_weights_sum_gives_zero_as_keras_divide_no_nan():
    loss = MeanSquaredError(reduction="mean_with_sample_weight")
    assert loss(np.ones((2, 2)), np.zeros((2, 2)), sample_weight=np.zeros(2)) == 0.0
    np.testing.assert_array_equal(loss.backward(), 0.0)


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: MeanSquaredError(reduction="mean_over_batch"), ValueError,
     r"^MeanSquaredError: Invalid value for argument `reduction`. Expected one of .*"
     r"Received: reduction='mean_over_batch'"),
    (lambda: Hinge(name=3), TypeError, r"^Hinge: name must be a string or None, got int"),
    (lambda: CategoricalCrossentropy(axis=True), ValueError,
     r"^CategoricalCrossentropy: `axis` must be of type `int`. Received: axis=True"),
    (lambda: BinaryCrossentropy(label_smoothing=2), ValueError,
     r"^BinaryCrossentropy: label_smoothing must be in \[0, 1\], got 2"),
    (lambda: SparseCategoricalCrossentropy(from_logits="no"), TypeError,
     r"^SparseCategoricalCrossentropy: from_logits must be True or False"),
    (lambda: SparseCategoricalCrossentropy(ignore_class=1.5), TypeError,
     r"^SparseCategoricalCrossentropy: ignore_class must be an integer class index or None"),
    (lambda: Huber(delta=-1.0), ValueError, r"^Huber: delta must be a finite number >= 0"),
    (lambda: SparseCategoricalCrossentropy()(np.full((2, 3), 1 / 3), [0, 3]), ValueError,
     r"^SparseCategoricalCrossentropy: target holds class index 3, outside \[0, 3\)"),
    (lambda: SparseCategoricalCrossentropy()(np.full((2, 3), 1 / 3), np.zeros((2, 2))),
     ValueError, r"^SparseCategoricalCrossentropy: target must hold class indices of shape "
                 r"\(2,\) \(or \(2, 1\)\) for pred of shape \(2, 3\), got shape \(2, 2\)"),
    (lambda: MeanSquaredError()(np.zeros((3, 2)), np.zeros(3)), ValueError,
     r"^MeanSquaredError: target and pred must have the same shape, got target.shape=\(3,\), "
     r"pred.shape=\(3, 2\)"),
    (lambda: MeanSquaredError()(np.zeros((3, 2)), np.zeros((3, 2)), sample_weight=np.ones(2)),
     ValueError, r"^MeanSquaredError: sample_weight of shape \(2,\) does not broadcast to the "
                 r"losses of shape \(3,\); pass one weight per sample, shape \(3,\)"),
    (lambda: MeanSquaredError()(np.zeros(2), np.zeros(2), sample_weight=["a", "b"]), TypeError,
     r"^MeanSquaredError: sample_weight must be a real numeric array"),
    (lambda: Poisson()(np.array(["a"]), [1.0]), TypeError,
     r"^Poisson: pred must be a real numeric array"),
    (lambda: Poisson()(np.array(2.0), 1.0), ValueError,
     r"^Poisson: pred must have at least one axis, got a scalar"),
    (lambda: CosineSimilarity(axis=2)(np.ones((2, 2)), np.ones((2, 2))), ValueError,
     r"^CosineSimilarity: axis 2 is out of range for pred of shape \(2, 2\)"),
    (lambda: LogCosh().backward(), RuntimeError,
     r"^LogCosh.backward\(\) was called before the loss was computed"),
    (lambda: losses.get("typo"), ValueError,
     r"^get: unknown loss 'typo'; known: cross_entropy"),
    (lambda: losses.get(3), TypeError, r"^get: expected a loss name, a Loss, a Loss class"),
])
def test_bad_arguments_raise_errors_naming_them(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_categorical_crossentropy_warns_as_keras_for_one_class():
    with pytest.warns(SyntaxWarning, match="Consider using 'binary_crossentropy'"):
        CategoricalCrossentropy()(np.array([[1.0], [1.0]]), np.array([[1.0], [1.0]]))
