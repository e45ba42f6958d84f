"""Objects as data: ``{"class_name": ..., "config": {...}}`` and back, through a registry.

Layers, losses, penalties and optimizers are stored in model files as a class name plus the
constructor's arguments. Reading them back looks the name up in the module's own registry
(a dict from class name to class) and never imports anything by name, so a model file can
only ever build the classes minidl lists.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any


def to_spec(obj: Any, registry: Mapping[str, type], registry_name: str) -> dict[str, Any]:
    """``{"class_name": ..., "config": obj.get_config()}``, for a class in ``registry``."""
    class_name = type(obj).__name__
    if registry.get(class_name) is not type(obj):
        raise ValueError(f"serialize: {class_name} is not in {registry_name}, so it could not "
                         f"be loaded back; register it there first")
    return {"class_name": class_name, "config": obj.get_config()}


def class_and_config(spec: Any, registry: Mapping[str, type],
                     kind: str) -> tuple[type, dict[str, Any]]:
    """The registered class that ``spec`` names and its config, after checking the shape."""
    if not isinstance(spec, Mapping):
        raise TypeError(f"deserialize: a {kind} spec must be a {{'class_name', 'config'}} "
                        f"dict, got {type(spec).__name__}")
    if set(spec) != {"class_name", "config"}:
        raise ValueError(f"deserialize: a {kind} spec must have exactly the keys 'class_name' "
                         f"and 'config', got {sorted(spec)}")
    class_name, config = spec["class_name"], spec["config"]
    if not isinstance(class_name, str) or class_name not in registry:
        raise ValueError(f"deserialize: unknown {kind} {class_name!r}; "
                         f"known: {', '.join(registry)}")
    if not isinstance(config, Mapping):
        raise TypeError(f"deserialize: the config of {class_name} must be a dict, "
                        f"got {type(config).__name__}")
    return registry[class_name], dict(config)


def resolve(identifier: Any, base: type, names: Mapping[str, Any],
            registry: Mapping[str, type], deserialize: Any, kind: str) -> Any:
    """What Keras' ``get`` functions return for ``identifier``: None stays None, an instance
    of ``base`` is returned as is, a subclass of ``base`` is instantiated, a ``{"class_name",
    "config"}`` dict is deserialized, and a name (in ``names``, or a class name in
    ``registry``) gives a new object with default arguments."""
    if identifier is None or isinstance(identifier, base):
        return identifier
    if isinstance(identifier, Mapping):
        return deserialize(identifier)
    if inspect.isclass(identifier) and issubclass(identifier, base):
        return identifier()
    if not isinstance(identifier, str):
        raise TypeError(f"get: expected a {kind} name, a {base.__name__}, a {base.__name__} "
                        f"class, a config dict or None, got {type(identifier).__name__}")
    make = names.get(identifier) or registry.get(identifier)
    if make is None:
        raise ValueError(f"get: unknown {kind} {identifier!r}; "
                         f"known: {', '.join(names)}, {', '.join(registry)}")
    return make()


class Configurable:
    """Config as data for classes that keep each constructor argument under its own name:
    ``get_config`` reads them back, ``from_config`` calls the constructor with them."""

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, JSON-able."""
        names = inspect.signature(type(self).__init__).parameters
        return {name: getattr(self, name) for name in names if name != "self"}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        """The object that ``get_config`` described."""
        expected = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = set(config) - expected
        if unknown:
            raise ValueError(f"{cls.__name__}.from_config: unknown key(s) {sorted(unknown)}; "
                             f"expected {sorted(expected)}")
        return cls(**config)

    def __repr__(self) -> str:
        arguments = ", ".join(f"{name}={value!r}" for name, value in self.get_config().items())
        return f"{type(self).__name__}({arguments})"
