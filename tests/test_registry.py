"""Objects as {"class_name", "config"} data: only registered classes go in or come out."""

import pytest

from minidl.registry import class_and_config, to_spec


class Thing:
    def __init__(self, size=1):
        self.size = size

    def get_config(self):
        return {"size": self.size}


class Unlisted(Thing):
    pass


REGISTRY = {"Thing": Thing}


def test_a_registered_object_round_trips():
    spec = to_spec(Thing(3), REGISTRY, "REGISTRY")
    assert spec == {"class_name": "Thing", "config": {"size": 3}}
    cls, config = class_and_config(spec, REGISTRY, "thing")
    assert cls is Thing and cls(**config).size == 3


def test_an_unregistered_subclass_cannot_be_stored():
    with pytest.raises(ValueError, match="serialize: Unlisted is not in REGISTRY"):
        to_spec(Unlisted(), REGISTRY, "REGISTRY")


@pytest.mark.parametrize(("spec", "error", "message"), [
    (["Thing"], TypeError, r"a thing spec must be a \{'class_name', 'config'\} dict, got list"),
    ({"class_name": "Thing"}, ValueError, r"exactly the keys 'class_name' and 'config'"),
    ({"class_name": "os.system", "config": {}}, ValueError, r"unknown thing 'os.system'; known"),
    ({"class_name": ["Thing"], "config": {}}, ValueError, r"unknown thing \['Thing'\]"),
    ({"class_name": "Thing", "config": [1]}, TypeError, r"the config of Thing must be a dict"),
])
def test_malformed_specs_are_refused_with_the_reason(spec, error, message):
    with pytest.raises(error, match=message):
        class_and_config(spec, REGISTRY, "thing")
