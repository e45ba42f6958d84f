"""minidl.losses: values against independent oracles (scipy, scikit-learn, closed forms),
backward against central differences, the call/backward protocol, and configuration."""

import json

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss, mean_absolute_error, mean_squared_error

from minidl import functional as F
from minidl import losses
from minidl.losses import (
    LOSSES,
    BinaryCrossEntropy,
    CrossEntropy,
    Loss,
    MeanAbsoluteError,
    MeanSquaredError,
)
from minidl.testing import arrays_for, gradcheck, logits_and_labels


def loss_and_backward(loss, target, sample_weight=None):
    """fn for gradcheck: one forward call of ``loss`` and its backward."""
    def fn(pred):
        value = loss(pred, target, sample_weight=sample_weight)
        return value, [loss.backward()]
    return fn


@st.composite
def classification_cases(draw, max_batch=6, max_classes=8):
    """(logits, target): class indices or class probabilities, batch size 1 included."""
    logits, labels = draw(logits_and_labels(max_batch=max_batch, min_classes=1,
                                            max_classes=max_classes))
    if draw(st.booleans()):
        return logits, labels
    raw = draw(arrays_for(logits.shape, 0.0, 1.0)) + 1e-3
    return logits, raw / raw.sum(axis=1, keepdims=True)


smoothings = st.sampled_from([0.0, 0.1]) | st.floats(0.0, 1.0)
element_shapes = hnp.array_shapes(min_dims=1, max_dims=3, max_side=5)


# ------------------------------------------------------------------------- cross-entropy

@given(classification_cases(), smoothings)
def test_cross_entropy_from_logits_gradient_matches_central_differences(case, smoothing):
    logits, target = case
    assert gradcheck(loss_and_backward(CrossEntropy(label_smoothing=smoothing), target),
                     [logits])


@given(classification_cases(), smoothings, st.data())
def test_cross_entropy_from_probabilities_gradient_matches_central_differences(
        case, smoothing, data):
    logits, target = case
    probs = data.draw(arrays_for(logits.shape, 0.05, 0.95))
    loss = CrossEntropy(from_logits=False, label_smoothing=smoothing)
    assert gradcheck(loss_and_backward(loss, target), [probs])


@settings(max_examples=1)  # ~2,000 loss evaluations
@given(logits_and_labels(max_batch=1, min_classes=1000, max_classes=1000))
def test_cross_entropy_gradient_matches_central_differences_for_1000_classes(case):
    logits, labels = case
    assert gradcheck(loss_and_backward(CrossEntropy(label_smoothing=0.1), labels), [logits])


@given(classification_cases(), smoothings)
def test_cross_entropy_agrees_with_the_functional_form_and_on_probabilities(case, smoothing):
    logits, target = case
    fused = CrossEntropy(label_smoothing=smoothing)
    on_probs = CrossEntropy(from_logits=False, label_smoothing=smoothing)
    value = fused(logits, target)
    assert value == pytest.approx(
        float(F.cross_entropy(logits, target, label_smoothing=smoothing)), rel=1e-12)
    assert on_probs(scipy.special.softmax(logits, axis=1), target) == pytest.approx(
        value, rel=1e-9, abs=1e-12)


def test_cross_entropy_on_probabilities_matches_scikit_learn_log_loss():
    rng = np.random.default_rng(3)
    probs = scipy.special.softmax(rng.normal(size=(20, 4)), axis=1)
    labels = rng.integers(0, 4, size=20)
    expected = log_loss(labels, probs, labels=[0, 1, 2, 3])
    assert CrossEntropy(from_logits=False)(probs, labels) == pytest.approx(expected, rel=1e-12)


@given(classification_cases())
def test_backward_through_softmax_equals_the_fused_gradient(case):
    logits, target = case
    probs = scipy.special.softmax(logits, axis=1)
    on_probs = CrossEntropy(from_logits=False)
    on_probs(probs, target)
    grad_probs = on_probs.backward()
    # the softmax Jacobian applied by hand: dz = p * (g - <g, p>)
    chained = probs * (grad_probs - np.sum(grad_probs * probs, axis=1, keepdims=True))
    fused = CrossEntropy()
    fused(logits, target)
    np.testing.assert_allclose(fused.backward(), chained, rtol=1e-7, atol=1e-10)


def test_cross_entropy_is_finite_for_extreme_logits_and_zero_probabilities():
    fused = CrossEntropy(label_smoothing=0.1)
    assert np.isfinite(fused(np.array([[1e300, -1e300], [-1e4, 1e4]]), np.array([1, 0])))
    assert np.all(np.isfinite(fused.backward()))
    on_probs = CrossEntropy(from_logits=False)
    value = on_probs(np.array([[1.0, 0.0]]), np.array([1]))
    assert value == pytest.approx(-np.log(np.finfo(np.float64).tiny))
    assert np.all(np.isfinite(on_probs.backward()))


def test_cross_entropy_takes_keras_shaped_labels_and_per_pixel_outputs():
    rng = np.random.default_rng(5)
    logits, labels = rng.normal(size=(4, 3)), rng.integers(0, 3, size=4)
    expected = CrossEntropy()(logits, labels)
    assert CrossEntropy()(logits, labels[:, None]) == expected  # Keras' (N, 1) labels
    # a segmentation head (N, H, W, C): every pixel is a row, the mean is over all of them
    pixels, pixel_labels = rng.normal(size=(2, 3, 3, 4)), rng.integers(0, 4, size=(2, 3, 3))
    loss = CrossEntropy(label_smoothing=0.1)
    rows = F.cross_entropy(pixels.reshape(-1, 4), pixel_labels.reshape(-1), label_smoothing=0.1)
    assert loss(pixels, pixel_labels[..., None]) == pytest.approx(float(rows), rel=1e-12)
    assert loss.backward().shape == pixels.shape
    assert gradcheck(loss_and_backward(loss, pixel_labels), [pixels])


@st.composite
def weighted_classification_cases(draw):
    """(logits, target, sample_weight), also per pixel."""
    logits, target = draw(classification_cases(max_batch=4, max_classes=4))
    if draw(st.booleans()):  # two pixels per sample
        logits = np.stack([logits, logits[::-1] * 0.5], axis=1)
        target = np.stack([target, target[::-1]], axis=1)
    return logits, target, draw(arrays_for((len(logits),), 0.0, 2.0))


@given(weighted_classification_cases(), st.booleans())
def test_weighted_cross_entropy_gradient_matches_central_differences(case, from_logits):
    logits, target, weights = case
    pred = logits if from_logits else scipy.special.softmax(logits, axis=-1) * 0.9 + 0.05
    loss = CrossEntropy(from_logits=from_logits, label_smoothing=0.1)
    assert gradcheck(loss_and_backward(loss, target, weights), [pred])


def test_weighted_cross_entropy_is_keras_sum_over_batch_size():
    rng = np.random.default_rng(6)
    logits, labels, weights = rng.normal(size=(5, 3)), rng.integers(0, 3, 5), rng.uniform(size=5)
    per_sample = F.cross_entropy(logits, labels, reduction="none")
    assert CrossEntropy()(logits, labels, sample_weight=weights) == pytest.approx(
        np.sum(weights * per_sample) / 5, rel=1e-12)
    assert CrossEntropy()(logits, labels, sample_weight=np.ones(5)) == pytest.approx(
        CrossEntropy()(logits, labels), rel=1e-15)


def test_cross_entropy_equals_torch_on_pytorch_documentation_samples():
    # torch.nn.CrossEntropyLoss' docstring examples: class indices, class probabilities,
    # label smoothing, and the K-dimensional (per-pixel) case with the class axis moved last
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    logits = rng.normal(size=(3, 5))
    cases = [(logits, rng.integers(0, 5, size=3), 0.0),
             (logits, scipy.special.softmax(rng.normal(size=(3, 5)), axis=1), 0.0),
             (logits, rng.integers(0, 5, size=3), 0.2)]
    for logits, target, smoothing in cases:
        logits_t = torch.tensor(logits, requires_grad=True)
        expected = torch.nn.CrossEntropyLoss(label_smoothing=smoothing)(
            logits_t, torch.tensor(target))
        expected.backward()
        loss = CrossEntropy(label_smoothing=smoothing)
        assert loss(logits, target) == pytest.approx(expected.item(), rel=1e-12)
        np.testing.assert_allclose(loss.backward(), logits_t.grad.numpy(), rtol=1e-10)
    pixels, labels = rng.normal(size=(2, 4, 4, 3)), rng.integers(0, 3, size=(2, 4, 4))
    pixels_t = torch.tensor(pixels, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(pixels_t.permute(0, 3, 1, 2),
                                                 torch.tensor(labels))
    expected.backward()
    loss = CrossEntropy()
    assert loss(pixels, labels) == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(loss.backward(), pixels_t.grad.numpy(), rtol=1e-10)


def test_binary_cross_entropy_equals_torch_with_logits():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    logits, target = rng.normal(scale=4, size=(4, 3)), rng.uniform(size=(4, 3))
    logits_t = torch.tensor(logits, requires_grad=True)
    expected = torch.nn.BCEWithLogitsLoss()(logits_t, torch.tensor(target))
    expected.backward()
    loss = BinaryCrossEntropy()
    assert loss(logits, target) == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(loss.backward(), logits_t.grad.numpy(), rtol=1e-10)


# ------------------------------------------------------------------------- binary cross-entropy

binary_cases = element_shapes.flatmap(
    lambda shape: st.tuples(arrays_for(shape), arrays_for(shape, 0.0, 1.0)))


@given(binary_cases)
def test_binary_cross_entropy_from_logits_gradient_matches_central_differences(case):
    logits, target = case
    assert gradcheck(loss_and_backward(BinaryCrossEntropy(), target), [logits])


@given(binary_cases, st.data())
def test_binary_cross_entropy_from_probabilities_gradient_matches_central_differences(
        case, data):
    logits, target = case
    probs = data.draw(arrays_for(logits.shape, 0.05, 0.95))
    assert gradcheck(loss_and_backward(BinaryCrossEntropy(from_logits=False), target), [probs])


@given(binary_cases)
def test_binary_cross_entropy_agrees_on_logits_and_probabilities(case):
    logits, target = case
    on_probs = BinaryCrossEntropy(from_logits=False)(scipy.special.expit(logits), target)
    assert BinaryCrossEntropy()(logits, target) == pytest.approx(on_probs, rel=1e-9, abs=1e-12)


@given(binary_cases, st.data())
def test_weighted_binary_cross_entropy_gradient_matches_central_differences(case, data):
    logits, target = case
    weights = data.draw(arrays_for((logits.shape[0],), 0.0, 2.0))
    for loss, pred in ((BinaryCrossEntropy(), logits),
                       (BinaryCrossEntropy(from_logits=False), scipy.special.expit(logits) * 0.9
                        + 0.05)):
        assert gradcheck(loss_and_backward(loss, target, weights), [pred])
        ones = loss(pred, target, sample_weight=np.ones(len(pred)))
        assert ones == pytest.approx(loss(pred, target), rel=1e-12)


def test_binary_cross_entropy_on_probabilities_matches_scikit_learn_log_loss():
    rng = np.random.default_rng(4)
    probs = rng.uniform(0.01, 0.99, size=30)
    labels = rng.integers(0, 2, size=30)
    expected = log_loss(labels, probs)
    assert BinaryCrossEntropy(from_logits=False)(probs, labels.astype(float)) == (
        pytest.approx(expected, rel=1e-12))


# ------------------------------------------------------------------------- regression losses

regression_cases = element_shapes.flatmap(
    lambda shape: st.tuples(arrays_for(shape), arrays_for(shape)))


@given(regression_cases)
def test_mean_squared_error_matches_scikit_learn_and_central_differences(case):
    pred, target = case
    loss = MeanSquaredError()
    assert loss(pred, target) == pytest.approx(
        mean_squared_error(target.ravel(), pred.ravel()), rel=1e-12, abs=1e-300)
    assert gradcheck(loss_and_backward(loss, target), [pred])


@given(element_shapes.flatmap(lambda shape: st.tuples(
    arrays_for(shape), arrays_for(shape, 0.01, 1.0), hnp.arrays(np.bool_, shape))))
def test_mean_absolute_error_matches_scikit_learn_and_central_differences(case):
    pred, gap, below = case
    # targets at least 0.01 from the prediction, where |p - y| is smooth
    target = np.where(below, pred - gap, pred + gap)
    loss = MeanAbsoluteError()
    assert loss(pred, target) == pytest.approx(
        mean_absolute_error(target.ravel(), pred.ravel()), rel=1e-12)
    assert gradcheck(loss_and_backward(loss, target), [pred])


def test_mean_absolute_error_gradient_is_zero_on_target():
    loss = MeanAbsoluteError()
    loss(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 0.0, 3.0, 5.0]))
    np.testing.assert_array_equal(loss.backward(), [0.0, 0.25, 0.0, -0.25])


# ------------------------------------------------------------------------- protocol and dtypes

FLOAT32_CASES = [
    (CrossEntropy(), np.array([[1.0, -2.0, 3e30]], np.float32), np.array([2])),
    (CrossEntropy(label_smoothing=0.2), np.array([[1.0, -2.0]], np.float32),
     np.array([[0.3, 0.7]])),
    (CrossEntropy(from_logits=False), np.array([[0.2, 0.8]], np.float32), np.array([1])),
    (BinaryCrossEntropy(), np.array([[1.0, -2.0]], np.float32), np.array([[0.0, 1.0]])),
    (BinaryCrossEntropy(from_logits=False), np.array([0.3, 0.9], np.float32),
     np.array([0.0, 1.0])),
    (MeanSquaredError(), np.array([[1.0], [2.0]], np.float32), np.array([[0.0], [1.0]])),
    (MeanAbsoluteError(), np.array([1.0, 2.0], np.float32), np.array([0.0, 3.0])),
]


@pytest.mark.parametrize(("loss", "pred", "target"), FLOAT32_CASES)
def test_value_is_a_float_and_backward_keeps_the_dtype_of_pred(loss, pred, target):
    value = loss(pred, target)
    assert type(value) is float
    grad = loss.backward()
    assert grad.dtype == np.float32
    assert grad.shape == pred.shape
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("loss_class", list(LOSSES.values()))
def test_backward_before_any_call_raises(loss_class):
    with pytest.raises(RuntimeError, match=rf"^{loss_class.__name__}.backward\(\) was called "
                                           r"before the loss was computed"):
        loss_class().backward()


def test_backward_uses_the_latest_call():
    loss = MeanSquaredError()
    loss(np.array([1.0, 1.0]), np.zeros(2))
    loss(np.array([3.0]), np.zeros(1))
    np.testing.assert_array_equal(loss.backward(), [6.0])


# ------------------------------------------------------------------------- registry and config

@pytest.mark.parametrize(("name", "loss_class"), [
    ("cross_entropy", CrossEntropy), ("binary_cross_entropy", BinaryCrossEntropy),
    ("mse", MeanSquaredError), ("mae", MeanAbsoluteError)])
def test_get_builds_a_loss_from_its_short_name(name, loss_class):
    assert type(losses.get(name)) is loss_class


def test_get_returns_a_loss_instance_itself():
    loss = CrossEntropy(label_smoothing=0.1)
    assert losses.get(loss) is loss


@pytest.mark.parametrize("loss", [CrossEntropy(from_logits=False, label_smoothing=0.25),
                                  BinaryCrossEntropy(from_logits=False), MeanSquaredError(),
                                  MeanAbsoluteError()])
def test_serialize_round_trips_through_json(loss):
    spec = json.loads(json.dumps(losses.serialize(loss)))
    assert spec["class_name"] == type(loss).__name__
    restored = losses.deserialize(spec)
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    assert type(loss).from_config(loss.get_config()).get_config() == loss.get_config()


def test_config_and_repr_name_the_constructor_arguments():
    assert CrossEntropy().get_config() == {"from_logits": True, "label_smoothing": 0.0}
    assert BinaryCrossEntropy().get_config() == {"from_logits": True}
    assert MeanSquaredError().get_config() == {"reduction": "sum_over_batch_size",
                                               "name": "mean_squared_error"}
    assert repr(CrossEntropy(label_smoothing=0.1)) == (
        "CrossEntropy(from_logits=True, label_smoothing=0.1)")
    assert losses.serialize(None) is None
    assert losses.deserialize(None) is None


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: losses.get("typo"), ValueError,
     r"^get: unknown loss 'typo'; known: cross_entropy, "
     r"binary_cross_entropy, mean_squared_error"),
    (lambda: losses.get(1.5), TypeError,
     r"^get: expected a loss name, a Loss, a Loss class, a config dict or None, got float"),
    (lambda: CrossEntropy(label_smoothing=1.5), ValueError,
     r"^CrossEntropy: label_smoothing must be in \[0, 1\], got 1.5"),
    (lambda: CrossEntropy(label_smoothing=None), TypeError,
     r"^CrossEntropy: label_smoothing must be a number"),
    (lambda: CrossEntropy(from_logits="yes"), TypeError,
     r"^CrossEntropy: from_logits must be True or False, got str"),
    (lambda: BinaryCrossEntropy(from_logits=1), TypeError,
     r"^BinaryCrossEntropy: from_logits must be True or False"),
    (lambda: CrossEntropy(from_logits=False)(np.array([[2.0, -1.0]]), [0]), ValueError,
     r"^CrossEntropy: with from_logits=False, pred must be probabilities in \[0, 1\], "
     r"got values in \[-1.0, 2.0\]; pass from_logits=True"),
    (lambda: CrossEntropy(from_logits=False)(np.array([[0.5, 0.5]]), [2]), ValueError,
     r"^CrossEntropy: target holds class index 2, outside \[0, 2\)"),
    (lambda: CrossEntropy()(np.zeros((2, 3)), np.zeros((2, 4))), ValueError,
     r"^cross_entropy: target has 4 classes but logits have 3 columns"),
    (lambda: BinaryCrossEntropy(from_logits=False)(np.array([1.5]), [1.0]), ValueError,
     r"^BinaryCrossEntropy: with from_logits=False, pred must be probabilities"),
    (lambda: BinaryCrossEntropy(from_logits=False)(np.array([0.5]), [2.0]), ValueError,
     r"^BinaryCrossEntropy: target must hold probabilities in \[0, 1\]"),
    (lambda: BinaryCrossEntropy(from_logits=False)(np.array([0.5]), np.zeros(2)), ValueError,
     r"^BinaryCrossEntropy: target has shape \(2,\) but pred has shape \(1,\)"),
    (lambda: MeanSquaredError()(np.zeros((3, 2)), np.zeros(3)), ValueError,
     r"^MeanSquaredError: target and pred must have the same shape"),
    (lambda: MeanAbsoluteError()(np.array(["a"]), np.zeros(1)), TypeError,
     r"^MeanAbsoluteError: pred must be a real numeric array"),
    (lambda: losses.deserialize({"class_name": "Hinge2", "config": {}}), ValueError,
     r"^deserialize: unknown loss 'Hinge2'; known: CrossEntropy, BinaryCrossEntropy, "
     r"MeanSquaredError, MeanAbsoluteError, "),
    (lambda: CrossEntropy()(np.zeros((2, 3)), [0, 1], sample_weight=np.ones(3)), ValueError,
     r"^CrossEntropy: sample_weight must have shape \(2,\), one weight per sample, "
     r"got shape \(3,\)"),
    (lambda: CrossEntropy()(np.zeros((2, 2, 3)), np.zeros((2, 3))), ValueError,
     r"^cross_entropy: logits must be 2-D \(batch, classes\), got shape \(2, 2, 3\)"),
    (lambda: losses.deserialize({"config": {}}), ValueError,
     r"^deserialize: a loss spec must have exactly the keys 'class_name' and 'config'"),
    (lambda: losses.deserialize({"class_name": "CrossEntropy", "config": None}), TypeError,
     r"^deserialize: the config of CrossEntropy must be a dict"),
    (lambda: losses.deserialize("mse"), TypeError,
     r"^deserialize: a loss spec must be a \{'class_name', 'config'\} dict"),
    (lambda: losses.deserialize({"class_name": "MeanSquaredError",
                                 "config": {"delta": 1.0}}), ValueError,
     r"^MeanSquaredError.from_config: unknown key\(s\) \['delta'\]; "
     r"expected \['name', 'reduction'\]"),
    (lambda: losses.serialize("mse"), TypeError, r"^serialize: expected a Loss or None"),
])
def test_bad_arguments_raise_errors_naming_them(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_serialize_refuses_an_unregistered_loss():
    class Doubled(Loss):
        pass

    with pytest.raises(ValueError, match=r"^serialize: Doubled is not in .*LOSSES"):
        losses.serialize(Doubled())
