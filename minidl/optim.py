r"""Optimizers with PyTorch's update rules, and learning-rate schedules.

Every optimizer reads ``p.grad`` and updates ``p.data`` in place for each :class:`Parameter`
it was given, so the layers holding those parameters see the new values. The arithmetic
follows PyTorch's single-tensor ("for-loop") implementation of ``torch.optim`` operation by
operation, so the same gradients give the same parameters up to floating-point rounding.

Notation in the docstrings: :math:`\theta` the parameter, :math:`g_t` its gradient at step
:math:`t = 1, 2, \dots` (negated first when ``maximize=True``), :math:`\gamma` the learning
rate ``lr``, :math:`\lambda` the ``weight_decay``. State starts at zero unless said.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from typing import Any

import numpy as np

from minidl.parameter import Parameter
from minidl.registry import Configurable, class_and_config, to_spec

__all__ = [
    "OPTIMIZERS", "SGD", "Adagrad", "Adam", "AdamW", "CosineDecay", "ExponentialDecay",
    "Optimizer", "RMSprop", "StepDecay", "deserialize", "get", "serialize",
]

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


def _end_to_end(params: list[Parameter]) -> Parameter | None:
    """One Parameter spanning ``params`` if their data, and their gradients, are consecutive
    pieces of one 1-D buffer each, in order; None otherwise."""
    spans = []
    for arrays in ([p.data for p in params], [p.grad for p in params]):
        buffer = arrays[0].base
        if (buffer is None or buffer.ndim != 1 or not buffer.flags.c_contiguous
                or sum(a.size for a in arrays) != buffer.size):
            return None
        address = buffer.__array_interface__["data"][0]
        for array in arrays:
            if (array.base is not buffer or array.dtype != buffer.dtype
                    or not array.flags.c_contiguous
                    or array.__array_interface__["data"][0] != address):
                return None
            address += array.nbytes
        spans.append(buffer)
    flat = Parameter(spans[0], name="all parameters")
    flat.grad = spans[1]
    return flat


class Optimizer:
    """Base class: the parameters, their hyper-parameters and their per-parameter state.

    Subclasses pass their validated hyper-parameters to ``__init__`` (they become attributes
    and the content of :meth:`get_config`), implement :meth:`step` over
    :meth:`_param_states`, and describe the state of one parameter in :meth:`_init_state`
    (which :meth:`load_state_dict` checks against).

    Every rule here works element by element. So when the parameters lie end to end in one
    buffer (``Sequential`` stores its parameters and gradients that way) the optimizer
    updates that whole buffer at once: the same arithmetic for every element, in a handful of
    NumPy calls instead of a handful per parameter, which is most of a small model's step.
    ``state`` still shows one dict per parameter (views into the shared state).
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
        for name, value in hyperparameters.items():
            setattr(self, name, value)
        # One dict per parameter, in params order; {} until the parameter's first step.
        self.state: list[State] = [{} for _ in self.params]
        self._flat = _end_to_end(self.params)
        self._flat_state: State = {}

    def _param_states(self) -> Iterator[tuple[Parameter, State]]:
        """The (parameter, state) pairs that a step updates: each parameter with its state,
        or, for parameters stored end to end, one parameter spanning them all."""
        if self._flat is None:
            yield from zip(self.params, self.state, strict=True)
            return
        yield self._flat, self._flat_state
        self._share_flat_state(refresh_views=False)

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
        """The learning rate; writable, e.g. by a schedule between epochs."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = _non_negative("lr", value, "learning rate")

    def step(self) -> None:
        """Update every parameter from its current gradient."""
        raise NotImplementedError(  # abstract
            f"{type(self).__name__} does not implement step()")

    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero."""
        for param in self.params:
            param.zero_grad()

    def get_config(self) -> dict[str, Any]:
        """The constructor's hyper-parameters with their current values (JSON-able)."""
        config = {name: getattr(self, name) for name in self._hyperparameter_names}
        if "betas" in config:
            config["betas"] = list(config["betas"])
        return config

    def _init_state(self, param: Parameter) -> State:
        """The state of ``param`` before its first step (names, shapes and dtypes)."""
        raise NotImplementedError(  # abstract
            f"{type(self).__name__} does not implement _init_state()")

    def state_dict(self) -> dict[str, Any]:
        """A snapshot of the hyper-parameters and state: arrays and numbers only.

        ``{"config": get_config(), "state": [one dict per parameter]}``; a parameter that has
        not been stepped yet has ``{}``. Arrays are copies: later steps do not change them.
        """
        state = [{key: value.copy() if isinstance(value, np.ndarray) else value
                  for key, value in param_state.items()} for param_state in self.state]
        return {"config": self.get_config(), "state": state}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore hyper-parameters and state saved by :meth:`state_dict`.

        Everything is checked before anything changes: the keys, the number of per-parameter
        states, every array's shape and dtype against its parameter. A problem raises a
        ValueError naming it. Training then continues exactly as it would have.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"load_state_dict: expected a dict, got {type(state_dict).__name__}")
        _check_keys("load_state_dict", state_dict, ("config", "state"))
        config = state_dict["config"]
        if not isinstance(config, Mapping):
            raise ValueError(f"load_state_dict: 'config' must be a dict, "
                             f"got {type(config).__name__}")
        _check_keys("load_state_dict: config", config, self._hyperparameter_names)
        try:
            loaded = type(self)(self.params, **config)
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
            setattr(self, name, getattr(loaded, name))
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


def _check_keys(where: str, mapping: Mapping[str, Any], expected: Iterable[str]) -> None:
    expected = tuple(expected)
    for key in expected:
        if key not in mapping:
            raise ValueError(f"{where} is missing key {key!r}")
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


class SGD(Optimizer):
    r"""Stochastic gradient descent, with optional (Nesterov) momentum :math:`\mu`.

    .. math::
        g_t \leftarrow g_t + \lambda\theta_{t-1}, \qquad
        b_t = \begin{cases} g_t & t = 1 \\ \mu b_{t-1} + (1-\tau) g_t & t > 1 \end{cases},
        \qquad
        \theta_t = \theta_{t-1} - \gamma \begin{cases}
            g_t + \mu b_t & \text{nesterov} \\ b_t & \mu \ne 0 \\ g_t & \mu = 0 \end{cases}

    :math:`\tau` is the ``dampening``. Nesterov momentum needs :math:`\mu > 0` and
    :math:`\tau = 0`. Unlike PyTorch (0.001), the default ``lr`` is 0.01, Keras' default.
    """

    def __init__(self, params: Iterable[Parameter], lr: float = 0.01, momentum: float = 0.0,
                 dampening: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0,
                 maximize: bool = False) -> None:
        momentum = _non_negative("momentum", momentum, "momentum value")
        dampening = _non_negative("dampening", dampening, "dampening value")
        nesterov = _flag("nesterov", nesterov)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening,
                         nesterov=nesterov,
                         weight_decay=_non_negative("weight_decay", weight_decay,
                                                    "weight_decay value"),
                         maximize=_flag("maximize", maximize))

    def _init_state(self, param: Parameter) -> State:
        # PyTorch's SGD keeps no step count: the momentum buffer's absence marks step 1.
        return {"momentum_buffer": np.zeros_like(param.data)} if self.momentum != 0 else {}

    def step(self) -> None:
        lr, momentum, dampening = self.lr, self.momentum, self.dampening
        for param, state in self._param_states():
            grad = -param.grad if self.maximize else param.grad
            if self.weight_decay != 0:
                grad = grad + self.weight_decay * param.data
            if momentum != 0:
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = grad.copy()
                else:
                    buf *= momentum
                    buf += (1 - dampening) * grad
                grad = grad + momentum * buf if self.nesterov else buf
            param.data -= lr * grad


class Adagrad(Optimizer):
    r"""Adagrad: per-coordinate steps that shrink with the squared gradients seen so far.

    .. math::
        \gamma_t = \frac{\gamma}{1 + (t-1)\eta}, \quad
        g_t \leftarrow g_t + \lambda\theta_{t-1}, \quad
        s_t = s_{t-1} + g_t^2, \quad
        \theta_t = \theta_{t-1} - \frac{\gamma_t g_t}{\sqrt{s_t} + \epsilon}

    :math:`\eta` is ``lr_decay``; the sum starts at :math:`s_0` = ``initial_accumulator_value``.
    """

    def __init__(self, params: Iterable[Parameter], lr: float = 0.01, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10, maximize: bool = False) -> None:
        super().__init__(
            params, lr=lr,
            lr_decay=_non_negative("lr_decay", lr_decay, "lr_decay value"),
            weight_decay=_non_negative("weight_decay", weight_decay, "weight_decay value"),
            initial_accumulator_value=_non_negative(
                "initial_accumulator_value", initial_accumulator_value,
                "initial_accumulator_value value"),
            eps=_non_negative("eps", eps, "epsilon value"),
            maximize=_flag("maximize", maximize))

    def _init_state(self, param: Parameter) -> State:
        return {"step": 0, "sum": np.full_like(param.data, self.initial_accumulator_value)}

    def step(self) -> None:
        for param, state in self._param_states():
            if not state:
                state.update(self._init_state(param))
            state["step"] += 1
            grad = -param.grad if self.maximize else param.grad
            if self.weight_decay != 0:
                grad = grad + self.weight_decay * param.data
            step_lr = self.lr / (1 + (state["step"] - 1) * self.lr_decay)
            state["sum"] += grad * grad
            denom = np.sqrt(state["sum"])
            denom += self.eps
            # Reuse denom's memory for the update: one array less per step.
            param.data -= np.divide(step_lr * grad, denom, out=denom)


class Adam(Optimizer):
    r"""Adam: steps along a running mean of the gradients, scaled by their running RMS.

    .. math::
        g_t \leftarrow g_t + \lambda\theta_{t-1}, \quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,

        \hat v_t = \max(\hat v_{t-1}, v_t) \text{ if amsgrad else } v_t, \quad
        \theta_t = \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\,
            \frac{m_t}{\sqrt{\hat v_t} / \sqrt{1-\beta_2^t} + \epsilon}

    The bias corrections :math:`1-\beta^t` undo the pull of the zero initial state towards 0.
    """

    _decoupled_weight_decay = False

    def __init__(self, params: Iterable[Parameter], lr: float = 0.001,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False,
                 maximize: bool = False) -> None:
        super().__init__(
            params, lr=lr, betas=_betas(betas), eps=_non_negative("eps", eps, "epsilon value"),
            weight_decay=_non_negative("weight_decay", weight_decay, "weight_decay value"),
            amsgrad=_flag("amsgrad", amsgrad), maximize=_flag("maximize", maximize))

    def _init_state(self, param: Parameter) -> State:
        state = {"step": 0, "exp_avg": np.zeros_like(param.data),
                 "exp_avg_sq": np.zeros_like(param.data)}
        if self.amsgrad:
            state["max_exp_avg_sq"] = np.zeros_like(param.data)
        return state

    def step(self) -> None:
        lr, weight_decay = self.lr, self.weight_decay
        beta1, beta2 = self.betas
        for param, state in self._param_states():
            if not state:
                state.update(self._init_state(param))
            state["step"] += 1
            grad = -param.grad if self.maximize else param.grad
            if weight_decay != 0:
                if self._decoupled_weight_decay:
                    param.data *= 1 - lr * weight_decay
                else:
                    grad = grad + weight_decay * param.data
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            exp_avg *= beta1
            exp_avg += (1 - beta1) * grad
            exp_avg_sq *= beta2
            exp_avg_sq += (1 - beta2) * grad * grad
            if self.amsgrad:
                second_moment = np.maximum(state["max_exp_avg_sq"], exp_avg_sq,
                                           out=state["max_exp_avg_sq"])
            else:
                second_moment = exp_avg_sq
            step_size = lr / (1 - beta1 ** state["step"])
            denom = np.sqrt(second_moment)
            denom /= math.sqrt(1 - beta2 ** state["step"])
            denom += self.eps
            # Reuse denom's memory for the update: one array less per step.
            param.data -= np.divide(step_size * exp_avg, denom, out=denom)


class AdamW(Adam):
    r"""AdamW: Adam with decoupled weight decay, which shrinks the weights directly.

    .. math::
        \theta_{t-1} \leftarrow \theta_{t-1} (1 - \gamma\lambda)

    then :class:`Adam`'s update with :math:`\lambda = 0`: the decay is not added to the
    gradient, so it is not rescaled by :math:`1/\sqrt{\hat v_t}`.
    """

    _decoupled_weight_decay = True

    def __init__(self, params: Iterable[Parameter], lr: float = 0.001,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, amsgrad: bool = False,
                 maximize: bool = False) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize)


class RMSprop(Optimizer):
    r"""RMSprop: steps divided by a running RMS of the gradients.

    .. math::
        g_t \leftarrow g_t + \lambda\theta_{t-1}, \quad
        v_t = \alpha v_{t-1} + (1-\alpha) g_t^2, \quad
        \bar g_t = \alpha \bar g_{t-1} + (1-\alpha) g_t, \quad
        \tilde v_t = \begin{cases} v_t - \bar g_t^2 & \text{centered} \\
                                   v_t & \text{otherwise} \end{cases},

        b_t = \mu b_{t-1} + \frac{g_t}{\sqrt{\tilde v_t} + \epsilon}, \quad
        \theta_t = \theta_{t-1} - \gamma b_t \quad (\mu > 0), \qquad
        \theta_t = \theta_{t-1} - \frac{\gamma g_t}{\sqrt{\tilde v_t} + \epsilon} \quad (\mu = 0)

    Centered, :math:`v_t - \bar g_t^2` is a variance and cannot be negative; rounding can
    still make it a hair below zero (a gradient constant for thousands of steps), where
    PyTorch would produce NaN: it is clipped at 0 instead.
    """

    def __init__(self, params: Iterable[Parameter], lr: float = 0.01, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum: float = 0.0,
                 centered: bool = False, maximize: bool = False) -> None:
        super().__init__(
            params, lr=lr, alpha=_non_negative("alpha", alpha, "alpha value"),
            eps=_non_negative("eps", eps, "epsilon value"),
            weight_decay=_non_negative("weight_decay", weight_decay, "weight_decay value"),
            momentum=_non_negative("momentum", momentum, "momentum value"),
            centered=_flag("centered", centered), maximize=_flag("maximize", maximize))

    def _init_state(self, param: Parameter) -> State:
        state = {"step": 0, "square_avg": np.zeros_like(param.data)}
        if self.momentum > 0:
            state["momentum_buffer"] = np.zeros_like(param.data)
        if self.centered:
            state["grad_avg"] = np.zeros_like(param.data)
        return state

    def step(self) -> None:
        lr, alpha = self.lr, self.alpha
        for param, state in self._param_states():
            if not state:
                state.update(self._init_state(param))
            state["step"] += 1
            grad = -param.grad if self.maximize else param.grad
            if self.weight_decay != 0:
                grad = grad + self.weight_decay * param.data
            square_avg = state["square_avg"]
            square_avg *= alpha
            square_avg += (1 - alpha) * grad * grad
            if self.centered:
                grad_avg = state["grad_avg"]
                grad_avg *= alpha
                grad_avg += (1 - alpha) * grad
                denom = square_avg - grad_avg * grad_avg
                np.maximum(denom, 0.0, out=denom)
                np.sqrt(denom, out=denom)
            else:
                denom = np.sqrt(square_avg)
            denom += self.eps
            if self.momentum > 0:
                buf = state["momentum_buffer"]
                buf *= self.momentum
                buf += grad / denom
                param.data -= lr * buf
            else:
                # Reuse denom's memory for the update: one array less per step.
                param.data -= np.divide(lr * grad, denom, out=denom)


OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.__name__: cls for cls in (SGD, Adagrad, Adam, AdamW, RMSprop)}

_BY_NAME: dict[str, Callable[[Iterable[Parameter]], Optimizer]] = {
    "sgd": SGD,
    "momentum": partial(SGD, momentum=0.9),
    "adagrad": Adagrad,
    "adam": Adam,
    "adamw": AdamW,
    "rmsprop": RMSprop,
}


def get(name_or_optimizer: str | Optimizer, params: Iterable[Parameter]) -> Optimizer:
    """An optimizer over ``params``: built with defaults from a name, or passed through.

    Names: "sgd", "momentum" (SGD with momentum=0.9), "adagrad", "adam", "adamw", "rmsprop".
    An :class:`Optimizer` is returned as it is, after checking it holds exactly ``params``.
    """
    params = list(params)
    if isinstance(name_or_optimizer, Optimizer):
        if {id(p) for p in name_or_optimizer.params} != {id(p) for p in params}:
            raise ValueError(f"the {type(name_or_optimizer).__name__} optimizer was created "
                             f"for other parameters than the ones it is asked to train")
        return name_or_optimizer
    if not isinstance(name_or_optimizer, str):
        raise TypeError(f"optimizer must be a name or an Optimizer, "
                        f"got {type(name_or_optimizer).__name__}")
    if name_or_optimizer not in _BY_NAME:
        raise ValueError(f"Unknown optimizer {name_or_optimizer!r}; "
                         f"known: {', '.join(map(repr, _BY_NAME))}")
    return _BY_NAME[name_or_optimizer](params)


def serialize(optimizer: Optimizer) -> dict[str, Any]:
    """``{"class_name": ..., "config": ...}``: what :func:`deserialize` rebuilds it from."""
    return to_spec(optimizer, OPTIMIZERS, "minidl.optim.OPTIMIZERS")


def deserialize(spec: Mapping[str, Any], params: Iterable[Parameter]) -> Optimizer:
    """The optimizer that ``spec`` (from :func:`serialize`) describes, over ``params``.

    Only classes in :data:`OPTIMIZERS` are built; config keys missing from ``spec`` take the
    constructor's defaults, unknown ones raise a ValueError.
    """
    cls, config = class_and_config(spec, OPTIMIZERS, "optimizer")
    accepted = [name for name in inspect.signature(cls).parameters if name != "params"]
    for key in config:
        if key not in accepted:
            raise ValueError(f"deserialize: {cls.__name__} has no argument {key!r}; "
                             f"expected {', '.join(map(repr, accepted))}")
    return cls(params, **config)


class StepDecay(Configurable):
    r"""The learning rate multiplied by ``gamma`` every ``step_size`` epochs (PyTorch's StepLR).

    .. math::
        \gamma_e = \gamma_0 \cdot \text{gamma}^{\lfloor e / \text{step\_size} \rfloor}
    """

    def __init__(self, initial_lr: float, step_size: int, gamma: float = 0.1) -> None:
        self.initial_lr = _non_negative("initial_lr", initial_lr, "initial learning rate")
        self.step_size = _whole_number("step_size", step_size, minimum=1)
        self.gamma = _non_negative("gamma", gamma, "gamma value")

    def __call__(self, epoch: int, lr: float | None = None) -> float:
        """The learning rate for ``epoch`` (from 0); the current ``lr`` is not needed."""
        return self.initial_lr * self.gamma ** (_epoch(epoch) // self.step_size)



class ExponentialDecay(Configurable):
    r"""The learning rate multiplied by ``gamma`` every epoch (PyTorch's ExponentialLR).

    .. math::
        \gamma_e = \gamma_0 \cdot \text{gamma}^{e}
    """

    def __init__(self, initial_lr: float, gamma: float) -> None:
        self.initial_lr = _non_negative("initial_lr", initial_lr, "initial learning rate")
        self.gamma = _non_negative("gamma", gamma, "gamma value")

    def __call__(self, epoch: int, lr: float | None = None) -> float:
        """The learning rate for ``epoch`` (from 0); the current ``lr`` is not needed."""
        return self.initial_lr * self.gamma ** _epoch(epoch)



class CosineDecay(Configurable):
    r"""Half a cosine from ``initial_lr`` down to ``eta_min`` over ``T_max`` epochs.

    PyTorch's CosineAnnealingLR in closed form:

    .. math::
        \gamma_e = \eta_{min} + (\gamma_0 - \eta_{min})
            \frac{1 + \cos(\pi e / T_{max})}{2}

    Past ``T_max`` the formula carries on, so the rate climbs back up (as in PyTorch).
    """

    def __init__(self, initial_lr: float, T_max: int, eta_min: float = 0.0) -> None:
        self.initial_lr = _non_negative("initial_lr", initial_lr, "initial learning rate")
        self.T_max = _whole_number("T_max", T_max, minimum=1)
        self.eta_min = _non_negative("eta_min", eta_min, "eta_min value")

    def __call__(self, epoch: int, lr: float | None = None) -> float:
        """The learning rate for ``epoch`` (from 0); the current ``lr`` is not needed."""
        cosine = math.cos(math.pi * _epoch(epoch) / self.T_max)
        return self.eta_min + (self.initial_lr - self.eta_min) * (1 + cosine) / 2



def _whole_number(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _epoch(epoch: int) -> int:
    return _whole_number("epoch", epoch, minimum=0)
