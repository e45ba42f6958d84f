"""minidl.wrappers: scikit-learn's estimator checks; the estimators in Pipeline, grid and
randomized search and cross-validation; clone, pickling, warm starts and partial_fit; the
label encodings; docs/sklearn.md's examples; Keras 3's wrappers as the oracle of the API."""

import contextlib
import inspect
import os
import pickle
import re
import subprocess
import sys
import types
import unittest
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits, make_classification, make_regression
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import (
    GridSearchCV,
    RandomizedSearchCV,
    cross_val_score,
    train_test_split,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import check_is_fitted

from minidl import Adam, Dense, Sequential
from minidl.wrappers import SKLearnClassifier, SKLearnRegressor, expected_failed_checks

ROOT = Path(__file__).parents[1]
QUIET = {"verbose": 0}
# 20 epochs clear scikit-learn's score thresholds for every seed tried (0..9); 10 already do
CHECKS_FIT = {"epochs": 20, "verbose": 0}


def classifier_model(X, y, units=8, seed=0, loss="sparse_categorical_crossentropy",
                     activation="softmax"):
    """One output per class of the raw targets ``y``."""
    model = Sequential([Dense(units, activation="relu"),
                        Dense(len(np.unique(y)), activation=activation)],
                       input_dim=X.shape[1], seed=seed)
    model.compile(optimizer=Adam(model.parameters(), lr=0.01), loss=loss)
    return model


def regressor_model(X, y, units=8, seed=0):
    """One output per target column."""
    model = Sequential([Dense(units, activation="relu"), Dense(1 if y.ndim == 1 else y.shape[1])],
                       input_dim=X.shape[1], seed=seed)
    model.compile(optimizer=Adam(model.parameters(), lr=0.01), loss="mse")
    return model


def blobs(labels=(0, 1, 2), n_samples=90):
    X, y = make_classification(n_samples=n_samples, n_features=5, n_informative=4,
                               n_redundant=0, n_classes=len(labels), class_sep=2.0,
                               random_state=0)
    return X, np.asarray(labels)[y]


def pickled_minidl_modules(data):
    """The minidl modules a pickle names (the file's format name, "minidl.npz", is none)."""
    return set(re.findall(rb"minidl\.[\w.]+", data)) - {b"minidl.npz"}


def weights(model):
    return [w.copy() for w in model.get_weights()]


# ---------------------------------------------------------------------- estimator checks


@parametrize_with_checks([SKLearnClassifier(classifier_model, fit_kwargs=CHECKS_FIT),
                          SKLearnRegressor(regressor_model, fit_kwargs=CHECKS_FIT)],
                         expected_failed_checks=expected_failed_checks)
def test_scikit_learn_estimator_checks(estimator, check, monkeypatch):
    # scikit-learn skips its array API check unless this is set; with NumPy inputs (the
    # only ones minidl takes) it runs in any environment
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")
    check(estimator)


def test_a_seeded_model_is_expected_to_fail_no_check():
    seeded = Sequential([Dense(1)], seed=0)
    seeded.compile(loss="mse")
    assert expected_failed_checks(SKLearnRegressor(seeded)) == {}
    assert expected_failed_checks(SKLearnClassifier(classifier_model)) == {}


def test_an_unseeded_model_fails_exactly_the_checks_declared_and_passes_them_seeded():
    def regressor(seed):
        model = Sequential([Dense(4, activation="relu"), Dense(1)], seed=seed)
        model.compile(optimizer="adam", loss="mse")
        return SKLearnRegressor(model, fit_kwargs={"epochs": 2, "verbose": 0})

    declared = expected_failed_checks(regressor(None))
    assert set(declared) == {"check_fit_idempotent", "check_supervised_y_2d",
                             "check_regressor_data_not_an_array", "check_regressors_int"}
    assert all("no seed" in reason for reason in declared.values())
    for name in declared:
        check = getattr(estimator_checks, name)
        try:
            check(name, regressor(0))
        except unittest.SkipTest:
            continue  # the data_not_an_array checks need pandas
        with pytest.raises(AssertionError):
            check(name, regressor(None))


# ---------------------------------------------------------------------- in scikit-learn's tools


def test_a_pipeline_with_a_scaler_learns_the_digits():
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    pipeline = make_pipeline(StandardScaler(), SKLearnClassifier(
        classifier_model, model_kwargs={"units": 32}, fit_kwargs={"epochs": 10, **QUIET}))
    pipeline.fit(X_train, y_train)
    assert pipeline.score(X_test, y_test) > 0.93


def test_grid_search_over_model_and_fit_kwargs_gives_the_model_function_the_raw_targets():
    X, y = blobs(labels=("ant", "bee", "cat"))
    seen = []

    def recording_model(X, y, units):
        seen.append((set(np.unique(y)), units))
        return classifier_model(X, y, units=units)

    search = GridSearchCV(
        SKLearnClassifier(recording_model),
        param_grid={"model_kwargs": [{"units": 2}, {"units": 16}],
                    "fit_kwargs": [{"epochs": 1, **QUIET}, {"epochs": 15, **QUIET}]},
        cv=3)
    search.fit(X, y)
    # every fit (3 folds x 4 candidates, then the refit) saw the labels themselves
    assert len(seen) == 13 and all(labels == {"ant", "bee", "cat"} for labels, _ in seen)
    assert {units for _, units in seen} == {2, 16}
    assert len(search.cv_results_["params"]) == 4
    assert search.best_params_ == {"model_kwargs": {"units": 16},
                                   "fit_kwargs": {"epochs": 15, **QUIET}}
    assert len(search.best_estimator_.history_["loss"]) == 15
    assert set(search.predict(X)) <= {"ant", "bee", "cat"}


def test_randomized_search_over_batch_sizes():
    X, y = blobs()
    search = RandomizedSearchCV(
        SKLearnClassifier(classifier_model),
        param_distributions={"model_kwargs": [{"units": 4}, {"units": 8}],
                             "fit_kwargs": [{"epochs": 3, "batch_size": 8, **QUIET},
                                            {"epochs": 3, "batch_size": 64, **QUIET}]},
        n_iter=3, cv=2, random_state=0)
    search.fit(X, y)
    assert len(search.cv_results_["params"]) == 3
    assert search.best_estimator_.model_.layers[0].units in (4, 8)


def test_cross_val_score_of_a_regressor():
    X, y = make_regression(n_samples=150, n_features=4, noise=5.0, random_state=0)
    scores = cross_val_score(SKLearnRegressor(regressor_model, model_kwargs={"units": 16},
                                              fit_kwargs={"epochs": 30, **QUIET}),
                             X, y / y.std(), cv=3)
    assert scores.shape == (3,) and np.all(scores > 0.8)


# ---------------------------------------------------------------------- scikit-learn's rules


def test_init_only_stores_its_arguments_and_fit_rejects_what_is_no_model():
    estimator = SKLearnClassifier("not a model", warm_start=1, model_kwargs=[], fit_kwargs=3)
    assert estimator.get_params() == {"model": "not a model", "warm_start": 1,
                                      "model_kwargs": [], "fit_kwargs": 3}
    with pytest.raises(TypeError, match="model must be a compiled minidl Sequential or a "
                                        "function"):
        SKLearnClassifier("not a model").fit(*blobs())


def test_a_model_function_must_return_a_compiled_sequential():
    with pytest.raises(TypeError, match="must return a minidl Sequential, got int"):
        SKLearnRegressor(lambda X, y: 3).fit(*blobs())
    with pytest.raises(RuntimeError, match="must return a compiled model"):
        SKLearnRegressor(lambda X, y: Sequential([Dense(1)])).fit(*blobs())


def test_clone_leaves_an_unfitted_copy_with_the_same_arguments():
    estimator = SKLearnClassifier(classifier_model, model_kwargs={"units": 4},
                                  fit_kwargs={"epochs": 2, **QUIET}).fit(*blobs())
    copy = clone(estimator)
    with pytest.raises(NotFittedError):
        check_is_fitted(copy)
    assert copy.get_params() == estimator.get_params()
    assert copy.model is classifier_model
    assert copy.fit_kwargs is not estimator.fit_kwargs  # deep-copied, as clone does


def test_a_model_given_as_an_instance_is_copied_for_every_fit_never_trained():
    X, y = blobs()
    model = Sequential([Dense(8, activation="relu"), Dense(3, activation="softmax")],
                       input_dim=5, seed=3)
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    before = weights(model)
    estimator = SKLearnClassifier(model, fit_kwargs={"epochs": 3, **QUIET})
    first = weights(estimator.fit(X, y).model_)
    assert estimator.model_ is not model
    assert all(np.array_equal(a, b) for a, b in zip(before, weights(model), strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(before, first, strict=True))
    # the copy keeps the architecture, the seed and the compile arguments: the same fit again
    assert type(estimator.model_.optimizer).__name__ == "RMSprop"
    assert estimator.model_.metrics == ["accuracy"] and "accuracy" in estimator.history_
    second = weights(clone(estimator).fit(X, y).model_)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_an_unbuilt_model_is_built_for_the_data():
    X, y = blobs()
    model = Sequential([Dense(3, activation="softmax")], seed=0)
    model.compile(loss="sparse_categorical_crossentropy")
    estimator = SKLearnClassifier(model, fit_kwargs=QUIET).fit(X, y)
    assert estimator.model_.input_shape == (5,) and not model.built
    with pytest.raises(RuntimeError, match="must be compiled"):
        SKLearnClassifier(Sequential([Dense(3)])).fit(X, y)


def test_fit_keywords_win_over_fit_kwargs_which_stay_untouched():
    X, y = blobs()
    fit_kwargs = {"epochs": 5, **QUIET}
    estimator = SKLearnClassifier(classifier_model, fit_kwargs=fit_kwargs).fit(X, y, epochs=2)
    assert len(estimator.history_["loss"]) == 2
    assert fit_kwargs == {"epochs": 5, **QUIET}


def test_fit_keywords_reach_sequential_fit_through_a_pipeline():
    X, y = blobs()
    pipeline = make_pipeline(StandardScaler(), SKLearnClassifier(classifier_model,
                                                                 fit_kwargs=QUIET))
    # rows that weigh nothing give no gradient: the weights stay the initial ones
    pipeline.fit(X, y, sklearnclassifier__sample_weight=np.zeros(len(X)))
    initial = classifier_model(X, y)
    assert all(np.array_equal(a, b) for a, b in
               zip(weights(initial), weights(pipeline[-1].model_), strict=True))


# ---------------------------------------------------------------------- pickling


def test_a_pickle_holds_the_minidl_file_and_predicts_bit_for_bit():
    X, y = blobs(labels=("ant", "bee", "cat"))
    estimator = SKLearnClassifier(classifier_model, fit_kwargs={"epochs": 3, **QUIET}).fit(X, y)
    data = pickle.dumps(estimator)
    assert b"PK\x03\x04" in data and b"__minidl__" in data
    # no minidl object is pickled: the only minidl module named is the estimator's
    assert pickled_minidl_modules(data) == {b"minidl.wrappers"}
    same = pickle.loads(data)
    assert np.array_equal(same.predict_proba(X), estimator.predict_proba(X))
    assert np.array_equal(same.predict(X), estimator.predict(X))
    assert np.array_equal(same.classes_, estimator.classes_)
    assert same.history_ == estimator.history_ and same.n_features_in_ == 5
    # the optimizer state and the random generators travel too: training goes on exactly
    estimator.partial_fit(X, y)
    same.partial_fit(X, y)
    assert all(np.array_equal(a, b) for a, b in
               zip(weights(estimator.model_), weights(same.model_), strict=True))


@pytest.mark.parametrize("input_dim", [5, None])
def test_a_model_given_as_an_instance_pickles_without_pickling_minidl_objects(input_dim):
    model = Sequential([Dense(3, activation="softmax")], input_dim=input_dim, seed=1)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    data = pickle.dumps(SKLearnClassifier(model, fit_kwargs=QUIET))
    assert pickled_minidl_modules(data) == {b"minidl.wrappers"}
    same = pickle.loads(data)
    assert same.model.get_config() == model.get_config()
    X, y = blobs()
    assert np.array_equal(same.fit(X, y).predict_proba(X),
                          SKLearnClassifier(model, fit_kwargs=QUIET).fit(X, y).predict_proba(X))


# ---------------------------------------------------------------------- continued training


def test_warm_start_continues_the_same_model_and_its_history():
    X, y = blobs()
    estimator = SKLearnClassifier(classifier_model, warm_start=True,
                                  fit_kwargs={"epochs": 3, **QUIET}).fit(X, y)
    model, before = estimator.model_, weights(estimator.model_)
    estimator.fit(X, y)
    assert estimator.model_ is model and model.epoch == 6
    assert len(estimator.history_["loss"]) == 6
    assert not all(np.array_equal(a, b) for a, b in zip(before, weights(model), strict=True))
    # without warm_start every fit starts again
    estimator.set_params(warm_start=False).fit(X, y)
    assert estimator.model_ is not model and len(estimator.history_["loss"]) == 3
    with pytest.raises(ValueError, match="do not give initial_epoch"):
        estimator.set_params(warm_start=True).fit(X, y, initial_epoch=1)


def test_partial_fit_trains_one_epoch_per_call_on_the_classes_given_first():
    X, y = blobs()
    # the first batch lacks a class: a model function sizing from y would not see it
    model = Sequential([Dense(3, activation="softmax")], seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    estimator = SKLearnClassifier(model, fit_kwargs={"epochs": 50, **QUIET})
    with pytest.raises(ValueError, match="give classes"):
        estimator.partial_fit(X, y)
    estimator.partial_fit(X[y != 2], y[y != 2], classes=[0, 1, 2])
    model, before = estimator.model_, weights(estimator.model_)
    estimator.partial_fit(X[y == 2], y[y == 2])
    assert estimator.model_ is model and model.epoch == 2
    assert len(estimator.history_["loss"]) == 2
    assert not all(np.array_equal(a, b) for a, b in zip(before, weights(model), strict=True))
    assert list(estimator.classes_) == [0, 1, 2]
    with pytest.raises(ValueError, match="differs from the first call's"):
        estimator.partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="trains one epoch"):
        estimator.partial_fit(X, y, epochs=3)
    with pytest.raises(ValueError, match=r"labels \[7\] that are not in the classes"):
        estimator.partial_fit(X[:3], [0, 1, 7])


def test_partial_fit_of_a_regressor_checks_the_features_of_later_calls():
    X, y = make_regression(n_samples=40, n_features=3, random_state=0)
    estimator = SKLearnRegressor(regressor_model, fit_kwargs=QUIET).partial_fit(X, y)
    estimator.partial_fit(X, y)
    assert len(estimator.history_["loss"]) == 2
    with pytest.raises(ValueError, match="X has 2 features"):
        estimator.partial_fit(X[:, :2], y)


# ---------------------------------------------------------------------- labels and targets


@pytest.mark.parametrize("labels", [("cat", "dog", "fish"), (3, 7, 10), (-1, 1)])
def test_predict_returns_the_labels_as_given(labels):
    X, y = blobs(labels=labels)
    estimator = SKLearnClassifier(classifier_model, fit_kwargs={"epochs": 30, **QUIET})
    predicted = estimator.fit(X, y).predict(X)
    assert list(estimator.classes_) == sorted(labels)
    assert predicted.dtype == y.dtype and set(predicted) <= set(labels)
    assert np.mean(predicted == y) > 0.9


@pytest.mark.parametrize("model_kwargs", [
    {},  # softmax + sparse labels
    {"loss": "categorical_crossentropy"},  # softmax + one-hot rows
    {"loss": "cross_entropy", "activation": None},  # logits + sparse labels
])
def test_predict_proba_rows_are_probabilities_whatever_the_model_ends_in(model_kwargs):
    X, y = blobs()
    estimator = SKLearnClassifier(classifier_model, model_kwargs=model_kwargs,
                                  fit_kwargs={"epochs": 30, **QUIET}).fit(X, y)
    probs = estimator.predict_proba(X)
    assert probs.shape == (len(X), 3) and probs.dtype == np.float64
    assert np.all(probs >= 0) and np.allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert np.array_equal(estimator.classes_[probs.argmax(axis=1)], estimator.predict(X))
    assert estimator.score(X, y) > 0.9


def test_a_sigmoid_output_classifies_two_classes():
    X, y = blobs(labels=("no", "yes"))

    def sigmoid_model(X, y):
        model = Sequential([Dense(8, activation="relu"), Dense(1, activation="sigmoid")],
                           input_dim=X.shape[1], seed=0)
        model.compile(optimizer=Adam(model.parameters(), lr=0.01), loss="binary_crossentropy")
        return model

    estimator = SKLearnClassifier(sigmoid_model, fit_kwargs={"epochs": 30, **QUIET}).fit(X, y)
    probs = estimator.predict_proba(X)
    output = estimator.model_.predict(X)[:, 0]
    assert np.allclose(probs, np.column_stack([1 - output, output]))
    assert estimator.score(X, y) > 0.9


def test_a_model_whose_outputs_do_not_match_the_classes_is_refused():
    X, y = blobs(labels=(0, 1, 2, 3), n_samples=80)
    with pytest.raises(ValueError, match=r"y has 4 classes but the model's outputs have shape "
                                         r"\(3,\); end the model in Dense\(4"):
        SKLearnClassifier(lambda X, y: classifier_model(X, y[y < 3])).fit(X, y)


@pytest.mark.parametrize("target_shape", [(120,), (120, 1), (120, 3)])
def test_regression_predicts_with_the_shape_of_the_targets(target_shape):
    n_targets = 1 if len(target_shape) == 1 else target_shape[1]
    X, y = make_regression(n_samples=120, n_features=4, n_targets=n_targets, noise=1.0,
                           random_state=0)
    y = (y / y.std()).reshape(target_shape)
    estimator = SKLearnRegressor(regressor_model, model_kwargs={"units": 16},
                                 fit_kwargs={"epochs": 40, **QUIET}).fit(X, y)
    predicted = estimator.predict(X)
    assert predicted.shape == target_shape and predicted.dtype == np.float64
    assert estimator.score(X, y) > 0.9


# ---------------------------------------------------------------------- the extra, the docs


def test_without_scikit_learn_the_import_names_the_extra():
    code = "import sys; sys.modules['sklearn'] = None; import minidl.wrappers"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "ModuleNotFoundError: sklearn is not installed; this part of minidl needs the "
        "'sklearn' extra: pip install 'minidl[sklearn]'")


def test_the_documented_examples_run_and_their_estimators_pass_the_checks(capsys,
                                                                          monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "sklearn.md").read_text(),
                        re.S)
    assert len(blocks) >= 4
    # a module of its own, as a reader's script is: its functions pickle by reference
    module = types.ModuleType("docs_sklearn")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    for block in blocks:
        exec(compile(block, "docs/sklearn.md", "exec"), namespace)
    accuracy = float(re.search(r"test accuracy (\S+)", capsys.readouterr().out).group(1))
    assert accuracy > 0.93  # the page says "about 0.97"
    (mark,) = namespace["test_sklearn_compatible"].pytestmark
    for estimator, check in mark.args[1]:  # plain pairs: no check is expected to fail
        with contextlib.suppress(unittest.SkipTest):  # checks that need pandas
            check(estimator)


# ---------------------------------------------------------------------- Keras 3 as the oracle


def test_the_api_and_the_behaviour_are_keras_3s():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    for ours, theirs in [(SKLearnClassifier, keras.wrappers.SKLearnClassifier),
                         (SKLearnRegressor, keras.wrappers.SKLearnRegressor)]:
        for method in ("__init__", "fit", "predict", "score"):
            assert [(p.name, p.default) for p in
                    inspect.signature(getattr(ours, method)).parameters.values()] == [
                (p.name, p.default) for p in
                inspect.signature(getattr(theirs, method)).parameters.values()]

    def keras_model(X, y):
        # Keras' classifier gives its function one-hot targets
        model = keras.Sequential([keras.Input((X.shape[1],)), keras.layers.Dense(8, "relu"),
                                  keras.layers.Dense(y.shape[1], "softmax")])
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="categorical_crossentropy")
        return model

    keras.utils.set_random_seed(0)
    X, y = blobs(labels=("ant", "bee", "cat"))
    theirs = keras.wrappers.SKLearnClassifier(keras_model, fit_kwargs={"epochs": 30, **QUIET})
    ours = SKLearnClassifier(classifier_model, fit_kwargs={"epochs": 30, **QUIET})
    theirs.fit(X, y)
    ours.fit(X, y)
    assert np.array_equal(ours.classes_, theirs.classes_)
    assert ours.n_features_in_ == theirs.n_features_in_ == 5
    with warnings.catch_warnings():
        # Keras' predict on torch 2.13 with NumPy 2.4: torch's Tensor.__array__ takes no
        # copy keyword, which NumPy deprecates; Keras' and torch's to fix, not minidl's
        warnings.filterwarnings("ignore", "__array__ implementation doesn't accept a copy",
                                DeprecationWarning)
        assert ours.predict(X).shape == theirs.predict(X).shape == (len(X),)
        assert ours.score(X, y) > 0.9 and theirs.score(X, y) > 0.9
    assert clone(ours).get_params().keys() == clone(theirs).get_params().keys()
