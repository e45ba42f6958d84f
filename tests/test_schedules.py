"""Learning-rate schedules (minidl.optim.schedules): Keras' values from its own tests
(keras/src/optimizers/schedules/learning_rate_schedule_test.py, cited per test), Keras and
PyTorch themselves when installed, and the two ways of using a schedule: as an optimizer's
``lr`` (per step) and from ``LearningRateScheduler`` (per epoch).
"""

import json
import math
import os

import numpy as np
import pytest

from minidl import Dense, Sequential, load_model
from minidl.callbacks import LearningRateScheduler
from minidl.optim import SGD, Adam
from minidl.optim.schedules import (
    SCHEDULES,
    CosineAnnealingLR,
    CosineDecay,
    CosineDecayRestarts,
    ExponentialDecay,
    InverseTimeDecay,
    PiecewiseConstantDecay,
    PolynomialDecay,
    StepDecay,
    deserialize,
    serialize,
)

approx = pytest.approx


# ---------------------------------------------------------------- Keras' test values

def test_exponential_decay_continuous():
    # learning_rate_schedule_test.py::ExponentialDecayTest::test_continuous
    assert ExponentialDecay(0.05, 10, 0.96)(5) == approx(0.05 * 0.96 ** (5.0 / 10.0), rel=1e-6)


def test_exponential_decay_staircase():
    # ::ExponentialDecayTest::test_staircase and ::test_variables
    decayed_lr = ExponentialDecay(0.1, 3, 0.96, staircase=True)
    assert decayed_lr(1.0) == approx(0.1, rel=1e-6)
    assert decayed_lr(2) == approx(0.1, rel=1e-6)
    assert decayed_lr(100) == approx(0.1 * 0.96 ** (100 // 3), rel=1e-6)


def test_piecewise_constant_values():
    # ::PiecewiseConstantDecayTest::test_piecewise_values
    decayed_lr = PiecewiseConstantDecay([100, 110, 120], [1.0, 0.1, 0.01, 0.001])
    steps = [-999.0, 100, 105, 110, 120, 999]
    assert [decayed_lr(step) for step in steps] == [1.0, 1.0, 0.1, 0.1, 0.01, 0.001]


def test_piecewise_constant_boundary_values():
    # ::PiecewiseConstantDecayTest::test_boundary_values (an int64 step)
    decayed_lr = PiecewiseConstantDecay([1, 2, 3], [0.4, 0.5, 0.6, 0.7])
    assert [decayed_lr(np.int64(step)) for step in range(5)] == [0.4, 0.4, 0.5, 0.6, 0.7]


@pytest.mark.parametrize(("step", "end_lr", "power", "cycle", "expected"), [
    (5, 0.0, 1.0, False, 0.05 * 0.5),                          # LinearDecayTest::test_halfway
    (10, 0.001, 1.0, False, 0.001),                            # ::test_end
    (5, 0.001, 1.0, False, (0.05 + 0.001) * 0.5),              # ::test_halfway_with_end
    (15, 0.001, 1.0, False, 0.001),                            # ::test_beyond_end
    (15, 0.001, 1.0, True, (0.05 - 0.001) * 0.25 + 0.001),     # ::test_beyond_end_with_cycle
    (5, 0.0, 0.5, False, 0.05 * 0.5 ** 0.5),                   # SqrtDecayTest::test_halfway
    (10, 0.001, 0.5, False, 0.001),                            # ::test_end
    (5, 0.001, 0.5, False, (0.05 - 0.001) * 0.5 ** 0.5 + 0.001),  # ::test_halfway_with_end
    (15, 0.001, 0.5, False, 0.001),                            # ::test_beyond_end
    (15, 0.001, 0.5, True, (0.05 - 0.001) * 0.25 ** 0.5 + 0.001),  # ::test_beyond_end_with_cycle
])
def test_polynomial_decay(step, end_lr, power, cycle, expected):
    # learning_rate_schedule_test.py::LinearDecayTest and ::SqrtDecayTest
    decayed_lr = PolynomialDecay(0.05, 10, end_lr, power=power, cycle=cycle)
    assert decayed_lr(step) == approx(expected, rel=1e-6)


def test_polynomial_decay_begins_at_the_initial_rate_with_cycle():
    # ::SqrtDecayTest::test_begin_with_cycle
    assert PolynomialDecay(0.001, 10, cycle=True)(0) == approx(0.001, rel=1e-6)


@pytest.mark.parametrize("staircase", [False, True])
def test_inverse_time_decay(staircase):
    # ::InverseTimeDecayTest::test_decay and ::test_staircase
    decayed_lr = InverseTimeDecay(0.1, 10, 0.96, staircase=staircase)
    for i in range(11):
        progress = i // 10 if staircase else i / 10
        assert decayed_lr(i) == approx(0.1 / (1 + 0.96 * progress), rel=1e-6)


def np_cosine_decay(step, decay_steps, alpha=0.0):
    # CosineDecayTest.np_cosine_decay
    step = min(step, decay_steps)
    completed_fraction = step / decay_steps
    decay = 0.5 * (1.0 + math.cos(math.pi * completed_fraction))
    return (1.0 - alpha) * decay + alpha


@pytest.mark.parametrize("initial_lr", [1.0, np.float64(1.0)])
@pytest.mark.parametrize("alpha", [0.0, 0.1])
def test_cosine_decay_holds_at_alpha_after_decay_steps(initial_lr, alpha):
    # ::CosineDecayTest::test_decay, ::test_alpha and ::test_float64
    for step in range(0, 1500, 250):
        decayed_lr = CosineDecay(initial_lr, 1000, alpha)
        assert decayed_lr(step) == approx(np_cosine_decay(step, 1000, alpha), rel=1e-6)
    assert CosineDecay(1.0, 1000, alpha)(10**6) == approx(alpha, abs=1e-12)


def test_cosine_decay_warmup():
    # ::CosineDecayTest::test_warmup: a straight line from 0 to 10 over 1500 steps
    for step in range(0, 1500, 250):
        lr = CosineDecay(0.0, 10, warmup_target=10.0, warmup_steps=1500)
        assert lr(step) == approx(step / 1500 * 10.0)


def test_cosine_decay_warmup_then_decay():
    # ::CosineDecayTest::test_warmup_decay
    for step in range(0, 3000, 250):
        lr = CosineDecay(0.0, 1000, warmup_target=10.0, warmup_steps=2000)
        if step < 2000 + 1:
            expected = step / 2000 * 10.0
        else:
            expected = 10.0 * np_cosine_decay(step - 2000, 1000)
        assert lr(step) == approx(expected)


def np_cosine_decay_restarts(step, decay_steps, t_mul=2.0, m_mul=1.0, alpha=0.0):
    # CosineDecayRestartsTest.np_cosine_decay_restarts
    fac = 1.0
    while step >= decay_steps:
        step -= decay_steps
        decay_steps *= t_mul
        fac *= m_mul
    completed_fraction = step / decay_steps
    decay = fac * 0.5 * (1.0 + math.cos(math.pi * completed_fraction))
    return (1.0 - alpha) * decay + alpha


@pytest.mark.parametrize("options", [
    {},                # ::CosineDecayRestartsTest::test_decay (and ::test_float64)
    {"alpha": 0.1},    # ::test_alpha
    {"m_mul": 0.9},    # ::test_mmul
    {"t_mul": 1.0},    # ::test_tmul
])
def test_cosine_decay_restarts(options):
    for step in range(0, 1500, 250):
        decayed_lr = CosineDecayRestarts(np.float64(1.0), 1000, **options)
        assert decayed_lr(step) == approx(np_cosine_decay_restarts(step, 1000, **options),
                                          rel=1e-6)


@pytest.mark.parametrize("t_mul", [2.0, 3.0, 1.5])
def test_cosine_decay_restarts_restarts_exactly_at_each_period_end(t_mul):
    schedule = CosineDecayRestarts(1.0, 7, t_mul=t_mul, m_mul=0.5)
    for step in range(400):
        assert schedule(step) == approx(np_cosine_decay_restarts(step, 7, t_mul, 0.5),
                                        rel=1e-9, abs=1e-12), step


CONFIGS = [
    # the configs of learning_rate_schedule_test.py's test_config cases
    ExponentialDecay(initial_learning_rate=0.05, decay_steps=10, decay_rate=0.96,
                     staircase=True, name="my_ed"),
    PiecewiseConstantDecay(boundaries=[10, 20], values=[1, 2, 3], name="my_pcd"),
    PolynomialDecay(initial_learning_rate=0.1, decay_steps=100, end_learning_rate=0.005,
                    power=1.0, cycle=False, name="my_ld"),
    InverseTimeDecay(initial_learning_rate=0.05, decay_steps=10, decay_rate=0.96,
                     staircase=True, name="my_itd"),
    CosineDecay(initial_learning_rate=0.05, decay_steps=10, alpha=0.1, warmup_target=0.2,
                warmup_steps=2, name="my_cd"),
    CosineDecayRestarts(initial_learning_rate=0.05, first_decay_steps=10, alpha=0.1,
                        t_mul=3.0, m_mul=4.0, name="my_cdr"),
    StepDecay(0.1, step_size=3, gamma=0.5),
    CosineAnnealingLR(0.1, T_max=7, eta_min=0.01),
]
IDS = [type(schedule).__name__ for schedule in CONFIGS]


@pytest.mark.parametrize("schedule", CONFIGS, ids=IDS)
def test_config_round_trips_through_json(schedule):
    # every test_config case of learning_rate_schedule_test.py (run_class_serialization_test)
    spec = json.loads(json.dumps(serialize(schedule)))
    rebuilt = deserialize(spec)
    assert type(rebuilt) is type(schedule)
    assert rebuilt.get_config() == schedule.get_config()
    assert [rebuilt(step) for step in range(40)] == [schedule(step) for step in range(40)]


def test_every_schedule_is_registered():
    assert sorted(SCHEDULES) == sorted({type(schedule).__name__ for schedule in CONFIGS})


def test_defaults_are_keras():
    assert CosineDecay(0.1, 10).get_config() == {
        "initial_learning_rate": 0.1, "decay_steps": 10.0, "alpha": 0.0, "name": "CosineDecay",
        "warmup_target": None, "warmup_steps": 0.0}
    assert CosineDecayRestarts(0.1, 10).get_config() == {
        "initial_learning_rate": 0.1, "first_decay_steps": 10.0, "t_mul": 2.0, "m_mul": 1.0,
        "alpha": 0.0, "name": "SGDRDecay"}
    assert PolynomialDecay(0.1, 10).get_config()["end_learning_rate"] == 0.0001
    assert PiecewiseConstantDecay([1], [0.1, 0.01]).name == "PiecewiseConstant"


# ---------------------------------------------------------------- arguments

@pytest.mark.parametrize(("build", "error", "message"), [
    (lambda: ExponentialDecay(0.1, 0, 0.9), ValueError,
     r"Argument `decay_steps` must be > 0\. Received: decay_steps=0"),
    (lambda: CosineDecay(0.1, -5), ValueError, "Argument `decay_steps` must be > 0"),
    (lambda: CosineDecayRestarts(0.1, 0), ValueError,
     "Argument `first_decay_steps` must be > 0"),
    (lambda: PolynomialDecay(-0.1, 10), ValueError,
     r"Argument `initial_learning_rate` must be >= 0\. Received: initial_learning_rate=-0\.1"),
    (lambda: InverseTimeDecay("0.1", 10, 0.5), TypeError,
     "initial_learning_rate must be a real number, got str"),
    (lambda: PiecewiseConstantDecay([1, 2], [0.1, 0.2]), ValueError,
     r"The length of boundaries should be 1 less than the length of values\. Received: "
     r"boundaries=\[1, 2\] of length 2, and values=\[0\.1, 0\.2\] of length 2\."),
    (lambda: PiecewiseConstantDecay([2, 1], [0.1, 0.2, 0.3]), ValueError,
     r"boundaries must increase, got \[2\.0, 1\.0\]"),
    (lambda: CosineDecay(0.1, 10, alpha=float("nan")), ValueError, "alpha must be finite"),
    (lambda: CosineDecay(0.1, 10)(float("inf")), ValueError, "step must be finite, got inf"),
    (lambda: ExponentialDecay(0.1, 10, 0.9)(True), TypeError, "step must be a real number"),
    (lambda: StepDecay(0.1, step_size=0), ValueError, "step_size must be >= 1, got 0"),
    (lambda: CosineAnnealingLR(0.1, T_max=0), ValueError, "T_max must be >= 1, got 0"),
    (lambda: StepDecay(0.1, 2)(-1, 0.1), ValueError, "epoch must be >= 0, got -1"),
    (lambda: StepDecay(0.1, 2)(1.5, 0.1), TypeError, "epoch must be an integer, got float"),
])
def test_bad_arguments_are_refused_naming_the_argument(build, error, message):
    with pytest.raises(error, match=message):
        build()


# ---------------------------------------------------------------- PyTorch-style schedules

def test_step_decay_values():
    schedule = StepDecay(0.1, step_size=3, gamma=0.5)
    got = [schedule(epoch, 0.0) for epoch in range(7)]
    np.testing.assert_allclose(got, [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025], rtol=1e-15)
    assert schedule.get_config() == {"initial_lr": 0.1, "step_size": 3, "gamma": 0.5}


def test_cosine_annealing_lr_climbs_back_after_t_max_as_in_pytorch():
    # η_min + (γ0 - η_min)(1 + cos(π e / T))/2 with γ0 = 1.1, η_min = 0.1, T = 4:
    # e = 0: 1.1; e = 1: 0.1 + (1 + √2/2)/2 = 0.9535533906; e = 2: 0.6; e = 3: 0.2464466094;
    # e = 4: 0.1; e = 6 (past T_max, climbing again): 0.6.
    schedule = CosineAnnealingLR(1.1, T_max=4, eta_min=0.1)
    got = [schedule(epoch, 0.0) for epoch in (0, 1, 2, 3, 4, 6)]
    np.testing.assert_allclose(got, [1.1, 0.9535533906, 0.6, 0.2464466094, 0.1, 0.6], atol=1e-10)
    # Keras' CosineDecay with the same floor holds there instead
    assert CosineDecay(1.1, 4, alpha=0.1 / 1.1)(6) == approx(0.1)


def test_agrees_with_torch_lr_schedulers_for_30_steps():
    torch = pytest.importorskip("torch")
    lr_scheduler = torch.optim.lr_scheduler
    pairs = [
        (StepDecay(0.1, step_size=3, gamma=0.5), lambda o: lr_scheduler.StepLR(o, 3, 0.5)),
        (CosineAnnealingLR(0.1, T_max=7, eta_min=0.01),
         lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=7, eta_min=0.01)),
        (ExponentialDecay(0.1, 1, 0.9), lambda o: lr_scheduler.ExponentialLR(o, gamma=0.9)),
        (PolynomialDecay(0.1, 10, end_learning_rate=0.0, power=2.0),
         lambda o: lr_scheduler.PolynomialLR(o, total_iters=10, power=2.0)),
        (CosineDecayRestarts(0.1, 3, t_mul=2.0, alpha=0.1),
         lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=0.01)),
    ]
    for schedule, make_scheduler in pairs:
        torch_optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        scheduler = make_scheduler(torch_optimizer)
        for step in range(30):
            assert schedule(step) == approx(scheduler.get_last_lr()[0], rel=1e-9, abs=1e-15), (
                type(schedule).__name__, step)
            torch_optimizer.step()
            scheduler.step()


# ---------------------------------------------------------------- Keras, when installed

@pytest.mark.parametrize("schedule", CONFIGS[:6], ids=IDS[:6])
def test_agrees_with_keras(schedule):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    theirs = getattr(keras.optimizers.schedules, type(schedule).__name__)(
        **schedule.get_config())
    for step in [0, 1, 2, 3, 5, 9, 10, 11, 19, 20, 21, 35, 100, 101, 250, 1000]:
        expected = float(theirs(step))  # a torch tensor: its own float(), not numpy's
        assert schedule(step) == approx(expected, rel=2e-6, abs=1e-8), step


def test_fit_with_a_schedule_as_lr_gives_keras_losses():
    # learning_rate_schedule_test.py::TestFitLRSchedulesFlow::test_fit_lr_correctness
    # (Keras' Adam puts its epsilon 1e-7 where PyTorch's puts 1e-8: negligible here)
    model = Sequential([Dense(2, kernel_initializer="ones", bias_initializer="ones")],
                       input_dim=2, seed=0)
    optimizer = Adam(model.parameters(), lr=ExponentialDecay(0.05, decay_steps=1,
                                                             decay_rate=0.9))
    assert optimizer.iterations == 0
    model.compile(optimizer=optimizer, loss="mse")
    x = np.arange(32).reshape((16, 2))
    y = np.arange(32).reshape((16, 2))
    history = model.fit(x, y, epochs=3, batch_size=4, shuffle=False, verbose=0)
    assert optimizer.iterations == 4 * 3
    np.testing.assert_allclose(history.history["loss"],
                               [230.79457092285156, 128.30319213867188, 79.33648681640625],
                               rtol=5e-5)


# ---------------------------------------------------------------- in fit and in files

def test_a_schedule_from_learning_rate_scheduler_counts_epochs():
    x = np.linspace(-1, 1, 20).reshape(10, 2)
    y = x.sum(axis=1, keepdims=True)
    model = Sequential([Dense(1)], input_dim=2, seed=0)
    model.compile(SGD(model.parameters(), lr=1.0), "mse")
    schedule = CosineDecay(0.1, decay_steps=4)
    history = model.fit(x, y, epochs=6, batch_size=5,
                        callbacks=[LearningRateScheduler(schedule)], verbose=0)
    assert history.history["learning_rate"] == [schedule(epoch) for epoch in range(6)]
    assert history.history["learning_rate"][-2:] == [0.0, 0.0]  # held at alpha * 0.1


def test_a_scheduled_optimizer_is_saved_with_its_schedule(tmp_path):
    x = np.linspace(-1, 1, 20).reshape(10, 2)
    y = x.sum(axis=1, keepdims=True)
    model = Sequential([Dense(1)], input_dim=2, seed=0)
    schedule = PiecewiseConstantDecay([3, 6], [0.1, 0.05, 0.01])
    model.compile(Adam(model.parameters(), lr=schedule), "mse")
    model.fit(x, y, epochs=2, batch_size=5, verbose=0)
    model.save(tmp_path / "model.npz")
    loaded = load_model(tmp_path / "model.npz")
    assert isinstance(loaded.optimizer.schedule, PiecewiseConstantDecay)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
