"""minidl.functional against scipy.special, closed forms, a per-sample oracle and central
differences; extreme inputs must give no warning (pytest turns warnings into errors) and no NaN."""

import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings
from hypothesis import strategies as st

from minidl import functional as F
from minidl.testing import arrays_for, gradcheck, logits_and_labels

EXTREME_ROWS = [
    [1e300, -1e300, 0.0],
    [-1e300, -1e300, -1e300],
    [1e300, 1e300, 1e300],
    [1e4, -1e4, 3.0, -2.0],
    [-1e4, -1e4 + 1, -1e4 + 2],
    [5.0] * 7,
    [0.0],
    [-745.0, 745.0, 710.0, -710.0],
]

wide_arrays = arrays_for(hnp.array_shapes(min_dims=1, max_dims=3, max_side=6), -1e3, 1e3)


def assert_matches(actual, expected, rtol=1e-12, atol=1e-300):
    """Relative agreement; the default atol only absorbs subnormal results."""
    assert actual.shape == np.shape(expected)
    assert not np.any(np.isnan(actual))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


# scipy's log_softmax takes log(1 + rest) where we take log1p(rest): for a dominant class its
# answer is off by up to one rounding of 1 (we are exact there, see the log1p tests below)
SCIPY_LOG_SOFTMAX_ATOL = 1e-14


# ------------------------------------------------------------------------- softmax family

@given(wide_arrays, st.data())
def test_softmax_family_matches_scipy_on_random_inputs(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    assert_matches(F.logsumexp(x, axis=axis), scipy.special.logsumexp(x, axis=axis))
    assert_matches(F.logsumexp(x, axis=axis, keepdims=True),
                   scipy.special.logsumexp(x, axis=axis, keepdims=True))
    assert_matches(F.softmax(x, axis=axis), scipy.special.softmax(x, axis=axis))
    assert_matches(F.log_softmax(x, axis=axis), scipy.special.log_softmax(x, axis=axis),
                   atol=SCIPY_LOG_SOFTMAX_ATOL)


@pytest.mark.parametrize("row", EXTREME_ROWS)
def test_softmax_family_matches_scipy_on_extreme_logits(row):
    x = np.array([row, row[::-1]])
    assert_matches(F.logsumexp(x), scipy.special.logsumexp(x, axis=-1))
    assert_matches(F.log_softmax(x), scipy.special.log_softmax(x, axis=-1),
                   atol=SCIPY_LOG_SOFTMAX_ATOL)
    probs = F.softmax(x)
    assert_matches(probs, scipy.special.softmax(x, axis=-1))
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-15)


@pytest.mark.parametrize("gap", [1e-3, 11.0, 35.0, 700.0])
def test_log_softmax_and_logsumexp_keep_the_digits_of_a_dominant_class(gap):
    # closed forms: log p_max = -log1p(e^-gap), logsumexp = gap + log1p(e^-gap)
    x = np.array([gap, 0.0])
    expected_log_p = -math.log1p(math.exp(-gap))
    assert F.log_softmax(x)[0] == pytest.approx(expected_log_p, rel=1e-15)
    assert F.log_softmax(x)[1] == pytest.approx(-gap + expected_log_p, rel=1e-15)
    assert F.logsumexp(x) == pytest.approx(gap + math.log1p(math.exp(-gap)), rel=1e-15)


def test_softmax_family_matches_arbitrary_precision():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    rng = np.random.default_rng(7)
    for x in [rng.normal(scale=scale, size=6) for scale in (1.0, 10.0, 100.0)]:
        lse = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(v)) for v in x))
        assert F.logsumexp(x) == pytest.approx(float(lse), rel=1e-14)
        assert_matches(F.log_softmax(x), [float(mpmath.mpf(v) - lse) for v in x], rtol=1e-14)
        assert_matches(F.softmax(x), [float(mpmath.exp(mpmath.mpf(v) - lse)) for v in x],
                       rtol=1e-14)


def test_equal_logits_give_the_uniform_distribution():
    x = np.full((3, 8), 123.0)
    np.testing.assert_allclose(F.softmax(x), 1 / 8, rtol=1e-15)
    np.testing.assert_allclose(F.log_softmax(x), -np.log(8), rtol=1e-15)
    np.testing.assert_allclose(F.logsumexp(x), 123.0 + np.log(8), rtol=1e-15)


@pytest.mark.parametrize("num_classes", [5_000, 100_000])
def test_softmax_family_matches_scipy_for_huge_class_counts(num_classes):
    x = np.random.default_rng(num_classes).normal(scale=30.0, size=(2, num_classes))
    probs = F.softmax(x)
    assert_matches(probs, scipy.special.softmax(x, axis=-1), rtol=1e-10)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-12)
    assert_matches(F.log_softmax(x), scipy.special.log_softmax(x, axis=-1),
                   atol=SCIPY_LOG_SOFTMAX_ATOL)
    assert_matches(F.logsumexp(x), scipy.special.logsumexp(x, axis=-1))


def test_minus_infinity_masks_a_class_out():
    x = np.array([[0.0, -np.inf, np.log(3.0)]])
    np.testing.assert_allclose(F.softmax(x), [[0.25, 0.0, 0.75]], rtol=1e-15)
    assert F.log_softmax(x)[0, 1] == -np.inf
    np.testing.assert_allclose(F.logsumexp(x), [np.log(4.0)], rtol=1e-15)


def test_rows_without_a_finite_max_follow_scipy_for_logsumexp_and_are_nan_otherwise():
    x = np.array([[-np.inf, -np.inf], [np.inf, 1.0], [np.nan, 1.0], [0.0, 1.0]])
    np.testing.assert_array_equal(F.logsumexp(x), scipy.special.logsumexp(x, axis=-1))
    for fn in (F.softmax, F.log_softmax):
        assert np.all(np.isnan(fn(x)[:3]))
        assert not np.any(np.isnan(fn(x)[3]))


# ------------------------------------------------------------------------- sigmoid

@given(arrays_for(hnp.array_shapes(max_dims=3), -800.0, 800.0))
def test_sigmoid_and_log_sigmoid_match_scipy_on_random_inputs(x):
    assert_matches(F.sigmoid(x), scipy.special.expit(x))
    assert_matches(F.log_sigmoid(x), scipy.special.log_expit(x))


def test_sigmoid_and_log_sigmoid_match_scipy_on_extreme_inputs():
    x = np.array([-1e300, -1e4, -745.0, -36.0, -1e-300, 0.0, 1e-300, 36.0, 745.0, 1e4, 1e300])
    assert_matches(F.sigmoid(x), scipy.special.expit(x))
    assert_matches(F.log_sigmoid(x), scipy.special.log_expit(x))
    np.testing.assert_array_equal(F.sigmoid(np.array([-1e300, 0.0, 1e300])), [0.0, 0.5, 1.0])


# ------------------------------------------------------------------------- dtypes

ARRAY_FUNCTIONS = [F.logsumexp, F.softmax, F.log_softmax, F.sigmoid, F.log_sigmoid]


@pytest.mark.parametrize("fn", ARRAY_FUNCTIONS)
def test_array_functions_keep_float32_and_compute_integers_in_float64(fn):
    x32 = np.array([[1.0, -2.0, 3e30], [-3e38, 3e38, 0.0]], dtype=np.float32)
    result = fn(x32)
    assert result.dtype == np.float32
    assert not np.any(np.isnan(result))
    assert fn(np.array([[1, 2], [3, 4]])).dtype == np.float64
    assert fn(np.array([[True, False]])).dtype == np.float64


def float32_loss_cases():
    logits = np.array([[1.0, -2.0, 0.5], [3e30, -3e30, 0.0]], dtype=np.float32)
    labels = np.array([0, 1])
    probs = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]], dtype=np.float64)
    binary = np.array([[0.0, 1.0, 0.5], [1.0, 0.0, 0.25]])
    return [
        (F.cross_entropy, F.cross_entropy_grad, logits, labels,
         {"weight": [1.0, 2.0, 0.5], "label_smoothing": 0.1}),
        (F.cross_entropy, F.cross_entropy_grad, logits, probs, {"weight": [1.0, 2.0, 0.5]}),
        (F.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits_grad, logits,
         binary, {}),
        (F.mse, F.mse_grad, logits[:1], binary[:1], {}),
        (F.mae, F.mae_grad, logits, binary, {}),
    ]


@pytest.mark.parametrize(("loss", "grad", "pred", "target", "kwargs"), float32_loss_cases())
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_and_gradients_keep_float32(loss, grad, pred, target, kwargs, reduction):
    value = loss(pred, target, reduction=reduction, **kwargs)
    gradient = grad(pred, target, reduction=reduction, **kwargs)
    assert value.dtype == np.float32
    assert gradient.dtype == np.float32
    assert gradient.shape == pred.shape
    assert np.all(np.isfinite(gradient))


def test_losses_compute_integer_inputs_in_float64():
    assert F.cross_entropy(np.array([[1, 2]]), np.array([1])).dtype == np.float64
    assert F.mse(np.array([1, 2]), np.array([0, 0])).dtype == np.float64
    assert F.mae_grad(np.array([1, 2]), np.array([0, 0])).dtype == np.float64


# ------------------------------------------------------------------------- one_hot

@given(st.integers(1, 12).flatmap(
    lambda c: st.tuples(st.just(c), hnp.arrays(np.int64, hnp.array_shapes(min_dims=0, max_dims=2),
                                               elements=st.integers(0, c - 1)))))
def test_one_hot_is_rows_of_the_identity(case):
    num_classes, labels = case
    encoded = F.one_hot(labels, num_classes)
    assert encoded.shape == (*labels.shape, num_classes)
    assert encoded.dtype == np.float32
    np.testing.assert_array_equal(encoded.sum(axis=-1), 1)
    np.testing.assert_array_equal(encoded.argmax(axis=-1), labels)


def test_one_hot_accepts_whole_floats_and_a_dtype():
    encoded = F.one_hot(np.array([2.0, 0.0]), 3, dtype=np.int64)
    np.testing.assert_array_equal(encoded, [[0, 0, 1], [1, 0, 0]])
    assert encoded.dtype == np.int64


# ------------------------------------------------------------------------- cross-entropy

def oracle_cross_entropy(logits, target, reduction="mean", label_smoothing=0.0, weight=None):
    """torch.nn.functional.cross_entropy's definition, one sample at a time, in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    target = np.asarray(target)
    batch_size, num_classes = logits.shape
    class_weight = np.ones(num_classes) if weight is None else np.asarray(weight, np.float64)
    losses, denominator = [], 0.0
    for n in range(batch_size):
        log_probs = scipy.special.log_softmax(logits[n])
        if target.ndim == 1:
            probs_target = np.zeros(num_classes)
            probs_target[target[n]] = 1.0
            denominator += class_weight[target[n]]
        else:
            probs_target = np.asarray(target[n], dtype=np.float64)
            denominator += 1.0
        smoothed = (1 - label_smoothing) * probs_target + label_smoothing / num_classes
        losses.append(-np.sum(class_weight * smoothed * log_probs))
    if reduction == "none":
        return np.array(losses)
    return sum(losses) / (denominator if reduction == "mean" else 1.0)


@st.composite
def cross_entropy_cases(draw, max_batch=6, max_classes=8, min_value=-20.0, max_value=20.0):
    """(logits, target, kwargs): index or probability targets, with or without weight and
    label smoothing, any reduction."""
    logits, labels = draw(logits_and_labels(max_batch=max_batch, min_classes=1,
                                            max_classes=max_classes, min_value=min_value,
                                            max_value=max_value))
    batch_size, num_classes = logits.shape
    if draw(st.booleans()):
        target = labels
    else:
        raw = draw(arrays_for((batch_size, num_classes), 0.0, 1.0))
        target = (raw + 1e-3) / (raw + 1e-3).sum(axis=1, keepdims=True)
    kwargs = {
        "reduction": draw(st.sampled_from(["mean", "sum", "none"])),
        "label_smoothing": draw(st.sampled_from([0.0, 0.1]) | st.floats(0.0, 1.0)),
    }
    if draw(st.booleans()):
        kwargs["weight"] = draw(arrays_for((num_classes,), 0.1, 3.0))
    return logits, target, kwargs


@given(cross_entropy_cases())
def test_cross_entropy_matches_the_per_sample_definition(case):
    logits, target, kwargs = case
    assert_matches(np.asarray(F.cross_entropy(logits, target, **kwargs)),
                   oracle_cross_entropy(logits, target, **kwargs), rtol=1e-10)


def test_cross_entropy_closed_forms():
    # softmax([0, log 3]) = [1/4, 3/4]
    logits = np.array([[0.0, np.log(3.0)], [0.0, np.log(3.0)]])
    assert F.cross_entropy(logits, [1, 1]) == pytest.approx(-np.log(0.75), rel=1e-15)
    # weights: (2 log 4 + 1 (-log 3/4)) / (2 + 1)
    assert F.cross_entropy(logits, [0, 1], weight=[2.0, 1.0]) == pytest.approx(
        (2 * np.log(4) - np.log(0.75)) / 3, rel=1e-15)
    # smoothing ε = 0.5 on 2 classes: target [0.25, 0.75] for class 1
    assert F.cross_entropy(logits[:1], [1], label_smoothing=0.5) == pytest.approx(
        -(0.25 * np.log(0.25) + 0.75 * np.log(0.75)), rel=1e-15)
    # probability targets with weights divide by N, not by the weights
    assert F.cross_entropy(logits, [[0.0, 1.0]] * 2, weight=[5.0, 2.0]) == pytest.approx(
        -2 * np.log(0.75), rel=1e-15)
    # equal logits cost log C whatever the target and the smoothing
    assert F.cross_entropy(np.zeros((4, 10)), [0, 3, 9, 9], label_smoothing=0.3) == (
        pytest.approx(np.log(10), rel=1e-15))


@pytest.mark.parametrize("num_classes", [5_000, 100_000])
def test_cross_entropy_matches_the_definition_for_huge_class_counts(num_classes):
    rng = np.random.default_rng(num_classes)
    logits = rng.normal(scale=10.0, size=(3, num_classes))
    labels = rng.integers(0, num_classes, size=3)
    weight = rng.uniform(0.5, 2.0, size=num_classes)
    kwargs = {"label_smoothing": 0.1, "weight": weight}
    assert F.cross_entropy(logits, labels, **kwargs) == pytest.approx(
        oracle_cross_entropy(logits, labels, **kwargs), rel=1e-10)
    grad = F.cross_entropy_grad(logits, labels)
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-15)


@pytest.mark.parametrize("scale", [1e4, 1e300])
def test_cross_entropy_and_its_gradient_are_finite_for_extreme_logits(scale):
    logits = np.array([[scale, -scale, 0.0], [-scale, -scale, -scale], [scale, scale, 0.0]])
    labels = np.array([1, 2, 0])
    for kwargs in ({}, {"label_smoothing": 0.2, "weight": [1.0, 2.0, 3.0]}):
        loss = F.cross_entropy(logits, labels, **kwargs)
        grad = F.cross_entropy_grad(logits, labels, **kwargs)
        assert np.isfinite(loss)
        assert np.all(np.isfinite(grad))
    # the confident wrong row: p = [1, 0, 0], y = [0, 1, 0]
    np.testing.assert_allclose(F.cross_entropy_grad(logits[:1], [1]), [[1.0, -1.0, 0.0]])
    assert F.cross_entropy(logits[:1], [1]) == pytest.approx(2 * scale, rel=1e-15)


def test_cross_entropy_ignores_impossible_classes_without_target_mass():
    # float32 logits ±3e38: the shifted logit underflows to -inf; 0 * log 0 must count as 0
    logits = np.array([[3e38, -3e38]], dtype=np.float32)
    assert F.cross_entropy(logits, np.array([[1.0, 0.0]])) == 0.0
    assert F.cross_entropy(logits, np.array([0])) == 0.0


def test_cross_entropy_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(7, 5))
    labels = rng.integers(0, 5, size=7)
    probs = scipy.special.softmax(rng.normal(size=(7, 5)), axis=1)
    weight = rng.uniform(0.2, 2.0, size=5)
    for target in (labels, probs):
        for kwargs in ({}, {"weight": weight}, {"label_smoothing": 0.3},
                       {"weight": weight, "label_smoothing": 0.3, "reduction": "sum"},
                       {"weight": weight, "label_smoothing": 0.3, "reduction": "none"}):
            logits_t = torch.tensor(logits, requires_grad=True)
            torch_kwargs = {**kwargs}
            if "weight" in kwargs:
                torch_kwargs["weight"] = torch.tensor(weight)
            expected = torch.nn.functional.cross_entropy(logits_t, torch.tensor(target),
                                                         **torch_kwargs)
            expected.sum().backward()
            np.testing.assert_allclose(F.cross_entropy(logits, target, **kwargs),
                                       expected.detach().numpy(), rtol=1e-12)
            np.testing.assert_allclose(F.cross_entropy_grad(logits, target, **kwargs),
                                       logits_t.grad.numpy(), rtol=1e-10, atol=1e-15)


# ------------------------------------------------------------------------- gradients

def summed(loss, grad, target, **kwargs):
    """fn for gradcheck: the loss summed to a scalar (for reduction "none") and its gradient."""
    def fn(pred):
        return float(np.sum(loss(pred, target, **kwargs))), [grad(pred, target, **kwargs)]
    return fn


@given(cross_entropy_cases(min_value=-10.0, max_value=10.0))
def test_cross_entropy_gradient_matches_central_differences(case):
    logits, target, kwargs = case
    assert gradcheck(summed(F.cross_entropy, F.cross_entropy_grad, target, **kwargs), [logits])


@settings(max_examples=2)  # each example costs ~2,000 loss evaluations
@given(logits_and_labels(max_batch=1, min_classes=1000, max_classes=1010), st.booleans())
def test_cross_entropy_gradient_matches_central_differences_for_1000_classes(case, smooth):
    logits, labels = case
    kwargs = {"label_smoothing": 0.1 if smooth else 0.0,
              "weight": np.linspace(0.5, 2.0, logits.shape[1])}
    assert gradcheck(summed(F.cross_entropy, F.cross_entropy_grad, labels, **kwargs), [logits])


binary_shapes = hnp.array_shapes(min_dims=1, max_dims=3, max_side=5)


@given(binary_shapes.flatmap(lambda shape: st.tuples(arrays_for(shape, -20.0, 20.0),
                                                      arrays_for(shape, 0.0, 1.0))),
       st.sampled_from(["mean", "sum", "none"]))
def test_binary_cross_entropy_gradient_matches_central_differences(case, reduction):
    logits, target = case
    assert gradcheck(summed(F.binary_cross_entropy_with_logits,
                            F.binary_cross_entropy_with_logits_grad, target,
                            reduction=reduction), [logits])


def test_binary_cross_entropy_matches_the_direct_formula_and_extremes():
    x = np.array([-30.0, -2.0, 0.0, 1.5, 40.0])
    y = np.array([0.0, 1.0, 0.5, 0.2, 1.0])
    direct = -(y * scipy.special.log_expit(x) + (1 - y) * scipy.special.log_expit(-x))
    assert_matches(F.binary_cross_entropy_with_logits(x, y, reduction="none"), direct)
    x = np.array([1e300, -1e300, 1e4])
    y = np.array([0.0, 1.0, 1.0])
    np.testing.assert_allclose(F.binary_cross_entropy_with_logits(x, y, reduction="none"),
                               [1e300, 1e300, 0.0])
    np.testing.assert_allclose(F.binary_cross_entropy_with_logits_grad(x, y, reduction="none"),
                               [1.0, -1.0, 0.0])


@given(binary_shapes.flatmap(lambda shape: st.tuples(arrays_for(shape), arrays_for(shape))),
       st.sampled_from(["mean", "sum", "none"]))
def test_mse_gradient_matches_central_differences(case, reduction):
    pred, target = case
    assert gradcheck(summed(F.mse, F.mse_grad, target, reduction=reduction), [pred])


@given(binary_shapes.flatmap(lambda shape: st.tuples(
    arrays_for(shape), arrays_for(shape, 0.01, 1.0), hnp.arrays(np.bool_, shape))),
    st.sampled_from(["mean", "sum", "none"]))
def test_mae_gradient_matches_central_differences(case, reduction):
    pred, gap, below = case
    # keep every target at least 0.01 from its prediction, where |p - y| is smooth
    target = np.where(below, pred - gap, pred + gap)
    assert gradcheck(summed(F.mae, F.mae_grad, target, reduction=reduction), [pred])


def test_regression_losses_closed_forms():
    pred = np.array([[1.0, 2.0], [3.0, 4.0]])
    target = np.array([[1.0, 0.0], [0.0, 4.0]])
    assert F.mse(pred, target) == pytest.approx((4 + 9) / 4)
    assert F.mae(pred, target, reduction="sum") == pytest.approx(5.0)
    np.testing.assert_array_equal(F.mae_grad(pred, target), [[0.0, 0.25], [0.25, 0.0]])
    np.testing.assert_array_equal(F.mse_grad(pred, target, reduction="none"),
                                  [[0.0, 4.0], [6.0, 0.0]])


# ------------------------------------------------------------------------- bad input

LOGITS = np.zeros((2, 3))


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: F.softmax(np.array(["a", "b"])), TypeError, r"^softmax: x must be a real numeric"),
    (lambda: F.sigmoid(np.array([1j])), TypeError, r"^sigmoid: x must be a real numeric"),
    (lambda: F.logsumexp(np.zeros((2, 3)), axis=2), ValueError,
     r"^logsumexp: axis 2 is out of range"),
    (lambda: F.log_softmax(np.zeros((2, 0))), ValueError, r"^log_softmax: x has no entries"),
    (lambda: F.one_hot([0, 3], 3), ValueError, r"^one_hot: labels holds class index 3"),
    (lambda: F.one_hot([-1], 3), ValueError, r"^one_hot: labels holds class index -1"),
    (lambda: F.one_hot([0.5], 3), ValueError, r"^one_hot: labels must hold whole-number"),
    (lambda: F.one_hot(["a"], 3), TypeError, r"^one_hot: labels must be an array of integer"),
    (lambda: F.one_hot([0], 0), ValueError, r"^one_hot: num_classes must be at least 1"),
    (lambda: F.one_hot([0], 2.0), TypeError, r"^one_hot: num_classes must be an int"),
    (lambda: F.cross_entropy(np.zeros(3), [0]), ValueError,
     r"^cross_entropy: logits must be 2-D \(batch, classes\), got shape \(3,\)"),
    (lambda: F.cross_entropy(np.zeros((2, 0)), [0, 0]), ValueError,
     r"^cross_entropy: logits must have at least one column"),
    (lambda: F.cross_entropy(LOGITS, [0, 1, 2]), ValueError,
     r"^cross_entropy: target has 3 labels but logits have 2 rows"),
    (lambda: F.cross_entropy(LOGITS, [0, 3]), ValueError,
     r"^cross_entropy: target holds class index 3, outside \[0, 3\)"),
    (lambda: F.cross_entropy(LOGITS, [-2, 0]), ValueError,
     r"^cross_entropy: target holds class index -2"),
    (lambda: F.cross_entropy(LOGITS, [0.5, 1.0]), ValueError,
     r"^cross_entropy: target must hold whole-number class indices"),
    (lambda: F.cross_entropy(LOGITS, np.array([np.nan, 1.0])), ValueError,
     r"^cross_entropy: target must hold whole-number class indices"),
    (lambda: F.cross_entropy(LOGITS, ["a", "b"]), TypeError,
     r"^cross_entropy: target must be an array of integer class indices"),
    (lambda: F.cross_entropy(LOGITS, np.zeros((2, 10))), ValueError,
     r"^cross_entropy: target has 10 classes but logits have 3 columns"),
    (lambda: F.cross_entropy(LOGITS, np.zeros((3, 3))), ValueError,
     r"^cross_entropy: target has 3 rows but logits have 2"),
    (lambda: F.cross_entropy(LOGITS, np.zeros((2, 3, 1))), ValueError,
     r"^cross_entropy: target must be class indices of shape \(2,\) or class probabilities"),
    (lambda: F.cross_entropy(np.array([["a", "b"]]), [0]), TypeError,
     r"^cross_entropy: logits must be a real numeric array, got dtype <U1"),
    (lambda: F.cross_entropy(LOGITS, [0, 1], reduction="avg"), ValueError,
     r"^cross_entropy: reduction must be 'mean', 'sum' or 'none', got 'avg'"),
    (lambda: F.cross_entropy(LOGITS, [0, 1], label_smoothing=1.5), ValueError,
     r"^cross_entropy: label_smoothing must be in \[0, 1\], got 1.5"),
    (lambda: F.cross_entropy(LOGITS, [0, 1], label_smoothing=-0.1), ValueError,
     r"^cross_entropy: label_smoothing must be in \[0, 1\]"),
    (lambda: F.cross_entropy(LOGITS, [0, 1], label_smoothing="0.1"), TypeError,
     r"^cross_entropy: label_smoothing must be a number"),
    (lambda: F.cross_entropy(LOGITS, [0, 1], weight=[1.0, 2.0]), ValueError,
     r"^cross_entropy: weight must have shape \(3,\), one per class, got shape \(2,\)"),
    (lambda: F.cross_entropy(LOGITS, [0, 1], weight=[1.0, -2.0, 1.0]), ValueError,
     r"^cross_entropy: weight must be finite and non-negative"),
    (lambda: F.cross_entropy(LOGITS, [0, 1], weight=["a", "b", "c"]), TypeError,
     r"^cross_entropy: weight must be a real numeric array"),
    (lambda: F.cross_entropy(LOGITS, [0, 0], weight=[0.0, 1.0, 1.0]), ValueError,
     r"^cross_entropy: the weights of the batch's target classes sum to 0"),
    (lambda: F.cross_entropy(np.zeros((0, 3)), np.zeros(0, np.int64)), ValueError,
     r"^cross_entropy: the mean over an empty batch is undefined"),
    (lambda: F.cross_entropy_grad(LOGITS, [0, 5]), ValueError,
     r"^cross_entropy_grad: target holds class index 5"),
    (lambda: F.binary_cross_entropy_with_logits(np.zeros(3), np.zeros(4)), ValueError,
     r"^binary_cross_entropy_with_logits: target has shape \(4,\) but logits has shape \(3,\)"),
    (lambda: F.binary_cross_entropy_with_logits(np.zeros(2), [0.0, 2.0]), ValueError,
     r"^binary_cross_entropy_with_logits: target must hold probabilities in \[0, 1\]"),
    (lambda: F.binary_cross_entropy_with_logits_grad(np.zeros(2), [0.0, 1.0], reduction="x"),
     ValueError, r"^binary_cross_entropy_with_logits_grad: reduction must be"),
    (lambda: F.mse(np.zeros((3, 1)), np.zeros(3)), ValueError,
     r"^mse: target has shape \(3,\) but pred has shape \(3, 1\); they must match"),
    (lambda: F.mse(np.zeros(0), np.zeros(0)), ValueError, r"^mse: the mean over an empty batch"),
    (lambda: F.mse_grad(np.array([None]), [0.0]), TypeError,
     r"^mse_grad: pred must be a real numeric array, got dtype object"),
    (lambda: F.mae(np.zeros(2), np.array(["a", "b"])), TypeError,
     r"^mae: target must be a real numeric array"),
    (lambda: F.mae_grad(np.zeros(2), np.zeros(2), reduction=None), ValueError,
     r"^mae_grad: reduction must be"),
])
def test_bad_input_raises_an_error_naming_the_function_and_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()
