"""minidl.data: batching, splitting, scaling (against scikit-learn) and the synthetic data sets."""

import json

import numpy as np
import pytest
import sklearn.preprocessing
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from minidl import data, functional

# ---------------------------------------------------------------------------------------------
# batches


@given(st.integers(1, 200), st.integers(1, 64), st.booleans(), st.integers(0, 2**32 - 1))
def test_batches_cover_every_sample_exactly_once_and_keep_the_last_partial_batch(
        n, batch_size, shuffle, seed):
    x = np.arange(n)
    y = np.arange(n) * 10
    pairs = list(data.batches(x, y, batch_size=batch_size, shuffle=shuffle,
                              rng=np.random.default_rng(seed)))
    sizes = [len(xb) for xb, _ in pairs]
    expected_sizes = [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    assert sizes == expected_sizes
    seen = np.concatenate([xb for xb, _ in pairs])
    np.testing.assert_array_equal(np.sort(seen), x)
    for xb, yb in pairs:
        np.testing.assert_array_equal(yb, xb * 10)  # rows stay paired


def test_batches_without_shuffle_are_views_in_order():
    x = np.arange(20.0).reshape(10, 2)
    y = np.arange(10)
    pairs = list(data.batches(x, y, batch_size=4))
    assert [len(xb) for xb, _ in pairs] == [4, 4, 2]
    for start, (xb, yb) in zip(range(0, 10, 4), pairs, strict=True):
        assert np.shares_memory(xb, x) and np.shares_memory(yb, y)
        np.testing.assert_array_equal(xb, x[start:start + 4])


def test_batches_with_the_same_seed_are_identical_and_each_epoch_reshuffles():
    x = np.arange(50)

    def epochs(rng):
        return [np.concatenate([xb for xb, _ in data.batches(x, batch_size=8, shuffle=True,
                                                             rng=rng)]) for _ in range(2)]

    first_run = epochs(np.random.default_rng(7))
    second_run = epochs(np.random.default_rng(7))
    np.testing.assert_array_equal(first_run, second_run)
    assert not np.array_equal(first_run[0], first_run[1])
    assert not np.array_equal(first_run[0], x)


def test_batches_without_y_yield_none_for_y():
    assert all(yb is None for _, yb in data.batches(np.zeros((5, 3)), batch_size=2))


def test_batches_of_an_empty_set_yield_nothing():
    assert list(data.batches(np.zeros((0, 3)), np.zeros(0))) == []


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"x": np.zeros(100), "y": np.zeros(99)}, "batches: x has 100 rows but y has 99"),
    ({"x": np.zeros(4), "batch_size": 0}, "batches: batch_size must be a positive integer, got 0"),
    ({"x": np.zeros(4), "batch_size": 2.0}, "batch_size must be a positive integer, got 2.0"),
    ({"x": np.zeros(4), "batch_size": True}, "batch_size must be a positive integer, got True"),
    ({"x": 3.0}, "batches: x must have one row per sample, got a scalar"),
])
def test_batches_check_their_arguments_when_called(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.batches(**kwargs)  # no next(): the error comes from the call itself


# ---------------------------------------------------------------------------------------------
# train_test_split


@given(st.integers(2, 300), st.floats(0.01, 0.99), st.integers(0, 2**32 - 1))
def test_split_sizes_follow_test_size_and_rows_stay_paired(n, test_size, seed):
    x = np.arange(n)[:, None] * np.ones((1, 3))
    y = np.arange(n)
    n_test = min(max(int(np.ceil(test_size * n)), 1), n - 1)
    x_train, x_test, y_train, y_test = data.train_test_split(x, y, test_size=n_test, seed=seed)
    assert (len(x_train), len(x_test)) == (n - n_test, n_test)
    np.testing.assert_array_equal(x_train[:, 0], y_train)
    np.testing.assert_array_equal(x_test[:, 0], y_test)
    np.testing.assert_array_equal(np.sort(np.concatenate([y_train, y_test])), y)


def test_fractional_test_size_rounds_the_test_side_up():
    x_train, x_test, _, _ = data.train_test_split(np.zeros(10), np.zeros(10), test_size=0.25,
                                                  seed=0)
    assert (len(x_train), len(x_test)) == (7, 3)


@pytest.mark.parametrize("stratify", [False, True])
def test_same_seed_gives_the_same_split_and_another_seed_another(stratify):
    x, y = np.arange(100), np.arange(100) % 3
    first = data.train_test_split(x, y, seed=3, stratify=stratify)
    again = data.train_test_split(x, y, seed=3, stratify=stratify)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = data.train_test_split(x, y, seed=4, stratify=stratify)
    assert not np.array_equal(first[1], other[1])


def _stratified_test_counts(class_sizes, test_size, seed):
    y = np.repeat(np.arange(len(class_sizes)), class_sizes)
    x = np.arange(len(y))
    x_train, x_test, y_train, y_test = data.train_test_split(x, y, test_size=test_size,
                                                             seed=seed, stratify=True)
    np.testing.assert_array_equal(y[x_train], y_train)
    np.testing.assert_array_equal(y[x_test], y_test)
    test_counts = np.bincount(y_test, minlength=len(class_sizes))
    train_counts = np.bincount(y_train, minlength=len(class_sizes))
    np.testing.assert_array_equal(test_counts + train_counts, class_sizes)
    return test_counts, train_counts


@given(st.lists(st.integers(2, 40), min_size=2, max_size=6), st.floats(0.05, 0.95),
       st.integers(0, 2**32 - 1))
def test_stratified_split_puts_every_class_on_both_sides(class_sizes, test_size, seed):
    n_test = int(np.ceil(test_size * sum(class_sizes)))
    assume(len(class_sizes) <= n_test <= sum(class_sizes) - len(class_sizes))
    test_counts, train_counts = _stratified_test_counts(class_sizes, test_size, seed)
    assert test_counts.sum() == n_test
    assert np.all(test_counts >= 1) and np.all(train_counts >= 1)


@given(st.lists(st.integers(5, 60), min_size=2, max_size=6), st.floats(0.1, 0.9),
       st.integers(0, 2**32 - 1))
def test_stratified_split_keeps_each_class_share_to_within_one_sample(class_sizes, test_size,
                                                                     seed):
    sizes = np.array(class_sizes)
    exact_share = sizes * np.ceil(test_size * sizes.sum()) / sizes.sum()
    # where a share is under 1 or over size - 1, "both sides non-empty" takes precedence
    assume(np.all((exact_share >= 1) & (exact_share <= sizes - 1)))
    test_counts, _ = _stratified_test_counts(class_sizes, test_size, seed)
    assert np.all(np.abs(test_counts - exact_share) < 1)


def test_stratified_split_gives_small_classes_one_sample_per_side():
    test_counts, train_counts = _stratified_test_counts([2, 2, 8], 0.75, seed=0)
    assert test_counts.tolist() == [1, 1, 7]
    assert train_counts.tolist() == [1, 1, 1]


def test_stratified_split_accepts_one_hot_labels_and_mixes_the_classes():
    labels = np.repeat([0, 1], [60, 40])
    y = functional.one_hot(labels, 2)
    _, _, y_train, y_test = data.train_test_split(np.zeros(100), y, test_size=0.2, seed=0,
                                                  stratify=True)
    assert y_test.sum(axis=0).tolist() == [12, 8]
    assert y_train.sum(axis=0).tolist() == [48, 32]
    assert not np.all(np.diff(np.argmax(y_train, axis=1)) >= 0)  # not sorted by class


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"y": np.zeros(9)}, "train_test_split: x has 10 rows but y has 9"),
    ({"test_size": 0.0}, r"test_size as a fraction must be in \(0, 1\), got 0.0"),
    ({"test_size": 1.0}, r"test_size as a fraction must be in \(0, 1\), got 1.0"),
    ({"test_size": 10}, "test_size=10 gives 10 test rows out of 10; both sides need at least"),
    ({"test_size": 0}, "test_size=0 gives 0 test rows out of 10"),
    ({"test_size": "20%"}, "test_size must be a fraction or a number of rows, got '20%'"),
    ({"test_size": True}, "test_size must be a fraction or a number of rows, got True"),
    ({"y": np.array([0] * 9 + [1]), "stratify": True}, "class 1 has only 1 sample"),
    ({"y": np.arange(10) % 5, "test_size": 3, "stratify": True},
     r"each side needs one row per class \(5 classes\), but the split is 7 train / 3 test"),
])
def test_bad_split_arguments_raise_errors_naming_them(kwargs, message):
    arguments = {"x": np.zeros(10), "y": np.zeros(10)} | kwargs
    with pytest.raises(ValueError, match=message):
        data.train_test_split(**arguments)


# ---------------------------------------------------------------------------------------------
# StandardScaler


@given(arrays(np.float64, st.tuples(st.integers(1, 30), st.integers(1, 5)),
              elements=st.floats(-1e3, 1e3)))
def test_scaler_matches_sklearn_standard_scaler(x):
    # sklearn also calls a column constant when its spread is within rounding of its mean;
    # minidl only when all values are equal: compare where the two rules agree
    spread, size = np.ptp(x, axis=0), np.abs(x).max(axis=0)
    assume(np.all((spread == 0) | (spread > 1e-9 * size)))
    oracle = sklearn.preprocessing.StandardScaler().fit(x)
    scaler = data.StandardScaler().fit(x)
    np.testing.assert_allclose(scaler.mean, oracle.mean_, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(scaler.transform(x), oracle.transform(x), rtol=1e-7, atol=1e-7)


def test_scaler_gives_constant_columns_scale_one_without_warning():
    x = np.column_stack([np.full(5, 0.1), np.arange(5.0)])
    scaler = data.StandardScaler().fit(x)
    assert scaler.scale[0] == 1.0
    z = scaler.transform(x)
    np.testing.assert_allclose(z[:, 0], 0.0, atol=1e-15)
    np.testing.assert_allclose(z[:, 1].mean(), 0.0, atol=1e-15)
    np.testing.assert_allclose(z[:, 1].std(), 1.0)


def test_scaler_keeps_float32_and_computes_integers_in_float64():
    x32 = np.arange(12, dtype=np.float32).reshape(6, 2)
    assert data.StandardScaler().fit_transform(x32).dtype == np.float32
    assert data.StandardScaler().fit_transform(x32.astype(np.int64)).dtype == np.float64


def test_scaler_inverse_transform_undoes_transform():
    x = np.random.default_rng(0).normal(5.0, 3.0, size=(20, 4))
    scaler = data.StandardScaler().fit(x)
    np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(x)), x, rtol=1e-12)


def test_scaler_config_round_trips_through_json():
    x = np.random.default_rng(1).normal(size=(10, 3))
    scaler = data.StandardScaler().fit(x)
    restored = data.StandardScaler.from_config(json.loads(json.dumps(scaler.get_config())))
    np.testing.assert_array_equal(restored.transform(x), scaler.transform(x))
    unfitted = data.StandardScaler.from_config(data.StandardScaler().get_config())
    assert unfitted.mean is None and unfitted.scale is None


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda s: s.transform(np.zeros((2, 3))), RuntimeError,
     r"StandardScaler.transform: the scaler is not fitted; call fit\(x_train\) first"),
    (lambda s: s.inverse_transform(np.zeros((2, 3))), RuntimeError,
     "StandardScaler.inverse_transform: the scaler is not fitted"),
    (lambda s: s.fit(np.zeros((4, 3))).transform(np.zeros((2, 4))), ValueError,
     "StandardScaler.transform: x has 4 features but the scaler was fit on 3"),
    (lambda s: s.fit(np.zeros(4)), ValueError,
     r"StandardScaler.fit: x must be 2-D \(samples, features\), got shape \(4,\)"),
    (lambda s: s.fit(np.zeros((0, 2))), ValueError, "StandardScaler.fit: x has no rows"),
    (lambda s: s.fit(np.array([["a"]])), TypeError,
     "StandardScaler.fit: x must be a numeric array"),
    (lambda s: s.from_config({"mean": [0.0]}), ValueError,
     "StandardScaler.from_config: missing key 'scale'"),
    (lambda s: s.from_config({"mean": [0.0], "scale": [0.0]}), ValueError,
     "scale finite and > 0"),
    (lambda s: s.from_config({"mean": [0.0], "scale": [1.0, 2.0]}), ValueError,
     r"same length, got shapes \(1,\) and \(2,\)"),
])
def test_scaler_misuse_raises_errors_naming_the_problem(call, error, message):
    with pytest.raises(error, match=message):
        call(data.StandardScaler())


def test_one_hot_is_the_functional_one():
    assert data.one_hot is functional.one_hot


# ---------------------------------------------------------------------------------------------
# synthetic data sets

CLASSIFICATION_SETS = {
    "spirals": (lambda seed: data.make_spirals(50, n_classes=4, seed=seed), 200, 2, 4),
    "moons": (lambda seed: data.make_moons(101, seed=seed), 101, 2, 2),
    "blobs": (lambda seed: data.make_blobs(100, centers=3, seed=seed), 100, 2, 3),
    "xor": (lambda seed: data.make_xor(64, seed=seed), 64, 2, 2),
}


@pytest.mark.parametrize("name", CLASSIFICATION_SETS)
def test_classification_sets_have_float32_points_int64_labels_and_every_class(name):
    make, n, dim, num_classes = CLASSIFICATION_SETS[name]
    x, y = make(0)
    assert x.shape == (n, dim) and x.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64
    assert set(np.unique(y)) == set(range(num_classes))
    assert np.all(np.isfinite(x))


@pytest.mark.parametrize("name", CLASSIFICATION_SETS)
def test_classification_sets_are_determined_by_the_seed(name):
    make = CLASSIFICATION_SETS[name][0]
    (x1, y1), (x2, y2), (x3, _) = make(5), make(5), make(6)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, x3)


def test_make_linear_without_noise_lies_exactly_on_the_line():
    x, y = data.make_linear(100, noise=0.0, seed=0)
    assert x.shape == y.shape == (100, 1)
    assert x.dtype == y.dtype == np.float32
    np.testing.assert_array_equal(y, 2 * x - 1)
    assert x.min() >= -1.0 and x.max() <= 1.0


def test_make_linear_with_noise_is_fit_by_slope_two_and_intercept_minus_one():
    x, y = data.make_linear(2000, noise=0.1, seed=0)
    slope, intercept = np.polyfit(x[:, 0].astype(np.float64), y[:, 0].astype(np.float64), 1)
    assert slope == pytest.approx(2.0, abs=0.02)
    assert intercept == pytest.approx(-1.0, abs=0.01)
    np.testing.assert_array_equal(x, data.make_linear(2000, noise=0.5, seed=0)[0])


def test_blobs_points_are_nearest_to_their_own_center():
    centers = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 4.0]])
    x, y = data.make_blobs(203, centers=centers, std=0.3, seed=1)
    assert np.bincount(y).tolist() == [51, 51, 51, 50]
    distances = np.linalg.norm(x[:, None, :] - centers[None], axis=2)
    np.testing.assert_array_equal(np.argmin(distances, axis=1), y)
    for label, center in enumerate(centers):
        np.testing.assert_allclose(x[y == label].mean(axis=0), center, atol=0.15)


def test_blobs_accept_centers_in_any_dimension():
    x, y = data.make_blobs(10, centers=np.zeros((2, 5)), seed=0)
    assert x.shape == (10, 5) and set(y) == {0, 1}


def test_xor_without_noise_labels_opposite_signs_as_one():
    x, y = data.make_xor(500, noise=0.0, seed=2)
    np.testing.assert_array_equal(y, (x[:, 0] * x[:, 1] < 0).astype(np.int64))
    assert np.abs(x).max() <= 1.0


def test_moons_without_noise_lie_on_their_two_half_circles():
    x, y = data.make_moons(200, noise=0.0, seed=3)
    upper, lower = x[y == 0].astype(np.float64), x[y == 1].astype(np.float64)
    np.testing.assert_allclose(np.hypot(upper[:, 0], upper[:, 1]), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.hypot(lower[:, 0] - 1.0, lower[:, 1] - 0.5), 1.0, atol=1e-6)
    assert upper[:, 1].min() >= -1e-6 and lower[:, 1].max() <= 0.5 + 1e-6


def test_spirals_without_noise_lie_on_their_arms():
    x, y = data.make_spirals(100, n_classes=3, noise=0.0, seed=4)
    x = x.astype(np.float64)
    radius = np.hypot(x[:, 0], x[:, 1])
    angle = 4.0 * (y + radius)
    assert radius.max() <= 1.0 + 1e-6
    np.testing.assert_allclose(x[:, 0], radius * np.sin(angle), atol=1e-5)
    np.testing.assert_allclose(x[:, 1], radius * np.cos(angle), atol=1e-5)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: data.make_linear(0), "make_linear: n must be a positive integer, got 0"),
    (lambda: data.make_linear(10, noise=-1.0), r"make_linear: noise must be a finite number >= 0"),
    (lambda: data.make_spirals(10, n_classes=0), "make_spirals: n_classes must be a positive"),
    (lambda: data.make_moons(10, noise=float("nan")), "make_moons: noise must be a finite"),
    (lambda: data.make_blobs(10, std=-0.5), "make_blobs: std must be a finite number >= 0"),
    (lambda: data.make_blobs(10, centers=np.zeros(3)), r"make_blobs: centers must be a number "
                                                       r"of blobs or an array of shape \(K, D\)"),
    (lambda: data.make_xor(2.5), "make_xor: n must be a positive integer, got 2.5"),
])
def test_bad_data_set_arguments_raise_errors_naming_them(call, message):
    with pytest.raises(ValueError, match=message):
        call()
