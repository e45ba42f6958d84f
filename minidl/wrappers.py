"""scikit-learn estimators around minidl models: Keras 3's ``SKLearnClassifier`` and
``SKLearnRegressor`` (``keras.wrappers``), with the ``sklearn`` extra.

``SKLearnClassifier(model, warm_start=False, model_kwargs=None, fit_kwargs=None)``: ``model``
is a compiled ``Sequential`` or a function ``model(X=X, y=y, **model_kwargs)`` that returns
one. ``__init__`` only stores its arguments (scikit-learn's rule, which ``clone`` and grid
search rely on); ``fit`` validates the data and builds ``model_``:

.. code-block:: text

    X, y     ← validate_data(X, y)                    sets n_features_in_
    classes_ ← the sorted distinct labels of y        (classifier)
    model_   ← model(X=X, y=y, **model_kwargs)        a function gets the raw targets
             | a new Sequential from model's config   weights drawn afresh from its seed
    model_.fit(X, targets, **{**fit_kwargs, **kwargs})
    history_ ← the History's dict of lists

A model given as an instance is never trained: each ``fit`` builds a new one from its
architecture, seed and compile arguments, as Keras' ``clone_model`` does, so the same seed
gives the same fit every time. The classifier trains on what the model's loss reads: class
indices for a sparse loss (``"sparse_categorical_crossentropy"``, ``"cross_entropy"``), one-hot
rows otherwise, one 0/1 column for a one-unit (sigmoid) output.

Pickling stores ``model_`` as the bytes of its minidl file (``model.save``, docs/format.md):
a pickle holds no pickled minidl object, and loading it checks the file as ``load_model``
does. ``expected_failed_checks`` names the scikit-learn estimator checks these estimators
fail, each with its reason (docs/sklearn.md).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from minidl.extras import missing

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ModuleNotFoundError as error:
    raise missing(error, "sklearn") from error

from minidl.layers import layer_from_config
from minidl.model import MODEL_FILE_NAME, Sequential, load_model

# Keras' public names; the shared base, SKLBase, is not one
__all__ = ["SKLearnClassifier", "SKLearnRegressor", "expected_failed_checks"]


class SKLBase(BaseEstimator):
    """What the classifier and the regressor share (Keras' ``SKLBase``): ``fit``,
    ``partial_fit``, ``warm_start`` and pickling through minidl's file.

    ``model``: a compiled ``Sequential`` (a blueprint: each fit trains a new model built
    from its configuration) or a function ``model(X=X, y=y, **model_kwargs)`` returning a
    compiled ``Sequential``. ``warm_start``: a second ``fit`` continues training ``model_``
    instead of building a new one. ``fit_kwargs``: arguments of ``Sequential.fit``
    (``epochs``, ``batch_size``, ``verbose``, ``callbacks``...); those given to ``fit`` win.

    Attributes after ``fit``: ``model_`` (the trained ``Sequential``), ``history_`` (its
    logs, ``{"loss": [...], ...}``, one entry per epoch, continued by warm starts and
    ``partial_fit``), ``n_features_in_`` (and ``feature_names_in_`` for a DataFrame).

    A subclass says how its targets are validated (``_y_checks``: ``validate_data``'s
    arguments for y), checked (``_check_targets``) and given to the model
    (``_encode_targets``).
    """

    _y_checks: ClassVar[dict[str, Any]] = {}

    def __init__(self, model: Sequential | Callable[..., Sequential], warm_start: bool = False,
                 model_kwargs: dict[str, Any] | None = None,
                 fit_kwargs: dict[str, Any] | None = None) -> None:
        self.model = model
        self.warm_start = warm_start
        self.model_kwargs = model_kwargs
        self.fit_kwargs = fit_kwargs

    def fit(self, X: Any, y: Any, **kwargs: Any) -> SKLBase:
        """Train on ``(X, y)``; ``kwargs`` go to ``Sequential.fit`` over ``fit_kwargs``. With
        ``warm_start`` and a fitted ``model_``, training continues for ``epochs`` more."""
        resume = bool(self.warm_start) and hasattr(self, "model_")
        return self._fit(X, y, {**(self.fit_kwargs or {}), **kwargs}, resume=resume)

    def _partial_fit(self, X: Any, y: Any, kwargs: dict[str, Any],
                     classes: Any = None) -> SKLBase:
        """One epoch over ``(X, y)``, continuing ``model_`` if there is one (scikit-learn's
        ``partial_fit``: one pass over the data given)."""
        if "epochs" in kwargs:
            raise ValueError(f"{type(self).__name__}.partial_fit trains one epoch; call it "
                             f"again for more (got epochs={kwargs['epochs']!r})")
        fit_kwargs = {key: value for key, value in (self.fit_kwargs or {}).items()
                      if key != "epochs"}
        return self._fit(X, y, {**fit_kwargs, **kwargs, "epochs": 1},
                         resume=hasattr(self, "model_"), partial=True, classes=classes)

    def _fit(self, X: Any, y: Any, fit_kwargs: dict[str, Any], resume: bool,
             partial: bool = False, classes: Any = None) -> SKLBase:
        X, y = validate_data(self, X, y, reset=not resume, **self._y_checks)
        self._check_targets(y, resume, partial, classes)
        model = self.model_ if resume else self._build_model(X, y)
        targets = self._encode_targets(model, y)
        if resume:
            # the epochs go on from where model_ stopped: callbacks and schedules see them so
            if "initial_epoch" in fit_kwargs:
                raise ValueError(f"{type(self).__name__}: continued training starts at "
                                 f"model_.epoch ({model.epoch}); do not give initial_epoch")
            epochs = fit_kwargs.get("epochs", 1)
            fit_kwargs = {**fit_kwargs, "initial_epoch": model.epoch,
                          "epochs": model.epoch + epochs}
        history = model.fit(X, targets, **fit_kwargs)
        previous = self.history_ if resume else {}
        self.history_ = {key: [*previous.get(key, []), *values]
                         for key, values in history.history.items()}
        self.model_ = model
        return self

    def _build_model(self, X: np.ndarray, y: np.ndarray) -> Sequential:
        """A new, compiled, built model for ``(X, y)``, from ``model``."""
        name = type(self).__name__
        if isinstance(self.model, Sequential):
            if self.model.loss is None:
                raise RuntimeError(f"{name}: the model given must be compiled "
                                   f"(model.compile(optimizer, loss)) before fit")
            model = _model_from_blueprint(_blueprint(self.model), input_dim=X.shape[1:])
        elif callable(self.model):
            model = self.model(X=X, y=y, **(self.model_kwargs or {}))
            if not isinstance(model, Sequential):
                raise TypeError(f"{name}: the model function must return a minidl "
                                f"Sequential, got {type(model).__name__}")
            if model.loss is None:
                raise RuntimeError(f"{name}: the model function must return a compiled "
                                   f"model (call model.compile(optimizer, loss) in it)")
        else:
            raise TypeError(f"{name}: model must be a compiled minidl Sequential or a function "
                            f"model(X, y, **model_kwargs) returning one, got "
                            f"{type(self.model).__name__}")
        if not model.built:
            model.build(X.shape[1:])
        return model

    def _predict_model(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return self.model_.predict(X)

    # ------------------------------------------------------------------ pickling

    def __getstate__(self) -> dict[str, Any]:
        # minidl's objects travel as minidl files, never as pickled internals
        state = dict(super().__getstate__())
        if "model_" in state:
            state["model_"] = _file_bytes(state["model_"])
        if isinstance(state["model"], Sequential):
            model = state["model"]
            state["model"] = _file_bytes(model) if model.built else _blueprint(model)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        if "model_" in state:
            state["model_"] = _model_from_bytes(state["model_"])
        if isinstance(state["model"], bytes):
            state["model"] = _model_from_bytes(state["model"])
        elif isinstance(state["model"], dict):
            state["model"] = _model_from_blueprint(state["model"])
        super().__setstate__(state)


class SKLearnClassifier(ClassifierMixin, SKLBase):
    """A scikit-learn classifier around a minidl model (Keras' ``SKLearnClassifier``).

    The model ends in ``Dense(len(classes_), activation="softmax")`` (or in logits with a
    loss on logits, such as ``"cross_entropy"``), or, for two classes, in
    ``Dense(1, activation="sigmoid")``. ``predict_proba`` gives the class probabilities in the
    order of ``classes_``; ``predict`` the most probable label, as given to ``fit`` (strings,
    integers that need not be 0..K-1).
    """

    def partial_fit(self, X: Any, y: Any, classes: Any = None,
                    **kwargs: Any) -> SKLearnClassifier:
        """One epoch over ``(X, y)``. The first call needs ``classes``, every label that any
        call will show (scikit-learn's rule: one batch need not hold them all). A model
        function sees the first call's ``y``: if it may lack classes, size the model from
        ``model_kwargs`` or give a model instead."""
        return self._partial_fit(X, y, kwargs, classes)

    def predict_proba(self, X: Any) -> np.ndarray:
        """The probability of each class in ``classes_``, one row per example (float64)."""
        output = self._predict_model(X)
        model = self.model_
        # with the output activation fused into the loss, predict already applies it
        probs = output if model.fused_output else model.loss.predictions(output)
        probs = probs.astype(np.float64)
        if probs.shape[1] == 1:
            probs = np.hstack([1.0 - probs, probs])
        # float32 rows are 1 to about 1e-7: normalise in float64
        return probs / probs.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable label of each example, from ``classes_``."""
        probs = self.predict_proba(X)
        return self.classes_[np.argmax(probs, axis=1)]

    def _check_targets(self, y: np.ndarray, resume: bool, partial: bool, classes: Any) -> None:
        check_classification_targets(y)
        name = type(self).__name__
        if resume:
            if classes is not None and not np.array_equal(np.unique(classes), self.classes_):
                raise ValueError(f"{name}.partial_fit: classes={np.unique(classes).tolist()} "
                                 f"differs from the first call's, {self.classes_.tolist()}")
            known = self.classes_
        elif partial and classes is None:
            raise ValueError(f"{name}.partial_fit: give classes (every label) on the first "
                             f"call")
        else:
            known = np.unique(y if classes is None else classes)
            if len(known) < 2:
                raise ValueError(f"{name}: y has one class only ({known.tolist()}); a "
                                 f"classifier needs at least two classes")
        unknown = np.setdiff1d(y, known)
        if len(unknown):
            raise ValueError(f"{name}: y has labels {unknown.tolist()} that are not in the "
                             f"classes {known.tolist()}")
        self.classes_ = known

    def _encode_targets(self, model: Sequential, y: np.ndarray) -> np.ndarray:
        """``y`` as the model's loss reads it: class indices, one-hot rows, or one 0/1 column
        for a one-unit output."""
        indices = np.searchsorted(self.classes_, y)
        n_classes = len(self.classes_)
        if model.output_shape == (1,) and n_classes == 2:
            return indices[:, None].astype(model.dtype)
        if model.output_shape != (n_classes,):
            raise ValueError(f"{type(self).__name__}: y has {n_classes} classes but the model's "
                             f"outputs have shape {model.output_shape}; end the model in "
                             f"Dense({n_classes}, activation='softmax')"
                             + (" or Dense(1, activation='sigmoid')" if n_classes == 2 else ""))
        if model.loss.index_targets:
            return indices
        return np.eye(n_classes, dtype=model.dtype)[indices]


class SKLearnRegressor(RegressorMixin, SKLBase):
    """A scikit-learn regressor around a minidl model (Keras' ``SKLearnRegressor``).

    Targets of shape ``(n,)`` are trained as one column and predicted with shape ``(n,)``;
    targets of shape ``(n, k)`` need ``k`` outputs and are predicted with shape ``(n, k)``.
    """

    _y_checks: ClassVar[dict[str, Any]] = {"y_numeric": True, "multi_output": True}

    def partial_fit(self, X: Any, y: Any, **kwargs: Any) -> SKLearnRegressor:
        """One epoch over ``(X, y)``, continuing ``model_`` if there is one."""
        return self._partial_fit(X, y, kwargs)

    def predict(self, X: Any) -> np.ndarray:
        """The model's output, shaped as the targets given to ``fit`` (float64)."""
        output = self._predict_model(X).astype(np.float64, copy=False)
        return output[:, 0] if self._target_ndim == 1 else output

    def _check_targets(self, y: np.ndarray, resume: bool, partial: bool, classes: Any) -> None:
        self._target_ndim = y.ndim

    def _encode_targets(self, model: Sequential, y: np.ndarray) -> np.ndarray:
        return y.reshape(len(y), -1).astype(model.dtype)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


def expected_failed_checks(estimator: BaseEstimator) -> dict[str, str]:
    """The scikit-learn estimator checks that ``estimator`` fails, ``{check name: reason}``,
    for ``parametrize_with_checks(estimators, expected_failed_checks=expected_failed_checks)``.

    None for a seeded model: a seed makes every fit the same. A ``Sequential`` given without
    a seed fails the checks that fit twice on the same data and compare the predictions. A
    model function's seed cannot be seen from outside: an unseeded one fails the same checks.
    """
    model = getattr(estimator, "model", None)
    if not isinstance(model, Sequential) or model.seed is not None:
        return {}
    names = ["check_fit_idempotent", "check_supervised_y_2d"]
    if isinstance(estimator, ClassifierMixin):
        names += ["check_classifier_data_not_an_array"]
    else:
        names += ["check_regressor_data_not_an_array", "check_regressors_int"]
    reason = ("the model has no seed (Sequential(seed=None)): each fit starts from new random "
              "weights and batch order, so two fits on the same data predict differently; "
              "give the model a seed")
    return dict.fromkeys(names, reason)


# ---------------------------------------------------------------------- models as data


def _blueprint(model: Sequential) -> dict[str, Any]:
    """What a new model like ``model`` is built from: its configuration (layers, input
    shape, seed, dtype) and its compile arguments, without weights (Keras' ``clone_model``)."""
    return {"config": model.get_config(), "compile": model.get_compile_config()}


def _model_from_blueprint(blueprint: dict[str, Any],
                          input_dim: tuple[int, ...] | None = None) -> Sequential:
    """A new model from ``_blueprint``'s data, built for examples of ``input_dim`` when its
    configuration has no input shape."""
    config = blueprint["config"]
    model = Sequential([layer_from_config(spec) for spec in config["layers"]],
                       input_dim=config["input_dim"], seed=config["seed"],
                       dtype=config["dtype"])
    if blueprint["compile"] is not None:
        # compiled as the blueprint's model was: an unbuilt one's optimizer is still a name
        model.compile_from_config(blueprint["compile"])
    if not model.built and input_dim is not None:
        model.build(tuple(input_dim))
    return model


def _file_bytes(model: Sequential) -> bytes:
    """The bytes of ``model.save``'s file: weights, compile arguments, optimizer state."""
    with tempfile.TemporaryDirectory(prefix="minidl-") as folder:
        path = os.path.join(folder, MODEL_FILE_NAME)
        model.save(path)
        with open(path, "rb") as file:
            return file.read()


def _model_from_bytes(data: bytes) -> Sequential:
    """``load_model`` of a file's bytes (checked as any file is)."""
    with tempfile.TemporaryDirectory(prefix="minidl-") as folder:
        path = os.path.join(folder, MODEL_FILE_NAME)
        with open(path, "wb") as file:
            file.write(data)
        return load_model(path)
