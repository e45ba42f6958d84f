"""The ``Optimizer`` base class: parameters, hyper-parameters, per-parameter state, and
the checks that every update rule shares."""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from minidl.optim.schedules import LearningRateSchedule, deserialize, serialize
from minidl.parameter import Parameter

State = dict[str, Any]


def _non_negative(name: str, value: object, invalid: str) -> float:
    """``value`` as a float, after checking it is a real number >= 0.

    ``invalid`` completes PyTorch's message, e.g. "learning rate" -> "Invalid learning rate: -1".
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}: {value!r}")
    if not value >= 0.0:  # negated so that NaN fails too
        raise ValueError(f"Invalid {invalid}: {value}")
    # A Python float (not np.float64) keeps float32 arithmetic in float32: NumPy treats
    # Python scalars as "weak" and casts them to the array's dtype.
    return float(value)


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}: {value!r}")
    return bool(value)


def _betas(betas: object) -> tuple[float, float]:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    for index, beta in enumerate(betas):
        _non_negative(f"betas[{index}]", beta, f"beta parameter at index {index}")
        if not beta < 1.0:
            raise ValueError(f"Invalid beta parameter at index {index}: {beta}")
    return float(betas[0]), float(betas[1])


def _spanning(params: list[Parameter]) -> Parameter | None:
    """The Parameter spanning ``params`` when they are exactly the members of one end-to-end
    storage, in order (``minidl.parameter.store_end_to_end``); None otherwise."""
    spanning = params[0].storage
    if spanning is None or len(spanning.members) != len(params):
        return None
    return spanning if all(p is m for p, m in zip(params, spanning.members, strict=True)) else None


class Optimizer:
    """Base class: the parameters, their hyper-parameters and their per-parameter state.

    Subclasses pass their validated hyper-parameters to ``__init__`` (they become attributes
    and the content of :meth:`get_config`), implement :meth:`step` over
    :meth:`_param_states`, and describe the state of one parameter in :meth:`_init_state`
    (which :meth:`load_state_dict` checks against).

    Every rule here works element by element. So when the parameters lie end to end in one
    buffer (``minidl.parameter.store_end_to_end``, as ``Sequential`` stores its parameters)
    the optimizer updates that whole buffer at once: the same arithmetic for every element,
    in a handful of NumPy calls instead of a handful per parameter, which is most of a small
    model's step.
    ``state`` still shows one dict per parameter (views into the shared state).

    ``iterations`` counts the steps taken (Keras' name): a step is one pass over
    :meth:`_param_states`, which counts it when the pass is over. ``lr`` may be a
    :class:`~minidl.optim.schedules.LearningRateSchedule`, which is then evaluated at
    ``iterations`` whenever the rule reads ``self.lr``: the first step uses ``schedule(0)``.
    """

    def __init__(self, params: Iterable[Parameter], **hyperparameters: Any) -> None:
        self.params: list[Parameter] = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        for index, param in enumerate(self.params):
            if not isinstance(param, Parameter):
                raise TypeError(f"optimizer params[{index}] must be a Parameter, "
                                f"got {type(param).__name__}")
        if len({id(param) for param in self.params}) != len(self.params):
            raise ValueError("optimizer got the same Parameter more than once; "
                             "it would be updated twice per step")
        self._hyperparameter_names = tuple(hyperparameters)
        self.iterations = 0
        self._schedule: LearningRateSchedule | None = None
        for name, value in hyperparameters.items():
            setattr(self, name, value)
        # One dict per parameter, in params order; {} until the parameter's first step.
        self.state: list[State] = [{} for _ in self.params]
        self._flat = _spanning(self.params)
        self._flat_state: State = {}

    def _param_states(self) -> Iterator[tuple[Parameter, State]]:
        """The (parameter, state) pairs that a step updates: each parameter with its state,
        or, for parameters stored end to end, one parameter spanning them all."""
        if self._flat is None:
            yield from zip(self.params, self.state, strict=True)
        else:
            yield self._flat, self._flat_state
            self._share_flat_state(refresh_views=False)
        self.iterations += 1

    def _share_flat_state(self, refresh_views: bool) -> None:
        """Show the shared state in each parameter's dict: views of its slice of each array."""
        start = 0
        for param, state in zip(self.params, self.state, strict=True):
            stop = start + param.data.size
            for key, value in self._flat_state.items():
                if not isinstance(value, np.ndarray):
                    state[key] = value
                elif refresh_views or key not in state:
                    state[key] = value[start:stop].reshape(param.shape)
            start = stop

    def refresh_state_views(self) -> None:
        """Make each parameter's ``state`` show its slice of the shared state again (after a
        deep copy, which copies those views as arrays of their own)."""
        if self._flat is not None:
            self._share_flat_state(refresh_views=True)

    def _gather_flat_state(self) -> None:
        """After loading per-parameter states: the shared state they make, if they agree."""
        if self._flat is None:
            return
        first = self.state[0]
        numbers = {k: v for k, v in first.items() if not isinstance(v, np.ndarray)}
        if any(set(state) != set(first) or any(state[k] != v for k, v in numbers.items())
               for state in self.state):
            self._flat = None  # states that differ (possible in a hand-made file): one by one
            return
        self._flat_state = {key: value if key in numbers
                            else np.concatenate([state[key].ravel() for state in self.state])
                            for key, value in first.items()}
        self._share_flat_state(refresh_views=True)

    @property
    def lr(self) -> float:
        """The learning rate of the next step: the number given, or the schedule's value at
        ``iterations``. Writable (e.g. by a callback between epochs) when it is a number;
        assigning a schedule replaces the number or the schedule."""
        if self._schedule is None:
            return self._lr
        return _non_negative("lr", self._schedule(self.iterations),
                             f"learning rate from {type(self._schedule).__name__} at "
                             f"iteration {self.iterations}")

    @lr.setter
    def lr(self, value: float | LearningRateSchedule) -> None:
        if isinstance(value, LearningRateSchedule):
            self._schedule = value
            return
        if self._schedule is not None:
            # Keras' message: a number would silently end the schedule
            raise TypeError("This optimizer was created with a `LearningRateSchedule` object "
                            "as its `lr` constructor argument, hence its learning rate is not "
                            "settable. If you need the learning rate to be settable, you "
                            "should instantiate the optimizer with a float `lr` argument.")
        self._lr = _non_negative("lr", value, "learning rate")

    @property
    def schedule(self) -> LearningRateSchedule | None:
        """The schedule given as ``lr``, or None when ``lr`` is a number."""
        return self._schedule

    def step(self) -> None:
        """Update every parameter from its current gradient."""
        raise NotImplementedError(  # abstract
            f"{type(self).__name__} does not implement step()")

    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero."""
        for param in self.params:
            param.zero_grad()

    def get_config(self) -> dict[str, Any]:
        """The constructor's hyper-parameters with their current values (JSON-able); a
        schedule as ``lr`` is its ``{"class_name", "config"}``, which
        :func:`minidl.optim.deserialize` and :meth:`load_state_dict` read back."""
        config = {name: getattr(self, name) for name in self._hyperparameter_names}
        if self._schedule is not None:
            config["lr"] = serialize(self._schedule)
        if "betas" in config:
            config["betas"] = list(config["betas"])
        return config

    def _init_state(self, param: Parameter) -> State:
        """The state of ``param`` before its first step (names, shapes and dtypes)."""
        raise NotImplementedError(  # abstract
            f"{type(self).__name__} does not implement _init_state()")

    def state_dict(self) -> dict[str, Any]:
        """A snapshot of the hyper-parameters and state: arrays and numbers only.

        ``{"config": get_config(), "state": [one dict per parameter], "iterations": n}``; a
        parameter that has not been stepped yet has ``{}``. Arrays are copies: later steps do
        not change them.
        """
        state = [{key: value.copy() if isinstance(value, np.ndarray) else value
                  for key, value in param_state.items()} for param_state in self.state]
        return {"config": self.get_config(), "state": state, "iterations": self.iterations}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore hyper-parameters and state saved by :meth:`state_dict`.

        Everything is checked before anything changes: the keys, the number of per-parameter
        states, every array's shape and dtype against its parameter. A problem raises a
        ValueError naming it. Training then continues exactly as it would have.
        ``iterations`` may be missing (state saved before minidl counted steps): it is then 0.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"load_state_dict: expected a dict, got {type(state_dict).__name__}")
        _check_keys("load_state_dict", state_dict, ("config", "state"), optional=("iterations",))
        iterations = _step_count("load_state_dict: 'iterations'",
                                 state_dict.get("iterations", 0))
        config = state_dict["config"]
        if not isinstance(config, Mapping):
            raise ValueError(f"load_state_dict: 'config' must be a dict, "
                             f"got {type(config).__name__}")
        _check_keys("load_state_dict: config", config, self._hyperparameter_names)
        try:
            loaded = type(self)(self.params, **with_schedule(config))
        except (TypeError, ValueError) as error:
            # Re-raised as ValueError: a bad value in a saved file is a bad file.
            raise ValueError(f"load_state_dict: config: {error}") from error
        states = state_dict["state"]
        if not isinstance(states, (list, tuple)):
            raise ValueError(f"load_state_dict: 'state' must be a list, "
                             f"got {type(states).__name__}")
        if len(states) != len(self.params):
            raise ValueError(f"load_state_dict: 'state' has {len(states)} entries but the "
                             f"optimizer has {len(self.params)} parameters")
        pairs = enumerate(zip(self.params, states, strict=True))
        new_state = [loaded._checked_state(index, param, param_state)
                     for index, (param, param_state) in pairs]
        for name in self._hyperparameter_names:
            if name != "lr":
                setattr(self, name, getattr(loaded, name))
        self._schedule = None  # the loaded lr, a number or a schedule, replaces ours
        self.lr = loaded.schedule if loaded.schedule is not None else loaded.lr
        self.iterations = iterations
        self.state = new_state
        self._gather_flat_state()

    def _checked_state(self, index: int, param: Parameter, param_state: object) -> State:
        where = f"load_state_dict: state[{index}]"
        if not isinstance(param_state, Mapping):
            raise ValueError(f"{where} must be a dict, got {type(param_state).__name__}")
        if not param_state:
            return {}
        template = self._init_state(param)
        _check_keys(where, param_state, tuple(template))
        checked: State = {}
        for key in template:
            value = param_state[key]
            if key == "step":
                checked[key] = _step_count(f"{where}['step']", value)
                continue
            if not isinstance(value, np.ndarray):
                raise ValueError(f"{where}[{key!r}] must be an array, got {type(value).__name__}")
            if value.shape != param.shape:
                raise ValueError(f"{where}[{key!r}] has shape {value.shape} but parameter "
                                 f"{index} ({param.name!r}) has shape {param.shape}")
            if value.dtype != param.dtype:
                raise ValueError(f"{where}[{key!r}] has dtype {value.dtype} but parameter "
                                 f"{index} ({param.name!r}) has dtype {param.dtype}")
            checked[key] = value.copy()  # the optimizer must not share memory with the caller
        return checked


def with_schedule(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with a serialized schedule as ``lr`` (from :meth:`Optimizer.get_config`)
    turned back into the schedule."""
    config = dict(config)
    if isinstance(config.get("lr"), Mapping):
        config["lr"] = deserialize(config["lr"])
    return config


def _check_keys(where: str, mapping: Mapping[str, Any], expected: Iterable[str],
                optional: Iterable[str] = ()) -> None:
    expected = tuple(expected)
    for key in expected:
        if key not in mapping:
            raise ValueError(f"{where} is missing key {key!r}")
    expected += tuple(optional)
    for key in mapping:
        if key not in expected:
            raise ValueError(f"{where} has unknown key {key!r}; "
                             f"expected {', '.join(map(repr, expected))}")


def _step_count(where: str, value: object) -> int:
    # An .npz gives a step count back as a 0-d integer array.
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{where} must be an integer, got {type(value).__name__}: {value!r}")
    if value < 0:
        raise ValueError(f"{where} must be >= 0, got {value}")
    return int(value)
