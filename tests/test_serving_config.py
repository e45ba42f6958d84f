"""Model config files (TF Serving text proto and JSON) and API key files."""

import json
import os

import pytest

from minidl.serving.config import (
    ConfigError,
    ModelConfig,
    VersionPolicy,
    load_model_config_file,
    parse_model_config,
    parse_text_proto,
    read_api_keys,
)

TEXT_CONFIG = """
# two models; the platform field is TF Serving's and is ignored
model_config_list {
  config {
    name: "digits"
    base_path: "/models/digits"
    model_platform: "tensorflow"
    model_version_policy { latest { num_versions: 2 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
  config: < name: 'moons' base_path: "/models/moons" model_version_policy { all {} } >
  config {
    name: "spirals", base_path: "/models/sp" "irals";
    model_version_policy { specific { versions: 3 versions: 5 } }
  }
}
"""


def test_text_proto_with_several_models_policies_and_labels():
    digits, moons, spirals = parse_model_config(TEXT_CONFIG)
    assert (digits.name, digits.base_path) == ("digits", "/models/digits")
    assert digits.version_policy == VersionPolicy("latest", 2)
    assert digits.version_labels == {"stable": 1, "canary": 2}
    assert moons.version_policy == VersionPolicy("all")
    assert spirals.base_path == "/models/spirals"  # adjacent strings concatenate
    assert spirals.version_policy == VersionPolicy("specific", versions=frozenset({3, 5}))


def test_json_forms_match_the_text_form():
    entries = [{"name": "digits", "base_path": "/models/digits", "model_platform": "tf",
                "model_version_policy": {"latest": {"num_versions": 2}},
                "version_labels": {"stable": 1, "canary": "2"}}]
    from_object = parse_model_config(json.dumps({"model_config_list": {"config": entries}}))
    from_list = parse_model_config(json.dumps(entries))
    from_text = parse_model_config(TEXT_CONFIG)[:1]
    assert from_object == from_list == from_text


def test_version_policy_choices():
    on_disk = [1, 7, 3, 12]
    assert VersionPolicy().choose(on_disk) == [12]
    assert VersionPolicy("latest", 2).choose(on_disk) == [12, 7]
    assert VersionPolicy("all").choose(on_disk) == [12, 7, 3, 1]
    assert VersionPolicy("specific", versions=frozenset({3, 4})).choose(on_disk) == [3]


def test_relative_base_path_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models.config").write_text('model_config_list { config { name: "m" '
                                            'base_path: "models/m" } }')
    (config,) = load_model_config_file("models.config")
    assert config.base_path == os.path.join(str(tmp_path), "models", "m")


@pytest.mark.parametrize("text, message", [
    ('model_config_list { config { name: "m" base_path: "/p" colour: "red" } }',
     "unknown field(s) colour (known: name, base_path"),
    ('model_config_list { config { name: "m" } }', "'name' and 'base_path' are required"),
    ('model_config_list { config { name: "m" base_path: "/p" } config { name: "m" '
     'base_path: "/q" } }', "configured twice: m"),
    ('model_config_list { config { name: "m" base_path: "/p" }', "missing '}'"),
    ('model_config_list { config { name: "m" base_path: "/p" } } }', "expected a field name"),
    ('model_config_list { config { name: "a/b" base_path: "/p" } }', "must not contain '/'"),
    ('model_config_list { config { name: "m" base_path: "/p" '
     "model_version_policy { newest {} } } }", "unknown model_version_policy 'newest'"),
    ('model_config_list { config { name: "m" base_path: "/p" '
     "model_version_policy { latest { num_versions: 0 } } } }", "num_versions must be >= 1"),
    ('model_config_list { config { name: "m" base_path: "/p" '
     'version_labels { key: "x" value: "one" } } }', "version must be an integer"),
    ("model_config_list { config { name: @ } }", "unexpected character '@' on line 1"),
    ("model_config_list { }", "no model is configured"),
    ('{"models": []}', "the top level must be 'model_config_list'"),
    ('{"model_config_list": ', "invalid JSON"),
    ("[42]", "expected a config message/object"),
])
def test_bad_config_names_the_problem(text, message):
    with pytest.raises(ConfigError) as info:
        parse_model_config(text)
    assert message in str(info.value)


def test_config_error_names_the_file(tmp_path):
    path = tmp_path / "bad.config"
    path.write_text("model_config_list { config { name: 3 base_path: \"/p\" } }")
    with pytest.raises(ConfigError, match=r"bad\.config: .*model name must be a non-empty string"):
        load_model_config_file(str(path))


def test_text_proto_values_keep_their_types():
    parsed = parse_text_proto('a: 1 b: -2.5e3 c: "x\\"y" d: true e { f: 1 f: 2 }')
    assert parsed == {"a": [1], "b": [-2500.0], "c": ['x"y'], "d": ["true"],
                      "e": [{"f": [1, 2]}]}


def test_model_config_rejects_empty_names():
    with pytest.raises(ConfigError, match="non-empty string"):
        ModelConfig("", "/p")


def test_api_keys_skip_blank_lines_and_comments(tmp_path):
    path = tmp_path / "keys"
    path.write_text("# ops team\nalpha-key\n\n  beta-key  \n")
    assert read_api_keys(str(path)) == ["alpha-key", "beta-key"]


def test_api_key_file_without_keys_is_refused(tmp_path):
    path = tmp_path / "keys"
    path.write_text("# nothing here\n\n")
    with pytest.raises(ConfigError, match="holds no key"):
        read_api_keys(str(path))
