"""PublishPacket's two constructors: the Python ``__init__`` and the C one.

When the compiled codec is in use, ``PublishPacket(...)`` runs a C
constructor (``_codec_c``), which must store exactly what the Python
``__init__`` stores -- the same fields, in the same order, the same values
-- and raise the same exception with the same message for every call
it is given. Both are compared here on the same calls, the C one switched on
and off around each call.

Also here, for both: what ``__init__`` stores (the topic, the payload and the
QoS, and other fields only when they are not their defaults), which keeps a
built packet from being taken for a plain decoded one.

Skipped when the compiled twin is not built (the pure pass of CI).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqttproto import PublishPacket, QoS
from mqttproto._codec_common import PLAIN_PUBLISH

try:
    c: Any = importlib.import_module("mqttproto._codec_c")
except ImportError:  # pragma: no cover - the pure pass of CI
    pytest.skip("the compiled codec is not built", allow_module_level=True)

FIELDS = [field.name for field in attrs.fields(PublishPacket)]


@pytest.fixture(params=[True, False], ids=["compiled", "python"])
def compiled(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Each test once with the C constructor and once with ``__init__``."""
    before = c._use_compiled_constructors(request.param)
    try:
        yield request.param
    finally:
        c._use_compiled_constructors(before)


def outcome(on: bool, call: Callable[[], Any]) -> tuple[Any, ...]:
    """What ``call`` gave with the C constructor on or off: the stored fields
    (names in order, the type and repr of each value), or the exception."""
    before = c._use_compiled_constructors(on)
    try:
        packet = call()
    except Exception as exc:
        return ("raised", type(exc), str(exc))
    finally:
        c._use_compiled_constructors(before)
    fields = [(name, type(value), repr(value)) for name, value in vars(packet).items()]
    return ("built", type(packet), fields)


def same(call: Callable[[], Any]) -> tuple[Any, ...]:
    compiled, python = outcome(True, call), outcome(False, call)
    assert compiled == python
    return compiled


PAIRS = (("unit", "celsius"),)
PAIRS_LIST = [("a", "1"), ("b", "2")]
IDS_LIST = [3, 4]


class Text(str):
    """A str subclass: stored as given, as any other value."""


CALLS: list[Callable[[], Any]] = [
    lambda: PublishPacket("t"),
    lambda: PublishPacket("t", b"p"),
    lambda: PublishPacket("t", b"p", QoS.AT_LEAST_ONCE, True, True, 7),
    lambda: PublishPacket(topic="t", payload=b"p", qos=QoS.EXACTLY_ONCE, packet_id=9),
    lambda: PublishPacket(
        "t",
        b"p",
        qos=QoS.AT_LEAST_ONCE,
        packet_id=1,
        payload_format_indicator=1,
        message_expiry_interval=3600,
        topic_alias=2,
        response_topic="r",
        correlation_data=b"c",
        user_properties=PAIRS,
        subscription_identifiers=(1, 2),
        content_type="text/plain",
    ),
    # Defaults given explicitly are not stored; equal values that are not
    # the default objects are.
    lambda: PublishPacket("t", b"", QoS.AT_MOST_ONCE, False, False, None),
    lambda: PublishPacket("t", qos=0, retain=0, duplicate=0),  # type: ignore[arg-type]
    lambda: PublishPacket("t", user_properties=(), subscription_identifiers=()),
    # Converted: a list, a generator, an empty list.
    lambda: PublishPacket("t", user_properties=PAIRS_LIST, subscription_identifiers=IDS_LIST),
    lambda: PublishPacket("t", user_properties=(pair for pair in PAIRS_LIST)),
    lambda: PublishPacket("t", user_properties=[], subscription_identifiers=[]),
    # Values of any type are stored as given: encode_packet refuses them.
    lambda: PublishPacket(Text("t"), bytearray(b"p"), 5, "yes", 1.5, -1),  # type: ignore[arg-type]
    lambda: PublishPacket("t", message_expiry_interval="x"),  # type: ignore[arg-type]
    # Bad values the converters refuse.
    lambda: PublishPacket("t", user_properties=None),  # type: ignore[arg-type]
    lambda: PublishPacket("t", user_properties=[("a",)]),  # type: ignore[list-item]
    lambda: PublishPacket("t", user_properties=[("a", "b", "c")]),  # type: ignore[list-item]
    lambda: PublishPacket("t", user_properties=5),  # type: ignore[arg-type]
    lambda: PublishPacket("t", subscription_identifiers=5),  # type: ignore[arg-type]
    lambda: PublishPacket(
        "t",
        user_properties=None,
        subscription_identifiers=None,  # type: ignore[arg-type]
    ),
    # Calls that do not fit the signature: Python's own TypeErrors.
    lambda: PublishPacket(),  # type: ignore[call-arg]
    lambda: PublishPacket(payload=b"p"),  # type: ignore[call-arg]
    lambda: PublishPacket("t", nope=1),  # type: ignore[call-arg]
    lambda: PublishPacket("t", topic="u"),  # type: ignore[misc]
    lambda: PublishPacket("t", b"p", payload=b"q"),  # type: ignore[misc]
    lambda: PublishPacket("t", b"p", QoS.AT_MOST_ONCE, False, False, None, None),  # type: ignore[call-arg]
    lambda: PublishPacket("t", b"p", QoS.AT_MOST_ONCE, False, False, None, 1, 2, 3),  # type: ignore[call-arg]
    # Keywords from a dict, with names that are not interned.
    lambda: PublishPacket(**{"".join(["to", "pic"]): "t", "".join(["q", "os"]): QoS.AT_LEAST_ONCE}),
    lambda: PublishPacket(**{"topic": "t", "packet_id": 3}),
    lambda: PublishPacket(*["t", b"p"], **{"retain": True}),
]


@pytest.mark.parametrize("call", CALLS, ids=range(len(CALLS)))
def test_both_constructors_store_and_raise_alike(call: Callable[[], Any]) -> None:
    same(call)


def test_the_messages_are_pythons() -> None:
    assert same(lambda: PublishPacket()) == (  # type: ignore[call-arg]
        "raised",
        TypeError,
        "PublishPacket.__init__() missing 1 required positional argument: 'topic'",
    )
    assert same(lambda: PublishPacket("t", nope=1))[:2] == ("raised", TypeError)  # type: ignore[call-arg]
    assert same(lambda: PublishPacket("t", user_properties=[("a",)]))[:2] == ("raised", ValueError)  # type: ignore[list-item]


values = st.one_of(
    st.none(), st.booleans(), st.integers(-1, 70_000), st.text(max_size=3),
    st.binary(max_size=3), st.sampled_from(list(QoS)),
    st.lists(st.tuples(st.text(max_size=2), st.text(max_size=2)), max_size=2),
    st.lists(st.integers(0, 5), max_size=2).map(tuple),
)  # fmt: skip


@given(
    positional=st.lists(values, max_size=7),
    keywords=st.dictionaries(st.sampled_from([*FIELDS, "nope"]), values, max_size=6),
)
def test_any_call_gives_the_same_outcome(positional: list[Any], keywords: dict[str, Any]) -> None:
    same(lambda: PublishPacket(*positional, **keywords))


def test_a_call_site_repeated_alike() -> None:
    """The C constructor keeps the field indexes of the last keyword names
    tuple (one per call site): a call site used again, with more or fewer
    positional arguments, or between other call sites, still stores and
    raises as ``__init__`` does."""

    def site(*positional: Any) -> Any:
        return PublishPacket(*positional, qos=QoS.AT_LEAST_ONCE, packet_id=4)

    def other(*positional: Any) -> Any:
        return PublishPacket(*positional, packet_id=5, retain=True)

    # (positional arguments, what site gives, what other gives)
    cases = [
        (("t",), "built", "built"),
        (("t", b"p"), "built", "built"),
        (("t", b"p", QoS.EXACTLY_ONCE), "raised", "built"),  # qos given twice
        (("t", b"p", QoS.EXACTLY_ONCE, True), "raised", "raised"),  # so is retain
        ((), "raised", "raised"),  # no topic
        (("t",), "built", "built"),
    ]
    for positional, from_site, from_other in cases:
        for call_site, expected in ((site, from_site), (other, from_other), (site, from_site)):
            assert same(functools.partial(call_site, *positional))[0] == expected
    assert same(lambda: site("t")) == (
        "built",
        PublishPacket,
        [
            ("topic", str, "'t'"),
            ("payload", bytes, "b''"),
            ("qos", QoS, repr(QoS.AT_LEAST_ONCE)),
            ("packet_id", int, "4"),
        ],
    )
    assert same(lambda: site("t", b"p", QoS.EXACTLY_ONCE))[:2] == ("raised", TypeError)
    assert same(lambda: other("t", b"p", QoS.EXACTLY_ONCE, True))[:2] == ("raised", TypeError)
    assert same(lambda: site())[:2] == ("raised", TypeError)


def test_attrs_evolve_and_subclasses_alike() -> None:
    packet = PublishPacket("t", b"p", QoS.AT_LEAST_ONCE, packet_id=1, user_properties=PAIRS)
    same(lambda: attrs.evolve(packet, duplicate=True))
    same(lambda: attrs.evolve(packet, user_properties=[("k", "v")]))

    class Mine(PublishPacket):
        pass

    assert same(lambda: Mine("t", qos=QoS.AT_LEAST_ONCE))[1] is Mine


def test_what_init_stores(compiled: bool) -> None:
    packet = PublishPacket("t", b"p", QoS.AT_LEAST_ONCE, packet_id=5, user_properties=PAIRS)
    assert list(vars(packet)) == ["topic", "payload", "qos", "packet_id", "user_properties"]
    assert packet.user_properties is PAIRS
    # Every field reads as before: the class holds the defaults.
    assert attrs.asdict(packet, recurse=False) == {
        name: getattr(PublishPacket("t"), name) for name in FIELDS
    } | {"payload": b"p", "qos": QoS.AT_LEAST_ONCE, "packet_id": 5, "user_properties": PAIRS}
    # The QoS is always stored, so that a built packet, even a plain one, is
    # never taken for a plain decoded one (which holds two fields).
    assert list(vars(PublishPacket("t"))) == ["topic", "payload", "qos"]
    assert len(vars(PublishPacket("t"))) > PLAIN_PUBLISH
    assert PublishPacket("t") == PublishPacket("t", b"", QoS.AT_MOST_ONCE, False, False, None)
    assert hash(PublishPacket("t")) == hash(attrs.evolve(PublishPacket("t")))
    assert PublishPacket("t", user_properties=[("a", "b")]).user_properties == (("a", "b"),)
    assert PublishPacket("t", subscription_identifiers=[1]).subscription_identifiers == (1,)


def test_the_switch_selects_the_constructor(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the C constructor on, the Python ``__init__`` does not run (which
    is what makes this file compare two constructors)."""
    calls: list[str] = []
    python_init = PublishPacket.__init__

    def spy(self: PublishPacket, *args: Any, **kwargs: Any) -> None:
        calls.append("python")
        python_init(self, *args, **kwargs)

    monkeypatch.setattr(PublishPacket, "__init__", spy)
    for on, expected in ((True, []), (False, ["python"])):
        calls.clear()
        before = c._use_compiled_constructors(on)
        try:
            assert vars(PublishPacket("t")) == {
                "topic": "t",
                "payload": b"",
                "qos": QoS.AT_MOST_ONCE,
            }
        finally:
            c._use_compiled_constructors(before)
        assert calls == expected
