"""Tests for minidl.optim: update rules against scalar references, state, validation, and a
schedule as an optimizer's lr (the schedules' own values are in test_schedules.py).

The references below are written from the pseudo-code in /work/shared/REFERENCE.md, one
coordinate at a time in plain Python floats: an oracle independent of the vectorised NumPy
code (different order of operations, no in-place arithmetic, no shared helpers).
"""

import inspect
import io
import json
import math

import numpy as np
import pytest

from minidl import optim
from minidl.optim import (
    OPTIMIZERS,
    SGD,
    Adagrad,
    Adam,
    AdamW,
    CosineDecay,
    CosineDecayRestarts,
    ExponentialDecay,
    LearningRateSchedule,
    PiecewiseConstantDecay,
    PolynomialDecay,
    RMSprop,
    StepDecay,
)
from minidl.parameter import Parameter, store_end_to_end

THETA0 = [1.0, -2.0, 0.5]
# Four steps of gradients: signs change, magnitudes rise and fall (so AMSGrad's maximum
# differs from v), and one coordinate ends at exactly 0.
GRADS = [[0.5, -1.5, 2.0], [0.25, 1.0, -3.0], [-0.75, 0.5, 1.0], [1.25, -0.25, 0.0]]


# ---------------------------------------------------------------- scalar references

def reference_sgd(theta, grads, lr, momentum=0.0, dampening=0.0, nesterov=False,
                  weight_decay=0.0, maximize=False):
    theta, buf, history = list(theta), [0.0] * len(theta), []
    for t, grad in enumerate(grads, start=1):
        for i in range(len(theta)):
            g = -grad[i] if maximize else grad[i]
            if weight_decay != 0:
                g = g + weight_decay * theta[i]
            if momentum != 0:
                buf[i] = g if t == 1 else momentum * buf[i] + (1 - dampening) * g
                g = g + momentum * buf[i] if nesterov else buf[i]
            theta[i] = theta[i] - lr * g
        history.append(list(theta))
    return history


def reference_adagrad(theta, grads, lr, lr_decay=0.0, weight_decay=0.0,
                      initial_accumulator_value=0.0, eps=1e-10, maximize=False):
    theta, history = list(theta), []
    s = [initial_accumulator_value] * len(theta)
    for t, grad in enumerate(grads, start=1):
        lr_t = lr / (1 + (t - 1) * lr_decay)
        for i in range(len(theta)):
            g = -grad[i] if maximize else grad[i]
            if weight_decay != 0:
                g = g + weight_decay * theta[i]
            s[i] = s[i] + g * g
            theta[i] = theta[i] - lr_t * g / (math.sqrt(s[i]) + eps)
        history.append(list(theta))
    return history


def reference_adam(theta, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                   amsgrad=False, maximize=False, decoupled=False):
    beta1, beta2 = betas
    n = len(theta)
    theta, m, v, v_max, history = list(theta), [0.0] * n, [0.0] * n, [0.0] * n, []
    for t, grad in enumerate(grads, start=1):
        for i in range(n):
            g = -grad[i] if maximize else grad[i]
            if decoupled:
                theta[i] = theta[i] - lr * weight_decay * theta[i]
            elif weight_decay != 0:
                g = g + weight_decay * theta[i]
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            m_hat = m[i] / (1 - beta1 ** t)
            if amsgrad:
                v_max[i] = max(v_max[i], v[i])
                v_hat = v_max[i] / (1 - beta2 ** t)
            else:
                v_hat = v[i] / (1 - beta2 ** t)
            theta[i] = theta[i] - lr * m_hat / (math.sqrt(v_hat) + eps)
        history.append(list(theta))
    return history


def reference_adamw(theta, grads, lr, weight_decay=0.01, **options):
    return reference_adam(theta, grads, lr, weight_decay=weight_decay, decoupled=True, **options)


def reference_rmsprop(theta, grads, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                      centered=False, maximize=False):
    n = len(theta)
    theta, v, g_avg, buf, history = list(theta), [0.0] * n, [0.0] * n, [0.0] * n, []
    for grad in grads:
        for i in range(n):
            g = -grad[i] if maximize else grad[i]
            if weight_decay != 0:
                g = g + weight_decay * theta[i]
            v[i] = alpha * v[i] + (1 - alpha) * g * g
            v_tilde = v[i]
            if centered:
                g_avg[i] = alpha * g_avg[i] + (1 - alpha) * g
                v_tilde = v[i] - g_avg[i] ** 2
            if momentum > 0:
                buf[i] = momentum * buf[i] + g / (math.sqrt(v_tilde) + eps)
                theta[i] = theta[i] - lr * buf[i]
            else:
                theta[i] = theta[i] - lr * g / (math.sqrt(v_tilde) + eps)
        history.append(list(theta))
    return history


REFERENCES = {SGD: reference_sgd, Adagrad: reference_adagrad, Adam: reference_adam,
              AdamW: reference_adamw, RMSprop: reference_rmsprop}

# Every option of every optimizer, alone and combined.
CASES = [
    (SGD, {}),
    (SGD, {"momentum": 0.9}),
    (SGD, {"momentum": 0.9, "dampening": 0.5}),
    (SGD, {"momentum": 0.9, "nesterov": True}),
    (SGD, {"weight_decay": 0.1}),
    (SGD, {"maximize": True}),
    (SGD, {"momentum": 0.5, "nesterov": True, "weight_decay": 0.2, "maximize": True}),
    (Adagrad, {}),
    (Adagrad, {"lr_decay": 0.5}),
    (Adagrad, {"initial_accumulator_value": 0.3}),
    (Adagrad, {"weight_decay": 0.1}),
    (Adagrad, {"eps": 0.1}),
    (Adagrad, {"maximize": True}),
    (Adagrad, {"lr_decay": 0.2, "weight_decay": 0.1, "initial_accumulator_value": 0.3,
               "maximize": True}),
    (Adam, {}),
    (Adam, {"betas": (0.8, 0.9)}),
    (Adam, {"amsgrad": True}),
    (Adam, {"weight_decay": 0.1}),
    (Adam, {"eps": 0.1}),
    (Adam, {"maximize": True}),
    (Adam, {"betas": (0.5, 0.6), "amsgrad": True, "weight_decay": 0.1, "maximize": True}),
    (AdamW, {}),
    (AdamW, {"weight_decay": 0.5}),
    (AdamW, {"weight_decay": 0.0}),
    (AdamW, {"amsgrad": True}),
    (AdamW, {"maximize": True}),
    (AdamW, {"betas": (0.5, 0.6), "amsgrad": True, "weight_decay": 0.3, "maximize": True}),
    (RMSprop, {}),
    (RMSprop, {"alpha": 0.5}),
    (RMSprop, {"centered": True}),
    (RMSprop, {"momentum": 0.9}),
    (RMSprop, {"centered": True, "momentum": 0.9}),
    (RMSprop, {"weight_decay": 0.1}),
    (RMSprop, {"eps": 0.1}),
    (RMSprop, {"maximize": True}),
    (RMSprop, {"alpha": 0.8, "centered": True, "momentum": 0.5, "weight_decay": 0.1,
               "maximize": True}),
]
CASE_IDS = [f"{cls.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}"
            for cls, kw in CASES]


def make_param(values, dtype=np.float64, name="w"):
    return Parameter(np.array(values, dtype=dtype), name=name)


def run_steps(optimizer, param, grads):
    history = []
    for grad in grads:
        param.grad[...] = grad
        optimizer.step()
        history.append(param.data.copy())
    return history


# ---------------------------------------------------------------- update rules

@pytest.mark.parametrize(("cls", "options"), CASES, ids=CASE_IDS)
def test_updates_match_scalar_reference_step_by_step(cls, options):
    lr = 0.1
    param = make_param(THETA0)
    history = run_steps(cls([param], lr=lr, **options), param, GRADS)
    expected = REFERENCES[cls](THETA0, GRADS, lr, **options)
    for step, (got, want) in enumerate(zip(history, expected, strict=True), start=1):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14, err_msg=f"step {step}")


def test_gradient_sequence_exercises_amsgrad_maximum():
    # Guards the AMSGrad cases above: with these gradients the maximum really differs from v.
    plain = reference_adam(THETA0, GRADS, 0.1, betas=(0.5, 0.6))
    ams = reference_adam(THETA0, GRADS, 0.1, betas=(0.5, 0.6), amsgrad=True)
    assert plain[-1] != ams[-1]


def test_sgd_momentum_by_hand():
    # θ0 = 1, g = 1 every step, lr = 0.1, μ = 0.9:
    # b1 = 1            -> θ1 = 1 - 0.1           = 0.9
    # b2 = 0.9 + 1 = 1.9  -> θ2 = 0.9 - 0.19        = 0.71
    # b3 = 1.71 + 1 = 2.71 -> θ3 = 0.71 - 0.271     = 0.439
    param = make_param([1.0])
    history = run_steps(SGD([param], lr=0.1, momentum=0.9), param, [[1.0]] * 3)
    np.testing.assert_allclose(np.concatenate(history), [0.9, 0.71, 0.439], rtol=1e-14)


def test_adam_constant_gradient_by_hand():
    # With a constant gradient g the bias-corrected moments are exactly m̂ = g and v̂ = g²,
    # so every step moves θ by lr * g / (|g| + ε) = 0.1 * 0.5 / (0.5 + 1e-8) = 0.1 / (1 + 2e-8):
    # θ1 = 0.900000002, θ2 = 0.800000004, θ3 = 0.700000006 (to 1e-16).
    param = make_param([1.0])
    history = run_steps(Adam([param], lr=0.1), param, [[0.5]] * 3)
    np.testing.assert_allclose(np.concatenate(history), [0.900000002, 0.800000004, 0.700000006],
                               rtol=1e-13)


def test_adagrad_constant_gradient_by_hand():
    # g = 1: s_t = t, so θ3 = 1 - 0.1 (1 + 1/√2 + 1/√3) = 1 - 0.1 - 0.0707106781 - 0.0577350269
    # = 0.7715542950 (ε = 1e-10 shifts it by less than 1e-10).
    param = make_param([1.0])
    history = run_steps(Adagrad([param], lr=0.1), param, [[1.0]] * 3)
    np.testing.assert_allclose(np.concatenate(history), [0.9, 0.8292893219, 0.7715542950],
                               atol=1e-9)


def test_adamw_decay_shrinks_weights_without_gradient():
    # g = 0 leaves m = v = 0, so only the decoupled decay moves θ: θ_t = (1 - γλ)^t θ0.
    param = make_param([2.0])
    history = run_steps(AdamW([param], lr=0.1, weight_decay=0.5), param, [[0.0]] * 3)
    np.testing.assert_allclose(np.concatenate(history), [1.9, 1.805, 1.71475], rtol=1e-14)


def test_maximize_equals_minimizing_the_negated_gradient():
    for cls, options in CASES:
        if options.get("maximize"):
            continue
        up, down = make_param(THETA0), make_param(THETA0)
        run_steps(cls([up], lr=0.1, maximize=True, **options), up, GRADS)
        run_steps(cls([down], lr=0.1, **options), down, [[-g for g in grad] for grad in GRADS])
        np.testing.assert_array_equal(up.data, down.data, err_msg=f"{cls.__name__} {options}")


def test_centered_rmsprop_stays_finite_when_rounding_makes_the_variance_negative():
    # With a constant gradient, v - ḡ² = α^t (1 - α^t) g² shrinks towards 0 until rounding
    # leaves it slightly negative, where a plain sqrt would give NaN (and a warning).
    param = make_param([0.0])
    optimizer = RMSprop([param], lr=1e-3, alpha=0.5, centered=True)
    variances = []
    for _ in range(60):
        param.grad[...] = 0.7  # found by search: goes negative at step 54
        optimizer.step()
        state = optimizer.state[0]
        variances.append(state["square_avg"][0] - state["grad_avg"][0] ** 2)
    assert min(variances) < 0  # the situation this test is about does occur
    assert np.isfinite(param.data).all()


def test_every_parameter_is_updated_with_its_own_state():
    kernel = make_param(np.ones((2, 3)), name="kernel")
    bias = make_param([0.0, 0.0, 0.0], name="bias")
    optimizer = Adam([kernel, bias], lr=0.1)
    kernel.grad[...] = 1.0
    bias.grad[...] = -1.0
    optimizer.step()
    np.testing.assert_allclose(kernel.data, np.full((2, 3), 0.9), rtol=1e-7)
    np.testing.assert_allclose(bias.data, [0.1, 0.1, 0.1], rtol=1e-7)
    assert optimizer.state[0]["exp_avg"].shape == (2, 3)
    assert optimizer.state[1]["exp_avg"].shape == (3,)


def test_step_does_not_modify_the_gradient():
    for cls, options in CASES:
        param = make_param(THETA0)
        param.grad[...] = GRADS[0]
        cls([param], lr=0.1, **options).step()
        np.testing.assert_array_equal(param.grad, GRADS[0], err_msg=f"{cls.__name__} {options}")


def test_zero_grad_sets_every_gradient_to_zero():
    params = [make_param(THETA0), make_param([[1.0, 2.0]])]
    for param in params:
        param.grad[...] = 3.0
    SGD(params).zero_grad()
    assert all(not param.grad.any() for param in params)


# ---------------------------------------------------------------- dtypes

@pytest.mark.parametrize(("cls", "options"), CASES, ids=CASE_IDS)
def test_float32_parameters_and_state_stay_float32(cls, options):
    param = make_param(THETA0, dtype=np.float32)
    optimizer = cls([param], lr=0.1, **options)
    optimizer.lr = np.float64(0.05)  # a NumPy float64 from a schedule must not promote
    data_buffer = param.data
    run_steps(optimizer, param, GRADS)
    assert param.data.dtype == np.float32
    assert param.data is data_buffer  # updated in place
    for key, value in optimizer.state[0].items():
        assert key == "step" or value.dtype == np.float32, key


# ---------------------------------------------------------------- lr, config, registry

def test_lr_is_writable_and_takes_effect_on_the_next_step():
    param = make_param([1.0])
    optimizer = SGD([param], lr=0.1)
    param.grad[...] = 1.0
    optimizer.step()
    optimizer.lr = 0.5
    optimizer.step()
    assert optimizer.lr == 0.5
    assert optimizer.get_config()["lr"] == 0.5
    np.testing.assert_allclose(param.data, [1.0 - 0.1 - 0.5])


def test_adam_lr_change_matches_reference_with_that_lr():
    param = make_param(THETA0)
    optimizer = Adam([param], lr=0.1)
    run_steps(optimizer, param, GRADS[:2])
    optimizer.lr = 0.0
    before = param.data.copy()
    run_steps(optimizer, param, GRADS[2:])
    np.testing.assert_array_equal(param.data, before)


def test_setting_a_negative_lr_is_refused():
    optimizer = SGD([make_param([1.0])])
    with pytest.raises(ValueError, match=r"Invalid learning rate: -0\.5"):
        optimizer.lr = -0.5
    assert optimizer.lr == 0.01


@pytest.mark.parametrize("cls", list(OPTIMIZERS.values()))
def test_get_config_lists_every_constructor_argument_and_is_json(cls):
    config = cls([make_param([1.0])]).get_config()
    arguments = [name for name in inspect.signature(cls).parameters if name != "params"]
    assert list(config) == arguments
    assert json.loads(json.dumps(config)) == config
    rebuilt = cls([make_param([1.0])], **config)
    assert rebuilt.get_config() == config


def test_defaults_are_pytorchs_except_sgd_lr():
    param = make_param([1.0])
    assert SGD([param]).get_config() == {
        "lr": 0.01, "momentum": 0.0, "dampening": 0.0, "nesterov": False,
        "weight_decay": 0.0, "maximize": False}
    assert Adagrad([param]).get_config() == {
        "lr": 0.01, "lr_decay": 0.0, "weight_decay": 0.0, "initial_accumulator_value": 0.0,
        "eps": 1e-10, "maximize": False}
    assert Adam([param]).get_config() == {
        "lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0,
        "amsgrad": False, "maximize": False}
    assert AdamW([param]).get_config()["weight_decay"] == 0.01
    assert RMSprop([param]).get_config() == {
        "lr": 0.01, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0,
        "centered": False, "maximize": False}


@pytest.mark.parametrize(("name", "cls", "momentum"), [
    ("sgd", SGD, 0.0), ("momentum", SGD, 0.9), ("adagrad", Adagrad, None), ("adam", Adam, None),
    ("adamw", AdamW, None), ("rmsprop", RMSprop, 0.0)])
def test_get_builds_optimizers_by_name(name, cls, momentum):
    params = [make_param([1.0])]
    optimizer = optim.get(name, params)
    assert type(optimizer) is cls
    assert optimizer.params == params
    if momentum is not None:
        assert optimizer.momentum == momentum


def test_get_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"Unknown optimizer 'adamax'; known: 'sgd', 'momentum'"):
        optim.get("adamax", [make_param([1.0])])


def test_get_passes_an_optimizer_through_if_it_holds_the_same_parameters():
    params = [make_param([1.0])]
    optimizer = Adam(params)
    assert optim.get(optimizer, params) is optimizer
    with pytest.raises(ValueError, match="created for other parameters"):
        optim.get(optimizer, [make_param([1.0])])


def test_get_rejects_other_types():
    with pytest.raises(TypeError, match="optimizer must be a name or an Optimizer, got int"):
        optim.get(3, [make_param([1.0])])


def test_serialize_then_deserialize_rebuilds_the_same_optimizer():
    optimizer = RMSprop([make_param([1.0])], lr=0.2, centered=True, momentum=0.5)
    spec = json.loads(json.dumps(optim.serialize(optimizer)))
    assert spec["class_name"] == "RMSprop"
    rebuilt = optim.deserialize(spec, [make_param([1.0])])
    assert type(rebuilt) is RMSprop
    assert rebuilt.get_config() == optimizer.get_config()


def test_deserialize_rejects_unknown_class_and_unknown_argument():
    params = [make_param([1.0])]
    with pytest.raises(ValueError, match=r"unknown optimizer 'os\.system'; known: SGD"):
        optim.deserialize({"class_name": "os.system", "config": {}}, params)
    with pytest.raises(ValueError, match="Adam has no argument 'momentum'"):
        optim.deserialize({"class_name": "Adam", "config": {"momentum": 0.9}}, params)
    with pytest.raises(ValueError, match="optimizer spec must have exactly the keys"):
        optim.deserialize({"class_name": "Adam"}, params)


# ---------------------------------------------------------------- argument validation

@pytest.mark.parametrize(("cls", "options", "message"), [
    (SGD, {"lr": -1}, "Invalid learning rate: -1"),
    (SGD, {"lr": float("nan")}, "Invalid learning rate: nan"),
    (SGD, {"momentum": -0.1}, "Invalid momentum value: -0.1"),
    (SGD, {"weight_decay": -1e-4}, "Invalid weight_decay value: -0.0001"),
    (SGD, {"nesterov": True}, "Nesterov momentum requires a momentum and zero dampening"),
    (SGD, {"nesterov": True, "momentum": 0.9, "dampening": 0.1},
     "Nesterov momentum requires a momentum and zero dampening"),
    (Adagrad, {"lr_decay": -1}, "Invalid lr_decay value: -1"),
    (Adagrad, {"initial_accumulator_value": -1},
     "Invalid initial_accumulator_value value: -1"),
    (Adagrad, {"eps": -1}, "Invalid epsilon value: -1"),
    (Adam, {"betas": (1.2, 0.999)}, "Invalid beta parameter at index 0: 1.2"),
    (Adam, {"betas": (0.9, 1.0)}, "Invalid beta parameter at index 1: 1.0"),
    (Adam, {"betas": (0.9, -0.1)}, "Invalid beta parameter at index 1: -0.1"),
    (Adam, {"betas": (0.9,)}, r"betas must be a pair \(beta1, beta2\)"),
    (AdamW, {"weight_decay": -0.01}, "Invalid weight_decay value: -0.01"),
    (RMSprop, {"alpha": -0.5}, "Invalid alpha value: -0.5"),
    (RMSprop, {"momentum": -1}, "Invalid momentum value: -1"),
])
def test_invalid_hyperparameters_are_refused_with_pytorchs_message(cls, options, message):
    with pytest.raises(ValueError, match=message):
        cls([make_param([1.0])], **options)


@pytest.mark.parametrize(("cls", "options", "message"), [
    (SGD, {"lr": "0.1"}, "lr must be a real number, got str"),
    (SGD, {"nesterov": 1}, "nesterov must be True or False, got int"),
    (Adam, {"amsgrad": "yes"}, "amsgrad must be True or False, got str"),
    (RMSprop, {"alpha": None}, "alpha must be a real number, got NoneType"),
])
def test_hyperparameters_of_the_wrong_type_are_refused(cls, options, message):
    with pytest.raises(TypeError, match=message):
        cls([make_param([1.0])], **options)


def test_params_must_be_a_nonempty_list_of_distinct_parameters():
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        Adam([])
    with pytest.raises(TypeError, match=r"optimizer params\[1\] must be a Parameter, got ndarray"):
        Adam([make_param([1.0]), np.zeros(3)])
    param = make_param([1.0])
    with pytest.raises(ValueError, match="the same Parameter more than once"):
        Adam([param, param])


def test_params_may_be_any_iterable():
    params = [make_param([1.0]), make_param([2.0])]
    assert SGD(iter(params)).params == params


# ---------------------------------------------------------------- state_dict

def through_npz_and_json(state_dict):
    """What a checkpoint does: numbers into JSON, arrays into an .npz, then back."""
    arrays, meta = {}, {"config": state_dict["config"], "state": []}
    for index, param_state in enumerate(state_dict["state"]):
        numbers = {}
        for key, value in param_state.items():
            if isinstance(value, np.ndarray):
                arrays[f"{index}.{key}"] = value
            else:
                numbers[key] = value
        meta["state"].append(numbers)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    meta = json.loads(json.dumps(meta))
    with np.load(buffer, allow_pickle=False) as stored:
        for name in stored.files:
            index, key = name.split(".", 1)
            meta["state"][int(index)][key] = stored[name]
    return meta


def two_params(dtype=np.float64):
    rng = np.random.default_rng(1)
    return [Parameter(rng.standard_normal((3, 2)).astype(dtype), name="kernel"),
            Parameter(rng.standard_normal(2).astype(dtype), name="bias")]


def random_grads(steps, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal((3, 2)).astype(dtype), rng.standard_normal(2).astype(dtype)]
            for _ in range(steps)]


def run_on(optimizer, params, grads):
    for step_grads in grads:
        for param, grad in zip(params, step_grads, strict=True):
            param.grad[...] = grad
        optimizer.step()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("cls", "options"), CASES, ids=CASE_IDS)
def test_resuming_from_a_state_dict_is_bit_identical_to_never_stopping(cls, options, dtype):
    first, second = random_grads(4, seed=2, dtype=dtype), random_grads(4, seed=3, dtype=dtype)
    params = two_params(dtype)
    optimizer = cls(params, lr=0.05, **options)
    run_on(optimizer, params, first)
    optimizer.lr = 0.03  # as a schedule would: the saved config carries it over
    saved = through_npz_and_json(optimizer.state_dict())
    saved_weights = [param.data.copy() for param in params]
    run_on(optimizer, params, second)

    resumed_params = [Parameter(weights, name=param.name)
                      for weights, param in zip(saved_weights, params, strict=True)]
    resumed = cls(resumed_params)
    resumed.load_state_dict(saved)
    run_on(resumed, resumed_params, second)
    for param, resumed_param in zip(params, resumed_params, strict=True):
        np.testing.assert_array_equal(resumed_param.data, param.data)
    assert resumed.get_config() == optimizer.get_config()


def test_state_dict_is_a_snapshot_and_holds_only_arrays_and_numbers():
    params = two_params()
    optimizer = Adam(params, amsgrad=True)
    run_on(optimizer, params, random_grads(2, seed=4))
    state_dict = optimizer.state_dict()
    exp_avg = state_dict["state"][0]["exp_avg"].copy()
    run_on(optimizer, params, random_grads(1, seed=5))
    np.testing.assert_array_equal(state_dict["state"][0]["exp_avg"], exp_avg)
    assert state_dict["state"][0]["step"] == 2
    assert sorted(state_dict["state"][1]) == ["exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step"]
    for param_state in state_dict["state"]:
        assert all(isinstance(value, (np.ndarray, int)) for value in param_state.values())


def test_state_dict_before_the_first_step_has_empty_states():
    params = two_params()
    assert Adam(params).state_dict()["state"] == [{}, {}]
    assert SGD(params).state_dict()["state"] == [{}, {}]
    resumed = Adam(params)
    resumed.load_state_dict(Adam(params).state_dict())
    assert resumed.state == [{}, {}]


def test_plain_sgd_keeps_no_state():
    params = two_params()
    optimizer = SGD(params)
    run_on(optimizer, params, random_grads(2, seed=6))
    assert optimizer.state_dict()["state"] == [{}, {}]


def test_loaded_state_does_not_share_memory_with_the_given_dict():
    params = two_params()
    optimizer = RMSprop(params, momentum=0.9)
    run_on(optimizer, params, random_grads(1, seed=7))
    state_dict = optimizer.state_dict()
    optimizer.load_state_dict(state_dict)
    run_on(optimizer, params, random_grads(1, seed=8))
    assert not np.shares_memory(optimizer.state[0]["momentum_buffer"],
                                state_dict["state"][0]["momentum_buffer"])


def stepped_adam_state_dict():
    params = two_params()
    optimizer = Adam(params)
    run_on(optimizer, params, random_grads(1, seed=9))
    return optimizer, optimizer.state_dict()


def test_load_state_dict_refuses_a_wrong_number_of_parameter_states():
    optimizer, state_dict = stepped_adam_state_dict()
    state_dict["state"] = state_dict["state"][:1]
    with pytest.raises(ValueError, match="'state' has 1 entries but the optimizer has 2 "
                                         "parameters"):
        optimizer.load_state_dict(state_dict)


def test_load_state_dict_refuses_a_wrong_shape_naming_the_key_and_parameter():
    optimizer, state_dict = stepped_adam_state_dict()
    state_dict["state"][1]["exp_avg_sq"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"state\[1\]\['exp_avg_sq'\] has shape \(3,\) but "
                                         r"parameter 1 \('bias'\) has shape \(2,\)"):
        optimizer.load_state_dict(state_dict)


def test_load_state_dict_refuses_a_wrong_dtype():
    optimizer, state_dict = stepped_adam_state_dict()
    state_dict["state"][0]["exp_avg"] = state_dict["state"][0]["exp_avg"].astype(np.float32)
    with pytest.raises(ValueError, match=r"state\[0\]\['exp_avg'\] has dtype float32 but "
                                         r"parameter 0 \('kernel'\) has dtype float64"):
        optimizer.load_state_dict(state_dict)


def test_load_state_dict_refuses_missing_and_unknown_keys():
    optimizer, state_dict = stepped_adam_state_dict()
    del state_dict["state"][0]["exp_avg"]
    with pytest.raises(ValueError, match=r"state\[0\] is missing key 'exp_avg'"):
        optimizer.load_state_dict(state_dict)

    optimizer, state_dict = stepped_adam_state_dict()
    state_dict["state"][1]["momentum_buffer"] = np.zeros(2)
    with pytest.raises(ValueError, match=r"state\[1\] has unknown key 'momentum_buffer'"):
        optimizer.load_state_dict(state_dict)

    optimizer, state_dict = stepped_adam_state_dict()
    del state_dict["config"]["betas"]
    with pytest.raises(ValueError, match="config is missing key 'betas'"):
        optimizer.load_state_dict(state_dict)

    optimizer, state_dict = stepped_adam_state_dict()
    del state_dict["state"]
    with pytest.raises(ValueError, match="load_state_dict is missing key 'state'"):
        optimizer.load_state_dict(state_dict)


def test_load_state_dict_checks_state_against_the_loaded_config():
    # amsgrad=True in the file means a max_exp_avg_sq array must be there too.
    optimizer, state_dict = stepped_adam_state_dict()
    state_dict["config"]["amsgrad"] = True
    with pytest.raises(ValueError, match=r"state\[0\] is missing key 'max_exp_avg_sq'"):
        optimizer.load_state_dict(state_dict)


def test_load_state_dict_refuses_bad_values_and_bad_step_counts():
    optimizer, state_dict = stepped_adam_state_dict()
    state_dict["config"]["lr"] = -1.0
    with pytest.raises(ValueError, match=r"config: Invalid learning rate: -1\.0"):
        optimizer.load_state_dict(state_dict)

    optimizer, state_dict = stepped_adam_state_dict()
    state_dict["config"]["eps"] = "tiny"
    with pytest.raises(ValueError, match="config: eps must be a real number, got str"):
        optimizer.load_state_dict(state_dict)

    optimizer, state_dict = stepped_adam_state_dict()
    state_dict["state"][0]["step"] = 1.5
    with pytest.raises(ValueError, match=r"state\[0\]\['step'\] must be an integer, got float"):
        optimizer.load_state_dict(state_dict)

    optimizer, state_dict = stepped_adam_state_dict()
    state_dict["state"][0]["step"] = -3
    with pytest.raises(ValueError, match=r"state\[0\]\['step'\] must be >= 0, got -3"):
        optimizer.load_state_dict(state_dict)

    optimizer, state_dict = stepped_adam_state_dict()
    state_dict["state"][0]["exp_avg"] = [[0.0, 0.0]] * 3
    with pytest.raises(ValueError, match=r"state\[0\]\['exp_avg'\] must be an array, got list"):
        optimizer.load_state_dict(state_dict)


def test_load_state_dict_accepts_a_step_count_stored_as_a_0d_array():
    optimizer, state_dict = stepped_adam_state_dict()
    state_dict["state"][0]["step"] = np.array(7)
    optimizer.load_state_dict(state_dict)
    assert optimizer.state[0]["step"] == 7
    assert type(optimizer.state[0]["step"]) is int


def test_a_failed_load_changes_nothing():
    optimizer, state_dict = stepped_adam_state_dict()
    before = optimizer.state_dict()
    state_dict["config"]["lr"] = 0.5
    state_dict["state"][0]["exp_avg"] = np.ones(2)
    with pytest.raises(ValueError, match="has shape"):
        optimizer.load_state_dict(state_dict)
    assert optimizer.lr == before["config"]["lr"]
    np.testing.assert_array_equal(optimizer.state[0]["exp_avg"], before["state"][0]["exp_avg"])


# ---------------------------------------------------------------- PyTorch, when installed

@pytest.mark.parametrize(("cls", "options"), CASES, ids=CASE_IDS)
def test_agrees_with_torch_optim_for_20_steps(cls, options):
    torch = pytest.importorskip("torch")
    params = two_params()
    torch_params = [torch.tensor(param.data.copy(), requires_grad=True) for param in params]
    optimizer = cls(params, lr=0.05, **options)
    torch_optimizer = getattr(torch.optim, cls.__name__)(
        torch_params, lr=0.05, foreach=False, **options)
    for step_grads in random_grads(20, seed=10):
        for param, torch_param, grad in zip(params, torch_params, step_grads, strict=True):
            param.grad[...] = grad
            torch_param.grad = torch.tensor(grad)
        optimizer.step()
        torch_optimizer.step()
    for param, torch_param in zip(params, torch_params, strict=True):
        np.testing.assert_allclose(param.data, torch_param.detach().numpy(), rtol=1e-12,
                                   atol=1e-12)


# ---------------------------------------------------------------------------------------------
# parameters stored end to end in one buffer (as Sequential stores them) are updated at once


def end_to_end(params):
    """Copies of ``params`` whose data and gradients are pieces of one buffer each."""
    copies = [Parameter(param.data.copy(), name=param.name) for param in params]
    store_end_to_end(copies)
    return copies


def test_views_of_one_buffer_that_were_not_stored_end_to_end_are_updated_one_by_one():
    # the fast path follows what store_end_to_end says, not where the arrays happen to lie
    data, grad = np.zeros(5), np.zeros(5)
    params = [Parameter(np.zeros(2)), Parameter(np.zeros(3))]
    params[0].data, params[0].grad, params[1].data, params[1].grad = (
        data[:2], grad[:2], data[2:], grad[2:])
    assert SGD(params)._flat is None
    assert SGD(end_to_end(params))._flat is not None
    assert SGD(end_to_end(params)[::-1])._flat is None  # another order: one by one


@pytest.mark.parametrize(("cls", "options"), CASES, ids=CASE_IDS)
def test_end_to_end_parameters_get_bit_identical_updates_and_per_parameter_state(cls, options):
    separate = two_params(np.float32)
    shared = end_to_end(separate)
    one_by_one, at_once = cls(separate, **options), cls(shared, **options)
    assert at_once._flat is not None and one_by_one._flat is None
    grads = random_grads(4, seed=11, dtype=np.float32)
    run_on(one_by_one, separate, grads)
    run_on(at_once, shared, grads)
    for a, b in zip(separate, shared, strict=True):
        np.testing.assert_array_equal(a.data, b.data)
    expected, found = one_by_one.state_dict(), at_once.state_dict()
    for state_a, state_b in zip(expected["state"], found["state"], strict=True):
        assert state_a.keys() == state_b.keys()
        for key in state_a:
            np.testing.assert_array_equal(state_a[key], state_b[key])


def test_end_to_end_state_survives_a_state_dict_round_trip_exactly():
    params = end_to_end(two_params())
    optimizer = Adam(params, amsgrad=True)
    run_on(optimizer, params, random_grads(3, seed=12))
    saved, weights = optimizer.state_dict(), [p.data.copy() for p in params]
    run_on(optimizer, params, random_grads(2, seed=13))
    expected = [p.data.copy() for p in params]
    for param, weight in zip(params, weights, strict=True):
        param.data[...] = weight
    resumed = Adam(params, amsgrad=True)
    resumed.load_state_dict(saved)
    assert resumed._flat is not None
    run_on(resumed, params, random_grads(2, seed=13))
    for param, weight in zip(params, expected, strict=True):
        np.testing.assert_array_equal(param.data, weight)


def test_states_that_disagree_are_loaded_one_by_one():
    params = end_to_end(two_params())
    optimizer = Adam(params)
    run_on(optimizer, params, random_grads(2, seed=14))
    saved = optimizer.state_dict()
    saved["state"][1]["step"] = 5  # possible in a hand-made file
    optimizer.load_state_dict(saved)
    assert optimizer._flat is None
    run_on(optimizer, params, random_grads(1, seed=15))
    assert [state["step"] for state in optimizer.state] == [3, 6]


# ---------------------------------------------------------------- a schedule as lr (Keras' way)

def test_a_schedule_as_lr_is_evaluated_at_the_iteration_count_before_each_step():
    # PiecewiseConstantDecay([0, 1], [1.0, 0.5, 0.25]): step 0 -> 1.0, step 1 -> 0.5, then 0.25
    param = make_param([1.0])
    optimizer = SGD([param], lr=PiecewiseConstantDecay([0, 1], [1.0, 0.5, 0.25]))
    seen = []
    for _ in range(4):
        seen.append(optimizer.lr)
        param.grad[...] = 1.0
        optimizer.step()
    assert seen == [1.0, 0.5, 0.25, 0.25]
    assert optimizer.iterations == 4
    assert param.data[0] == 1.0 - 1.0 - 0.5 - 0.25 - 0.25


@pytest.mark.parametrize(("cls", "options"), CASES, ids=CASE_IDS)
def test_every_rule_counts_one_iteration_per_step_stored_end_to_end_or_not(cls, options):
    for params in (two_params(), end_to_end(two_params())):
        optimizer = cls(params, lr=ExponentialDecay(0.1, 1, 0.5), **options)
        lrs = []
        for step_grads in random_grads(3, seed=20):
            lrs.append(optimizer.lr)
            for param, grad in zip(params, step_grads, strict=True):
                param.grad[...] = grad
            optimizer.step()
        assert optimizer.iterations == 3
        assert lrs == [0.1, 0.05, 0.025]


def test_a_scheduled_step_equals_a_step_with_that_number_as_lr():
    scheduled_params, fixed_params = two_params(), two_params()
    scheduled = Adam(scheduled_params, lr=CosineDecay(0.1, decay_steps=3))
    fixed = Adam(fixed_params, lr=0.1)
    for step_grads in random_grads(5, seed=21):
        fixed.lr = CosineDecay(0.1, decay_steps=3)(fixed.iterations)
        for optimizer, params in ((scheduled, scheduled_params), (fixed, fixed_params)):
            for param, grad in zip(params, step_grads, strict=True):
                param.grad[...] = grad
            optimizer.step()
    for scheduled_param, fixed_param in zip(scheduled_params, fixed_params, strict=True):
        np.testing.assert_array_equal(scheduled_param.data, fixed_param.data)


def test_the_lr_of_a_scheduled_optimizer_cannot_be_set_as_in_keras():
    optimizer = Adam(two_params(), lr=PolynomialDecay(0.1, decay_steps=10))
    with pytest.raises(TypeError, match="This optimizer was created with a "
                                        "`LearningRateSchedule` object as its `lr`"):
        optimizer.lr = 0.5
    optimizer.lr = StepDecay(0.2, step_size=1)  # a schedule replaces a schedule
    assert optimizer.lr == 0.2 and isinstance(optimizer.schedule, StepDecay)


def test_a_schedule_that_gives_a_negative_rate_is_refused_when_it_is_read():
    class Negative(LearningRateSchedule):
        def __call__(self, step):
            return 0.1 - 0.1 * step

    optimizer = SGD(two_params(), lr=Negative())
    assert optimizer.lr == 0.1
    optimizer.iterations = 2
    with pytest.raises(ValueError, match=r"Invalid learning rate from Negative at iteration "
                                         r"2: -0\.1"):
        optimizer.step()


def test_config_holds_the_schedule_as_data_and_deserialize_rebuilds_it():
    schedule = CosineDecay(0.1, 100, alpha=0.1, warmup_target=0.5, warmup_steps=10)
    optimizer = Adam([make_param([1.0])], lr=schedule)
    spec = json.loads(json.dumps(optim.serialize(optimizer)))
    assert spec["config"]["lr"] == {"class_name": "CosineDecay", "config": {
        "initial_learning_rate": 0.1, "decay_steps": 100.0, "alpha": 0.1,
        "name": "CosineDecay", "warmup_target": 0.5, "warmup_steps": 10.0}}
    rebuilt = optim.deserialize(spec, [make_param([1.0])])
    assert isinstance(rebuilt.schedule, CosineDecay)
    assert rebuilt.get_config() == optimizer.get_config()
    with pytest.raises(ValueError, match=r"unknown learning-rate schedule 'os\.system'"):
        optim.deserialize({"class_name": "Adam", "config": {
            "lr": {"class_name": "os.system", "config": {}}}}, [make_param([1.0])])


@pytest.mark.parametrize(("cls", "options"), CASES, ids=CASE_IDS)
def test_resuming_a_scheduled_optimizer_from_its_state_dict_is_bit_identical(cls, options):
    first, second = random_grads(3, seed=22), random_grads(4, seed=23)
    params = two_params()
    optimizer = cls(params, lr=CosineDecayRestarts(0.05, 2), **options)
    run_on(optimizer, params, first)
    saved = optimizer.state_dict()
    assert saved["iterations"] == 3
    saved = {**through_npz_and_json(saved), "iterations": saved["iterations"]}
    saved_weights = [param.data.copy() for param in params]
    run_on(optimizer, params, second)

    resumed_params = [Parameter(weights, name=param.name)
                      for weights, param in zip(saved_weights, params, strict=True)]
    resumed = cls(resumed_params, lr=0.5)  # the loaded schedule replaces the number
    resumed.load_state_dict(saved)
    assert resumed.iterations == 3 and isinstance(resumed.schedule, CosineDecayRestarts)
    run_on(resumed, resumed_params, second)
    for param, resumed_param in zip(params, resumed_params, strict=True):
        np.testing.assert_array_equal(resumed_param.data, param.data)


def test_load_state_dict_checks_the_iteration_count():
    optimizer, state_dict = stepped_adam_state_dict()
    state_dict["iterations"] = -1
    with pytest.raises(ValueError, match="'iterations' must be >= 0, got -1"):
        optimizer.load_state_dict(state_dict)
    del state_dict["iterations"]  # a state dict from before minidl counted steps
    optimizer.load_state_dict(state_dict)
    assert optimizer.iterations == 0
