"""docs/conf.py: the API reference shows every attrs class's defaults as values.

With ``autodoc_preserve_defaults`` Sphinx reads a function's source for its
defaults; an attrs class's ``__init__`` is generated, and its source says
``attr_dict['max_packet_size'].default``. ``conf.py``'s
``autodoc-before-process-signature`` hook puts the fields' defaults back.
These tests run the two steps in the order Sphinx does, on every attrs class
of the package, without building the documentation.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest
from sphinx.ext.autodoc.preserve_defaults import update_default_value

import mqttproto

CONF = Path(__file__).resolve().parent.parent / "docs" / "conf.py"


def load_conf() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mqttproto_docs_conf", CONF)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def attrs_classes() -> list[type]:
    found: dict[str, type] = {}
    modules = [mqttproto.__name__] + [
        info.name for info in pkgutil.walk_packages(mqttproto.__path__, "mqttproto.")
    ]
    for name in modules:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and attrs.has(value)
                and value.__module__.startswith("mqttproto")
            ):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return [found[key] for key in sorted(found)]


@pytest.fixture
def rendered() -> Iterator[dict[str, str]]:
    """Each attrs class's constructor signature, as autodoc would render it."""
    conf = load_conf()
    signatures: dict[str, str] = {}
    touched: list[Any] = []
    try:
        for cls in attrs_classes():
            init = cls.__init__
            touched.append(init)
            update_default_value(init, bound_method=True)
            conf.attrs_init_defaults(None, init, True)
            signatures[cls.__qualname__] = str(inspect.signature(init))
        yield signatures
    finally:
        for init in touched:
            init.__dict__.pop("__signature__", None)


def test_preserve_defaults_alone_shows_attrs_internals() -> None:
    """The fault the hook repairs: what Sphinx makes of a generated __init__."""
    from mqttproto.config import BrokerConfig

    init = BrokerConfig.__init__
    try:
        update_default_value(init, bound_method=True)
        assert "attr_dict['max_packet_size'].default" in str(inspect.signature(init))
    finally:
        init.__dict__.pop("__signature__", None)


def test_every_attrs_default_shows_its_value(rendered: dict[str, str]) -> None:
    assert len(rendered) > 40
    leaks = {name: text for name, text in rendered.items() if "attr_dict" in text}
    assert leaks == {}
    assert "max_packet_size: 'int' = 16777216" in rendered["BrokerConfig"]
    assert "reason_code: 'ReasonCode' = ReasonCode.SUCCESS" in rendered["AuthPacket"]
    assert "initial: 'float' = 0.5" in rendered["ReconnectPolicy"]
    assert "users: 'Mapping[str, tuple[AclRule, ...]]' = dict()" in rendered["AclFile"]
