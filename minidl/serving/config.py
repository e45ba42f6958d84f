"""Model configuration: which models to serve, where they live, which versions to load.

``--model_config_file`` accepts TensorFlow Serving's text form::

    model_config_list {
      config {
        name: "digits"
        base_path: "/models/digits"
        model_platform: "tensorflow"          # accepted and ignored
        model_version_policy { latest { num_versions: 2 } }   # or all {} / specific { versions: 3 }
        version_labels { key: "stable" value: 3 }
      }
      config { name: "moons" base_path: "/models/moons" }
    }

and the same as JSON: ``{"model_config_list": {"config": [{...}, ...]}}``, or just the list
of ``config`` objects. In JSON, ``version_labels`` may also be a ``{"stable": 3}`` object.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from minidl.io import remote

DEFAULT_MODEL_NAME = "default"

_KNOWN_FIELDS = ("name", "base_path", "model_platform", "model_version_policy", "version_labels")


class ConfigError(ValueError):
    """A model config that cannot be used; the message says where and why."""


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions on disk to serve: TF Serving's ``latest``, ``all`` or ``specific``."""

    kind: str = "latest"
    num_versions: int = 1
    versions: frozenset[int] = frozenset()

    def choose(self, candidates: list[int]) -> list[int]:
        """The versions to serve among ``candidates`` (versions on disk that have not failed)."""
        ordered = sorted(candidates, reverse=True)
        if self.kind == "latest":
            return ordered[:self.num_versions]
        if self.kind == "all":
            return ordered
        return [v for v in ordered if v in self.versions]


@dataclass(frozen=True)
class ModelConfig:
    """One served model: its name in URLs, its base path (a folder, made absolute, or an
    fsspec URL such as ``s3://bucket/models/m``), its version policy and labels."""

    name: str
    base_path: str
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    version_labels: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"model name must be a non-empty string, got {self.name!r}")
        if "/" in self.name or ":" in self.name:
            raise ConfigError(f"model name {self.name!r} must not contain '/' or ':' "
                              "(they separate the parts of the URL)")
        if not isinstance(self.base_path, str) or not self.base_path:
            raise ConfigError(f"model {self.name!r}: base_path must be a non-empty string")
        if not remote.is_remote(self.base_path):  # a URL (s3://bucket/m) stays as given
            object.__setattr__(self, "base_path",
                               os.path.abspath(remote.local_path(self.base_path)))


# ---------------------------------------------------------------- protobuf text format

_TOKEN = re.compile(r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[{}<>:;,\[\]])
""", re.VERBOSE)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0"}


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def _tokens(text: str) -> list[tuple[str, str, int]]:
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            line = text.count("\n", 0, position) + 1
            raise ConfigError(f"model config: unexpected character {text[position]!r} "
                              f"on line {line}")
        kind = match.lastgroup or ""
        if kind != "space":
            line = text.count("\n", 0, position) + 1
            tokens.append((kind, match.group(), line))
        position = match.end()
    return tokens


def parse_text_proto(text: str) -> dict[str, list[Any]]:
    """Parse protobuf text format into ``{field: [values...]}`` (every field as repeated).

    Messages become nested dicts of the same shape; strings are unquoted, numbers become int
    or float, bare identifiers (enum values, ``true``) stay strings.
    """
    tokens = _tokens(text)
    position = 0

    def parse_message(closing: str | None) -> dict[str, list[Any]]:
        nonlocal position
        message: dict[str, list[Any]] = {}
        while True:
            if position >= len(tokens):
                if closing is None:
                    return message
                raise ConfigError(f"model config: missing {closing!r} at the end of the file")
            kind, value, line = tokens[position]
            if closing is not None and value == closing and kind == "punct":
                position += 1
                return message
            if kind != "ident":
                raise ConfigError(f"model config: expected a field name on line {line}, "
                                  f"found {value!r}")
            position += 1
            if position >= len(tokens):
                raise ConfigError(f"model config: field {value!r} on line {line} has no value")
            separator = tokens[position][1]
            if separator == ":":
                position += 1
                if position >= len(tokens):
                    raise ConfigError(f"model config: field {value!r} on line {line} "
                                      "has no value")
            kind_v, text_v, line_v = tokens[position]
            if kind_v == "punct" and text_v in "{<":
                position += 1
                item: Any = parse_message("}" if text_v == "{" else ">")
            elif separator != ":":
                raise ConfigError(f"model config: expected ':' or '{{' after {value!r} "
                                  f"on line {line}")
            elif kind_v == "string":
                position += 1
                item = _unquote(text_v)
                # adjacent string literals concatenate, as in C and protobuf
                while position < len(tokens) and tokens[position][0] == "string":
                    item += _unquote(tokens[position][1])
                    position += 1
            elif kind_v == "number":
                position += 1
                is_float = any(c in text_v for c in ".eE")
                item = float(text_v) if is_float else int(text_v)
            elif kind_v == "ident":
                position += 1
                item = text_v
            else:
                raise ConfigError(f"model config: unexpected {text_v!r} on line {line_v}")
            message.setdefault(value, []).append(item)
            if position < len(tokens) and tokens[position][1] in (";", ","):
                position += 1

    return parse_message(None)


# ---------------------------------------------------------------- building ModelConfig

def _single(message: dict[str, Any], key: str, where: str) -> Any:
    value = message.get(key)
    if isinstance(value, list):
        if len(value) != 1:
            raise ConfigError(f"{where}: field {key!r} is given {len(value)} times")
        return value[0]
    return value


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _version_number(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"{where}: version must be an integer, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{where}: version must be an integer, got {value!r}") from None
    if number < 0:
        raise ConfigError(f"{where}: version must be >= 0, got {number}")
    return number


def _policy(spec: Any, where: str) -> VersionPolicy:
    if spec is None:
        return VersionPolicy()
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(f"{where}: model_version_policy must hold exactly one of "
                          "'latest', 'all', 'specific'")
    (kind, body), = spec.items()
    body = _single(spec, kind, where) or {}
    if not isinstance(body, dict):
        raise ConfigError(f"{where}: model_version_policy.{kind} must be a message/object")
    if kind == "latest":
        num = _single(body, "num_versions", where)
        num_versions = 1 if num is None else _version_number(num, where + ".num_versions")
        if num_versions < 1:
            raise ConfigError(f"{where}: latest.num_versions must be >= 1, got {num_versions}")
        return VersionPolicy("latest", num_versions)
    if kind == "all":
        return VersionPolicy("all")
    if kind == "specific":
        versions = frozenset(_version_number(v, where + ".specific.versions")
                             for v in _as_list(body.get("versions")))
        if not versions:
            raise ConfigError(f"{where}: specific policy lists no versions")
        return VersionPolicy("specific", versions=versions)
    raise ConfigError(f"{where}: unknown model_version_policy {kind!r} "
                      "(known: 'latest', 'all', 'specific')")


def _labels(spec: Any, where: str) -> dict[str, int]:
    if isinstance(spec, dict) and "key" not in spec:
        pairs = list(spec.items())
    else:
        pairs = []
        for entry in _as_list(spec):
            if not isinstance(entry, dict):
                raise ConfigError(f"{where}: version_labels entries need 'key' and 'value'")
            pairs.append((_single(entry, "key", where), _single(entry, "value", where)))
    labels = {}
    for key, value in pairs:
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{where}: version label must be a non-empty string, got {key!r}")
        labels[key] = _version_number(value, f"{where}: label {key!r}")
    return labels


def _model_config(entry: Any, where: str) -> ModelConfig:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a config message/object, got {entry!r}")
    unknown = sorted(set(entry) - set(_KNOWN_FIELDS))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)} "
                          f"(known: {', '.join(_KNOWN_FIELDS)})")
    name = _single(entry, "name", where)
    base_path = _single(entry, "base_path", where)
    if name is None or base_path is None:
        raise ConfigError(f"{where}: 'name' and 'base_path' are required")
    where = f"{where} ({name})"
    return ModelConfig(name=name, base_path=base_path,
                       version_policy=_policy(_single(entry, "model_version_policy", where),
                                              where),
                       version_labels=_labels(entry.get("version_labels"), where))


def model_configs_from_data(data: Any) -> list[ModelConfig]:
    """Build model configs from parsed data (JSON value, or text proto as repeated fields)."""
    entries: Any = data
    if isinstance(data, dict):
        if set(data) != {"model_config_list"}:
            raise ConfigError("model config: the top level must be 'model_config_list' "
                              f"(found {', '.join(sorted(data)) or 'nothing'})")
        config_list = _single(data, "model_config_list", "model config") or {}
        if not isinstance(config_list, dict) or set(config_list) - {"config"}:
            raise ConfigError("model config: model_config_list must hold only 'config' entries")
        entries = _as_list(config_list.get("config"))
    if not isinstance(entries, list):
        raise ConfigError("model config: expected model_config_list or a list of configs")
    configs = [_model_config(entry, f"model config entry {i}") for i, entry in enumerate(entries)]
    if not configs:
        raise ConfigError("model config: no model is configured")
    names = [c.name for c in configs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"model config: model name(s) configured twice: {', '.join(duplicates)}")
    return configs


def parse_model_config(text: str) -> list[ModelConfig]:
    """Parse a model config file's text: JSON if it starts with ``{`` or ``[``, else text proto."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            data = json.loads(text)
        except ValueError as error:
            raise ConfigError(f"model config: invalid JSON: {error}") from None
    else:
        data = parse_text_proto(text)
    return model_configs_from_data(data)


def load_model_config_file(path: str) -> list[ModelConfig]:
    """Read and parse ``--model_config_file``; relative base paths are taken from the cwd."""
    with open(path, encoding="utf-8") as file:
        text = file.read()
    try:
        return parse_model_config(text)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def read_api_keys(path: str) -> list[str]:
    """API keys from ``--api_key_file``: one per line; blank lines and ``#`` comments skipped."""
    with open(path, encoding="utf-8") as file:
        keys = [line.strip() for line in file]
    keys = [key for key in keys if key and not key.startswith("#")]
    if not keys:
        raise ConfigError(f"{path}: the API key file holds no key (one key per line)")
    return keys
