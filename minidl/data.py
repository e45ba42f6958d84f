"""Data: mini-batches, train/test splits, feature scaling and small synthetic data sets.

Everything random takes a seed or a ``numpy.random.Generator`` and nothing else, so the same
seed always gives the same batches, splits and data sets.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from minidl.functional import one_hot

__all__ = [
    "StandardScaler",
    "batches",
    "make_blobs",
    "make_linear",
    "make_moons",
    "make_spirals",
    "make_xor",
    "one_hot",
    "train_test_split",
]


def _positive_int(function: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{function}: {name} must be a positive integer, got {value!r}")
    return int(value)


def _non_negative(function: str, name: str, value: float) -> float:
    if not (isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value)
            and value >= 0):
        raise ValueError(f"{function}: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _rows(function: str, name: str, value: object) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim == 0:
        raise ValueError(f"{function}: {name} must have one row per sample, got a scalar")
    return array


def _same_rows(function: str, x: np.ndarray, y: np.ndarray) -> None:
    if len(x) != len(y):
        raise ValueError(f"{function}: x has {len(x)} rows but y has {len(y)}")


# ---------------------------------------------------------------------------------------------
# Batching and splitting

def batches(x: object, y: object = None, batch_size: int = 32, shuffle: bool = False,
            rng: np.random.Generator | int | None = None,
            ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Iterate over ``(x_batch, y_batch)`` pairs of ``batch_size`` rows; ``y_batch`` is None
    when ``y`` is None.

    The last batch keeps the leftover rows, so every sample is seen exactly once per pass:
    100 samples in batches of 32 give batches of 32, 32, 32 and 4.

    Without ``shuffle`` the batches are views of ``x`` and ``y`` (no copy). With ``shuffle``
    the order comes from ``rng.permutation``, drawn when ``batches`` is called; ``rng`` is a
    ``numpy.random.Generator`` (its state advances, so each epoch gets a new order), a seed,
    or None for fresh entropy. The model passes its own generator, so the same seed gives the
    same batches run after run.
    """
    x = _rows("batches", "x", x)
    if y is not None:
        y = _rows("batches", "y", y)
        _same_rows("batches", x, y)
    batch_size = _positive_int("batches", "batch_size", batch_size)
    order = np.random.default_rng(rng).permutation(len(x)) if shuffle else None
    return _iterate_batches(x, y, batch_size, order)


def _iterate_batches(x: np.ndarray, y: np.ndarray | None, batch_size: int,
                     order: np.ndarray | None) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    # a generator of its own, so that batches() checks its arguments when called, not at the
    # first next()
    for start in range(0, len(x), batch_size):
        if order is None:
            rows: slice | np.ndarray = slice(start, start + batch_size)
        else:
            # gather one batch at a time: never a shuffled copy of the whole data set
            rows = order[start:start + batch_size]
        yield x[rows], (None if y is None else y[rows])


def _stratified_test_counts(class_sizes: np.ndarray, n_test: int) -> np.ndarray:
    """How many samples of each class go to the test side: as close to the class's share of
    ``n_test`` as possible, and at least one per class on each side."""
    quota = class_sizes * n_test / class_sizes.sum()
    counts = np.clip(np.floor(quota), 1, class_sizes - 1).astype(np.int64)
    # largest remainder: hand out (or take back) one sample at a time where the rounding hurt most
    while counts.sum() != n_test:
        if counts.sum() < n_test:
            room = np.where(counts < class_sizes - 1, quota - counts, -np.inf)
            counts[np.argmax(room)] += 1
        else:
            room = np.where(counts > 1, counts - quota, -np.inf)
            counts[np.argmax(room)] -= 1
    return counts


def train_test_split(x: object, y: object, test_size: float | int = 0.2, seed: int | None = None,
                     stratify: bool = False,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle the rows and split them into ``(x_train, x_test, y_train, y_test)``.

    ``test_size`` is a fraction in (0, 1) (the test side gets ``ceil(test_size * N)`` rows, as
    in scikit-learn) or a number of rows. Both sides are non-empty.

    With ``stratify=True`` every class of ``y`` (labels of shape (N,) or one-hot rows (N, C))
    keeps its proportion on both sides, to within one sample, and appears on both sides; each
    class then needs at least 2 samples, and each side at least one row per class.
    """
    x = _rows("train_test_split", "x", x)
    y = _rows("train_test_split", "y", y)
    _same_rows("train_test_split", x, y)
    n = len(x)
    if n < 2:
        raise ValueError(f"train_test_split: needs at least 2 samples to fill both sides, got {n}")
    if isinstance(test_size, (float, np.floating)):
        if not 0.0 < test_size < 1.0:
            raise ValueError(f"train_test_split: test_size as a fraction must be in (0, 1), "
                             f"got {test_size}")
        n_test = math.ceil(test_size * n)
    elif isinstance(test_size, (int, np.integer)) and not isinstance(test_size, bool):
        n_test = int(test_size)
    else:
        raise ValueError(f"train_test_split: test_size must be a fraction or a number of rows, "
                         f"got {test_size!r}")
    if not 1 <= n_test <= n - 1:
        raise ValueError(f"train_test_split: test_size={test_size!r} gives {n_test} test rows "
                         f"out of {n}; both sides need at least one row")
    rng = np.random.default_rng(seed)

    if stratify:
        if y.ndim > 2:
            raise ValueError(f"train_test_split: stratify needs labels (N,) or one-hot rows "
                             f"(N, C) in y, got shape {y.shape}")
        labels = np.argmax(y, axis=1) if y.ndim == 2 and y.shape[1] > 1 else y.reshape(n)
        classes, class_of_row, class_sizes = np.unique(labels, return_inverse=True,
                                                       return_counts=True)
        if class_sizes.min() < 2:
            rare = classes[np.argmin(class_sizes)].item()
            raise ValueError(f"train_test_split: class {rare!r} has only 1 sample; stratify "
                             f"needs at least 2 per class to put one on each side")
        if not len(classes) <= n_test <= n - len(classes):
            raise ValueError(f"train_test_split: with stratify each side needs one row per class "
                             f"({len(classes)} classes), but the split is {n - n_test} train / "
                             f"{n_test} test rows")
        test_counts = _stratified_test_counts(class_sizes, n_test)
        test_parts = []
        for class_index, count in enumerate(test_counts):
            members = np.flatnonzero(class_of_row == class_index)
            test_parts.append(rng.choice(members, size=count, replace=False))
        test_rows = np.concatenate(test_parts)
        is_test = np.zeros(n, dtype=bool)
        is_test[test_rows] = True
        # shuffle both sides so that classes are not grouped together
        test_rows = rng.permutation(test_rows)
        train_rows = rng.permutation(np.flatnonzero(~is_test))
    else:
        order = rng.permutation(n)
        test_rows, train_rows = order[:n_test], order[n_test:]
    return x[train_rows], x[test_rows], y[train_rows], y[test_rows]


# ---------------------------------------------------------------------------------------------
# Scaling

class StandardScaler:
    r"""Standardise every feature (column) to mean 0 and standard deviation 1.

    .. math:: z_{ij} = \frac{x_{ij} - \mu_j}{s_j}, \qquad
        \mu_j = \frac{1}{N}\sum_i x_{ij}, \qquad
        s_j = \sqrt{\frac{1}{N}\sum_i (x_{ij} - \mu_j)^2}

    (the population standard deviation, as scikit-learn's ``StandardScaler``). A constant
    column has :math:`s_j = 0`; it gets scale 1 instead, so it becomes all zeros rather than NaN.

    Fit on the training data only and reuse the same scaler for validation, test and serving
    data: the statistics are part of the model. ``mean`` and ``scale`` are float64 arrays
    (None until ``fit``); ``transform`` returns float32 for float32 input and float64 otherwise.
    """

    def __init__(self) -> None:
        self.mean: np.ndarray | None = None
        self.scale: np.ndarray | None = None

    def fit(self, x: object) -> StandardScaler:
        x = self._check_input("fit", x)
        if len(x) == 0:
            raise ValueError("StandardScaler.fit: x has no rows")
        # statistics in float64 even for float32 data: sums over many rows lose digits in float32
        self.mean = x.mean(axis=0, dtype=np.float64)
        scale = x.std(axis=0, dtype=np.float64)
        # equal values, or a spread so small that its square underflows to a std of 0
        constant = (x.max(axis=0) == x.min(axis=0)) | (scale == 0)
        self.scale = np.where(constant, 1.0, scale)
        return self

    def transform(self, x: object) -> np.ndarray:
        x = self._check_fitted_input("transform", x)
        return (x - self.mean.astype(x.dtype)) / self.scale.astype(x.dtype)

    def fit_transform(self, x: object) -> np.ndarray:
        return self.fit(x).transform(x)

    def inverse_transform(self, z: object) -> np.ndarray:
        """Undo :meth:`transform`: :math:`x_{ij} = z_{ij} s_j + \\mu_j`."""
        z = self._check_fitted_input("inverse_transform", z)
        return z * self.scale.astype(z.dtype) + self.mean.astype(z.dtype)

    def get_config(self) -> dict:
        """JSON-able state: ``{"mean": [...], "scale": [...]}`` (None before ``fit``)."""
        return {"mean": None if self.mean is None else self.mean.tolist(),
                "scale": None if self.scale is None else self.scale.tolist()}

    @classmethod
    def from_config(cls, config: dict) -> StandardScaler:
        for key in ("mean", "scale"):
            if key not in config:
                raise ValueError(f"StandardScaler.from_config: missing key {key!r}")
        scaler = cls()
        if config["mean"] is None and config["scale"] is None:
            return scaler
        mean = np.asarray(config["mean"], dtype=np.float64)
        scale = np.asarray(config["scale"], dtype=np.float64)
        if mean.ndim != 1 or mean.shape != scale.shape:
            raise ValueError(f"StandardScaler.from_config: mean and scale must be lists of the "
                             f"same length, got shapes {mean.shape} and {scale.shape}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise ValueError("StandardScaler.from_config: mean must be finite and scale finite "
                             "and > 0")
        scaler.mean, scaler.scale = mean, scale
        return scaler

    def _check_input(self, method: str, x: object) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"StandardScaler.{method}: x must be a numeric array, "
                            f"got dtype {x.dtype}")
        if x.ndim != 2:
            raise ValueError(f"StandardScaler.{method}: x must be 2-D (samples, features), "
                             f"got shape {x.shape}")
        return x if x.dtype in (np.float32, np.float64) else x.astype(np.float64)

    def _check_fitted_input(self, method: str, x: object) -> np.ndarray:
        if self.mean is None:
            raise RuntimeError(f"StandardScaler.{method}: the scaler is not fitted; "
                               f"call fit(x_train) first")
        x = self._check_input(method, x)
        if x.shape[1] != len(self.mean):
            raise ValueError(f"StandardScaler.{method}: x has {x.shape[1]} features but the "
                             f"scaler was fit on {len(self.mean)}")
        return x


# ---------------------------------------------------------------------------------------------
# Synthetic data sets

def make_linear(n: int = 100, noise: float = 0.0,
                seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A straight line to fit with one Dense(1): ``y = 2x - 1 + noise * N(0, 1)``.

    ``x`` is drawn uniformly from [-1, 1]. Returns ``x`` and ``y``, both float32 of shape
    (n, 1). A linear model trained with MSE should find kernel 2 and bias -1; with
    ``noise=0`` the points lie exactly on the line. The same seed gives the same ``x`` for
    every ``noise``.
    """
    n = _positive_int("make_linear", "n", n)
    noise = _non_negative("make_linear", "noise", noise)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n, 1)).astype(np.float32)
    jitter = (noise * rng.standard_normal((n, 1))).astype(np.float32)
    y = (2 * x - 1) + jitter
    return x, y


def _shuffled(rng: np.random.Generator, x: np.ndarray,
              y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # mixed classes, so that x[:k] is a fair sample rather than one class
    order = rng.permutation(len(x))
    return x[order].astype(np.float32), y[order].astype(np.int64)


def make_spirals(n_per_class: int = 100, n_classes: int = 3, noise: float = 0.2,
                 seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    r"""Interleaved spiral arms in the plane, one arm per class: not linearly separable, the
    classic test that a hidden layer is doing something.

    Point :math:`i` of class :math:`c` sits at radius :math:`r_i = i / (n - 1)` from the
    origin, at angle :math:`\theta = 4 (c + r_i) + \mathrm{noise} \cdot N(0, 1)` (radians):
    each arm winds about two thirds of a turn outwards, from the origin to radius 1.
    Returns ``x`` float32 of shape (n_per_class * n_classes, 2) and ``y`` int64 labels in
    ``0..n_classes-1``, rows in random order.
    """
    n_per_class = _positive_int("make_spirals", "n_per_class", n_per_class)
    n_classes = _positive_int("make_spirals", "n_classes", n_classes)
    noise = _non_negative("make_spirals", "noise", noise)
    rng = np.random.default_rng(seed)
    radius = np.tile(np.linspace(0.0, 1.0, n_per_class), n_classes)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    angle = 4.0 * (labels + radius) + noise * rng.standard_normal(radius.shape)
    x = np.column_stack([radius * np.sin(angle), radius * np.cos(angle)])
    return _shuffled(rng, x, labels)


def make_moons(n: int = 200, noise: float = 0.1,
               seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles, as scikit-learn's ``make_moons``.

    Class 0 is the upper arc :math:`(\\cos t, \\sin t)`, class 1 the lower arc
    :math:`(1 - \\cos t, 0.5 - \\sin t)`, for :math:`t` evenly spaced in [0, π]; then Gaussian
    noise of standard deviation ``noise`` is added to both coordinates. Class 0 gets
    ``n // 2`` points, class 1 the rest. Returns ``x`` float32 (n, 2) and ``y`` int64, rows in
    random order.
    """
    n = _positive_int("make_moons", "n", n)
    noise = _non_negative("make_moons", "noise", noise)
    rng = np.random.default_rng(seed)
    n_upper = n // 2
    n_lower = n - n_upper
    t_upper = np.linspace(0.0, np.pi, n_upper)
    t_lower = np.linspace(0.0, np.pi, n_lower)
    x = np.concatenate([np.column_stack([np.cos(t_upper), np.sin(t_upper)]),
                        np.column_stack([1.0 - np.cos(t_lower), 0.5 - np.sin(t_lower)])])
    x += noise * rng.standard_normal(x.shape)
    labels = np.concatenate([np.zeros(n_upper), np.ones(n_lower)])
    return _shuffled(rng, x, labels)


def make_blobs(n: int = 300, centers: int | object = 3, std: float = 1.0,
               seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs: class ``k`` is drawn from N(center_k, std² I).

    ``centers`` is either a number of blobs, whose centers are drawn uniformly from the square
    [-10, 10]² (scikit-learn's default box), or an array of centers of shape (K, D). The ``n``
    points are shared out as evenly as possible (the first blobs get one more when ``n`` is not
    a multiple of K). Returns ``x`` float32 (n, D) (D = 2 for a number of centers) and ``y``
    int64 labels ``0..K-1``, rows in random order. With ``std`` small compared with the
    distance between centers, every point is nearest to its own center.
    """
    n = _positive_int("make_blobs", "n", n)
    std = _non_negative("make_blobs", "std", std)
    rng = np.random.default_rng(seed)
    if isinstance(centers, (int, np.integer)) and not isinstance(centers, bool):
        n_centers = _positive_int("make_blobs", "centers", centers)
        center_points = rng.uniform(-10.0, 10.0, size=(n_centers, 2))
    else:
        center_points = np.asarray(centers, dtype=np.float64)
        if center_points.ndim != 2 or len(center_points) == 0:
            raise ValueError(f"make_blobs: centers must be a number of blobs or an array of "
                             f"shape (K, D), got shape {center_points.shape}")
        if not np.all(np.isfinite(center_points)):
            raise ValueError("make_blobs: centers must be finite")
    labels = np.arange(n) % len(center_points)
    x = center_points[labels] + std * rng.standard_normal((n, center_points.shape[1]))
    return _shuffled(rng, x, labels)


def make_xor(n: int = 200, noise: float = 0.1,
             seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The XOR problem: points uniform in the square [-1, 1]², labelled 1 where the two
    coordinates have opposite signs (second and fourth quadrants) and 0 elsewhere.

    No straight line separates the classes; one hidden layer does. After labelling, Gaussian
    noise of standard deviation ``noise`` moves the points, which blurs the boundary along the
    axes. Returns ``x`` float32 (n, 2) and ``y`` int64.
    """
    n = _positive_int("make_xor", "n", n)
    noise = _non_negative("make_xor", "noise", noise)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n, 2))
    labels = (x[:, 0] * x[:, 1] < 0).astype(np.int64)
    x += noise * rng.standard_normal(x.shape)
    return x.astype(np.float32), labels
