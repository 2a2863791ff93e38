"""Tests for mqttproto.topics: validation, matching, shared subscriptions, the trie."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Hashable

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqttproto.enums import ReasonCode
from mqttproto.errors import (
    LocalProtocolError,
    MalformedPacket,
    ProtocolError,
    RemoteProtocolError,
)
from mqttproto.topics import (
    MAX_TOPIC_LENGTH,
    SharedSubscription,
    SubscriptionTree,
    is_shared_filter,
    parse_shared_subscription,
    topic_level_count,
    topic_matches,
    validate_topic_filter,
    validate_topic_name,
)

ERROR_CLASSES: list[type[ProtocolError]] = [
    LocalProtocolError,
    RemoteProtocolError,
    MalformedPacket,
]

# --------------------------------------------------------------------------------------
# Topic names
# --------------------------------------------------------------------------------------

VALID_NAMES = [
    "a",
    "sport/tennis/player1",
    "/",  # a name of only '/' is valid (4.7.3)
    "//",
    "/finance",
    "finance/",
    "a//b",
    "Accounts payable",  # spaces are allowed (4.7.3)
    "$SYS/monitor/Clients",
    "$share/group/a",  # a topic name, not a filter: nothing special
    "ünïcødé/😀",
    "x" * MAX_TOPIC_LENGTH,
    "é" * (MAX_TOPIC_LENGTH // 2),  # 65534 bytes
    "😀" * (MAX_TOPIC_LENGTH // 4),  # 65532 bytes
]

INVALID_NAMES = [
    ("", "MQTT-4.7.3-1"),
    ("+", "MQTT-3.3.2-2"),
    ("#", "MQTT-3.3.2-2"),
    ("sport/+", "MQTT-3.3.2-2"),
    ("sport/#", "MQTT-3.3.2-2"),
    ("sport/ten+nis", "MQTT-3.3.2-2"),
    ("a#b", "MQTT-3.3.2-2"),
    ("a\x00b", "MQTT-4.7.3-2"),
    ("\x00", "MQTT-4.7.3-2"),
    ("x" * (MAX_TOPIC_LENGTH + 1), "MQTT-4.7.3-3"),
    ("é" * (MAX_TOPIC_LENGTH // 2 + 1), "MQTT-4.7.3-3"),  # 65536 bytes, 32768 chars
    ("😀" * (MAX_TOPIC_LENGTH // 4 + 1), "MQTT-4.7.3-3"),  # 65536 bytes, 16384 chars
]


@pytest.mark.parametrize("name", VALID_NAMES, ids=lambda s: repr(s[:20]))
def test_valid_topic_names(name: str) -> None:
    validate_topic_name(name)


@pytest.mark.parametrize("error", ERROR_CLASSES, ids=lambda e: e.__name__)
@pytest.mark.parametrize(("name", "tag"), INVALID_NAMES, ids=lambda s: repr(s[:20]))
def test_invalid_topic_names(name: str, tag: str, error: type[ProtocolError]) -> None:
    with pytest.raises(error) as excinfo:
        validate_topic_name(name, error=error)
    assert type(excinfo.value) is error
    assert excinfo.value.reason_code is ReasonCode.TOPIC_NAME_INVALID
    assert f"[{tag}]" in str(excinfo.value)


def test_topic_name_default_error_is_local() -> None:
    with pytest.raises(LocalProtocolError) as excinfo:
        validate_topic_name("a/+")
    assert type(excinfo.value) is LocalProtocolError


def test_topic_name_error_message_is_short() -> None:
    with pytest.raises(LocalProtocolError) as excinfo:
        validate_topic_name("x" * (MAX_TOPIC_LENGTH + 1))
    assert len(str(excinfo.value)) < 200


def test_topic_name_lone_surrogate_is_measured_not_raised() -> None:
    # Well-formed UTF-8 is the codec's business; measuring must not crash.
    validate_topic_name("\ud800" * 100)
    with pytest.raises(LocalProtocolError):
        validate_topic_name("\ud800" * (MAX_TOPIC_LENGTH // 3 + 1))  # 3 bytes each


def test_topic_name_max_levels() -> None:
    validate_topic_name("a/b/c", max_levels=3)
    validate_topic_name("a", max_levels=1)
    with pytest.raises(MalformedPacket) as excinfo:
        validate_topic_name("a/b/c/d", error=MalformedPacket, max_levels=3)
    assert excinfo.value.reason_code is ReasonCode.TOPIC_NAME_INVALID
    with pytest.raises(LocalProtocolError):
        validate_topic_name("/", max_levels=1)


# --------------------------------------------------------------------------------------
# Topic filters
# --------------------------------------------------------------------------------------

VALID_FILTERS = [
    "a",
    "/",
    "//",
    "sport/tennis/player1",
    "#",  # "“#” is valid and will receive every Application Message" (4.7.1.2)
    "sport/#",
    "sport/tennis/#",
    "/#",
    "//#",
    "+",  # (4.7.1.3)
    "+/tennis/#",
    "sport/+/player1",
    "sport/+",
    "+/+",
    "/+",
    "+/",
    "+//+",
    "+/#",
    "$SYS/#",
    "$SYS/monitor/+",
    "$share/g/a",  # plain-filter syntax is fine; shared rules are separate
    "$share//a",
    "$share/g",
    "a b/c",
    "x" * MAX_TOPIC_LENGTH,
    "😀" * (MAX_TOPIC_LENGTH // 4),
]

INVALID_FILTERS = [
    ("", "MQTT-4.7.3-1"),
    ("a\x00", "MQTT-4.7.3-2"),
    ("+/\x00/#", "MQTT-4.7.3-2"),
    ("x" * (MAX_TOPIC_LENGTH + 1), "MQTT-4.7.3-3"),
    ("é" * (MAX_TOPIC_LENGTH // 2 + 1), "MQTT-4.7.3-3"),
    # Multi-level wildcard: on its own or after '/', and last [MQTT-4.7.1-1].
    ("sport/tennis#", "MQTT-4.7.1-1"),  # (4.7.1.2 "is not valid")
    ("sport/tennis/#/ranking", "MQTT-4.7.1-1"),  # (4.7.1.2 "is not valid")
    ("#/", "MQTT-4.7.1-1"),
    ("#/a", "MQTT-4.7.1-1"),
    ("##", "MQTT-4.7.1-1"),
    ("#/#", "MQTT-4.7.1-1"),
    ("a/#b", "MQTT-4.7.1-1"),
    ("a/b#", "MQTT-4.7.1-1"),
    ("+#", "MQTT-4.7.1-1"),
    ("a/+#", "MQTT-4.7.1-1"),
    # Single-level wildcard: occupies a whole level [MQTT-4.7.1-2].
    ("sport+", "MQTT-4.7.1-2"),  # (4.7.1.3 "is not valid")
    ("+sport", "MQTT-4.7.1-2"),
    ("sp+ort", "MQTT-4.7.1-2"),
    ("a/b+", "MQTT-4.7.1-2"),
    ("a/+b/c", "MQTT-4.7.1-2"),
    ("++", "MQTT-4.7.1-2"),
    ("+/++", "MQTT-4.7.1-2"),
    ("a/+/b+/#", "MQTT-4.7.1-2"),
    ("#+", "MQTT-4.7.1-1"),
]


@pytest.mark.parametrize("topic_filter", VALID_FILTERS, ids=lambda s: repr(s[:20]))
def test_valid_topic_filters(topic_filter: str) -> None:
    validate_topic_filter(topic_filter)


@pytest.mark.parametrize("error", ERROR_CLASSES, ids=lambda e: e.__name__)
@pytest.mark.parametrize(("topic_filter", "tag"), INVALID_FILTERS, ids=lambda s: repr(s[:20]))
def test_invalid_topic_filters(topic_filter: str, tag: str, error: type[ProtocolError]) -> None:
    with pytest.raises(error) as excinfo:
        validate_topic_filter(topic_filter, error=error)
    assert type(excinfo.value) is error
    assert excinfo.value.reason_code is ReasonCode.TOPIC_FILTER_INVALID
    assert f"[{tag}]" in str(excinfo.value)


def test_topic_filter_max_levels() -> None:
    validate_topic_filter("a/+/#", max_levels=3)
    with pytest.raises(RemoteProtocolError) as excinfo:
        validate_topic_filter("a/+/b/#", error=RemoteProtocolError, max_levels=3)
    assert excinfo.value.reason_code is ReasonCode.TOPIC_FILTER_INVALID


@pytest.mark.parametrize(("topic", "count"), [("a", 1), ("/", 2), ("a//b", 3), ("+/#", 2), ("", 1)])
def test_topic_level_count(topic: str, count: int) -> None:
    assert topic_level_count(topic) == count


# Reference validity predicates, written from the rules level by level.


def reference_filter_is_valid(topic_filter: str) -> bool:
    if not topic_filter or "\x00" in topic_filter:
        return False
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def reference_name_is_valid(name: str) -> bool:
    return bool(name) and not any(c in name for c in "+#\x00")


RAW_TOPICS = st.text(alphabet="ab/+#$\x00", max_size=10)


@given(RAW_TOPICS)
def test_validate_topic_filter_agrees_with_reference(topic_filter: str) -> None:
    try:
        validate_topic_filter(topic_filter)
    except LocalProtocolError as exc:
        assert exc.reason_code is ReasonCode.TOPIC_FILTER_INVALID
        assert not reference_filter_is_valid(topic_filter)
    else:
        assert reference_filter_is_valid(topic_filter)


@given(RAW_TOPICS)
def test_validate_topic_name_agrees_with_reference(name: str) -> None:
    try:
        validate_topic_name(name)
    except LocalProtocolError as exc:
        assert exc.reason_code is ReasonCode.TOPIC_NAME_INVALID
        assert not reference_name_is_valid(name)
    else:
        assert reference_name_is_valid(name)


# --------------------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------------------

# The examples of MQTT 5.0 section 4.7 (and 4.8.2 for the shared inner filter).
SPEC_MATCH_EXAMPLES = [
    # 4.7.1.2 Multi-level wildcard
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/#", "sport", True),  # "# includes the parent level"
    ("#", "sport/tennis", True),  # "“#” ... will receive every Application Message"
    ("#", "/", True),
    # 4.7.1.3 Single-level wildcard
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player2", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    # 4.7.2 Topics beginning with $
    ("#", "$SYS/monitor/Clients", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("$SYS/#", "$SYS/monitor/Clients", True),
    ("$SYS/#", "$SYS", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    # 4.7.3 Topic semantic and usage
    ("ACCOUNTS", "Accounts", False),
    ("/finance", "finance", False),
    ("finance", "/finance", False),
    ("Accounts payable", "Accounts payable", True),
    # 4.8.2: "$share/consumer1//finance" matches like "/finance"
    ("/finance", "/finance", True),
]

MORE_MATCH_EXAMPLES = [
    ("a/b", "a/b", True),
    ("a/b", "a/b/", False),
    ("a/+", "a/b/c", False),
    ("a/+/c", "a/b/c", True),
    ("a/+/c", "a//c", True),
    ("+/#", "a", True),
    ("+/#", "$a", False),
    ("a/#", "ab", False),
    ("a/+/#", "a", False),
    ("a/+/#", "a/b", True),
    ("/#", "/", True),
    ("/#", "a", False),
    ("$SYS/+", "$SYS/x", True),
    ("a/$b/+", "a/$b/c", True),  # '$' only matters in the first level
    ("a/+", "a/$b", True),
    ("$+", "$+", True),  # filter not starting with a wildcard: no '$' rule
]


@pytest.mark.parametrize(
    ("topic_filter", "name", "expected"), SPEC_MATCH_EXAMPLES + MORE_MATCH_EXAMPLES
)
def test_topic_matches_examples(topic_filter: str, name: str, expected: bool) -> None:
    assert topic_matches(topic_filter, name) is expected
    assert reference_matches(topic_filter, name) is expected


def reference_matches(topic_filter: str, name: str) -> bool:
    """A deliberately naive matcher: recursion over the split levels."""
    if name.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False

    def match(filter_levels: list[str], name_levels: list[str]) -> bool:
        if not filter_levels:
            return not name_levels
        head, rest = filter_levels[0], filter_levels[1:]
        if head == "#":
            # Zero or more levels (the parent, or any children).
            return True
        if not name_levels:
            return False
        if head == "+" or head == name_levels[0]:
            return match(rest, name_levels[1:])
        return False

    return match(topic_filter.split("/"), name.split("/"))


def regex_matches(topic_filter: str, name: str) -> bool:
    """A second, differently built oracle: translate the filter into a regex."""
    if name.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    if topic_filter == "#":
        return True
    pattern = "/".join(
        "[^/]*" if level == "+" else re.escape(level)
        for level in topic_filter.removesuffix("/#").split("/")
    )
    if topic_filter.endswith("/#"):
        pattern += "(?:/.*)?"
    return re.fullmatch(pattern, name, re.DOTALL) is not None


NAME_LEVEL = st.sampled_from(["a", "b", "$", "", "$a", "ab"])
FILTER_LEVEL = st.sampled_from(["a", "b", "$", "", "$a", "+"])

# [""] would join to the empty string, which is not a valid topic [MQTT-4.7.3-1].
topic_names = st.lists(NAME_LEVEL, min_size=1, max_size=5).map("/".join).filter(bool)


@st.composite
def topic_filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(FILTER_LEVEL, min_size=0, max_size=5))
    if levels in ([], [""]) or draw(st.booleans()):
        levels.append("#")
    return "/".join(levels)


@given(topic_filters())
def test_generated_filters_are_valid(topic_filter: str) -> None:
    validate_topic_filter(topic_filter)


@given(topic_names)
def test_generated_names_are_valid(name: str) -> None:
    validate_topic_name(name)


@settings(max_examples=1000)
@given(topic_filters(), topic_names)
def test_topic_matches_agrees_with_reference(topic_filter: str, name: str) -> None:
    expected = reference_matches(topic_filter, name)
    assert topic_matches(topic_filter, name) is expected
    assert regex_matches(topic_filter, name) is expected


@given(topic_names)
def test_name_as_filter_matches_itself(name: str) -> None:
    assert topic_matches(name, name)


# --------------------------------------------------------------------------------------
# Shared subscriptions
# --------------------------------------------------------------------------------------

VALID_SHARED = [
    ("$share/g/a", "g", "a"),
    ("$share/consumer1/sport/tennis/+", "consumer1", "sport/tennis/+"),
    ("$share/consumer2/sport/tennis/+", "consumer2", "sport/tennis/+"),
    ("$share/consumer1//finance", "consumer1", "/finance"),  # (4.8.2)
    ("$share/g/#", "g", "#"),
    ("$share/g/+", "g", "+"),
    ("$share/g//", "g", "/"),
    ("$share/g/$SYS/#", "g", "$SYS/#"),
    ("$share/$share/a", "$share", "a"),
    ("$share/g/$share/h/a", "g", "$share/h/a"),
    ("$share/gr oup/a", "gr oup", "a"),
]

NOT_SHARED = ["a/b", "#", "$share", "$SHARE/g/a", "$shared/g/a", "/$share/g/a", "$SYS/#"]

INVALID_SHARED = [
    ("$share/", "MQTT-4.8.2-1"),  # empty ShareName
    ("$share//a", "MQTT-4.8.2-1"),
    ("$share//", "MQTT-4.8.2-1"),
    ("$share/+/a", "MQTT-4.8.2-2"),  # ShareName with a wildcard
    ("$share/#/a", "MQTT-4.8.2-2"),
    ("$share/g+/a", "MQTT-4.8.2-2"),
    ("$share/g#", "MQTT-4.8.2-2"),
    ("$share/g\x00/a", "MQTT-4.8.2-2"),
    ("$share/g", "MQTT-4.8.2-2"),  # no '/' after the ShareName
    ("$share/g/", "MQTT-4.8.2-2"),  # no filter after the '/'
    ("$share/g/a/#/b", "MQTT-4.7.1-1"),  # the inner filter is invalid
    ("$share/g/a+", "MQTT-4.7.1-2"),
    ("$share/g/a\x00", "MQTT-4.7.3-2"),
    ("$share/g/" + "x" * (MAX_TOPIC_LENGTH - 8), "MQTT-4.7.3-3"),  # 65536 bytes in all
]


@pytest.mark.parametrize(("topic_filter", "group", "inner"), VALID_SHARED)
def test_parse_shared_subscription(topic_filter: str, group: str, inner: str) -> None:
    assert is_shared_filter(topic_filter)
    shared = parse_shared_subscription(topic_filter)
    assert shared == SharedSubscription(group, inner)
    assert shared.share_filter == topic_filter


@pytest.mark.parametrize("topic_filter", NOT_SHARED)
def test_parse_non_shared_subscription(topic_filter: str) -> None:
    assert not is_shared_filter(topic_filter)
    assert parse_shared_subscription(topic_filter) is None


@pytest.mark.parametrize("error", ERROR_CLASSES, ids=lambda e: e.__name__)
@pytest.mark.parametrize(("topic_filter", "tag"), INVALID_SHARED, ids=lambda s: repr(s[:20]))
def test_parse_invalid_shared_subscription(
    topic_filter: str, tag: str, error: type[ProtocolError]
) -> None:
    assert is_shared_filter(topic_filter)
    with pytest.raises(error) as excinfo:
        parse_shared_subscription(topic_filter, error=error)
    assert type(excinfo.value) is error
    assert excinfo.value.reason_code is ReasonCode.TOPIC_FILTER_INVALID
    assert f"[{tag}]" in str(excinfo.value)


def test_shared_subscription_longest_valid() -> None:
    topic_filter = "$share/g/" + "x" * (MAX_TOPIC_LENGTH - 9)  # 65535 bytes in all
    shared = parse_shared_subscription(topic_filter)
    assert shared is not None
    assert shared.share_filter == topic_filter


def test_shared_subscription_max_levels() -> None:
    assert parse_shared_subscription("$share/g/a/b", max_levels=2) is not None
    with pytest.raises(LocalProtocolError):
        parse_shared_subscription("$share/g/a/b/c", max_levels=2)


def test_shared_subscription_is_frozen_and_hashable() -> None:
    shared = SharedSubscription("g", "a/+")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        shared.group = "h"  # type: ignore[misc]
    assert {shared, SharedSubscription("g", "a/+")} == {shared}
    assert shared != SharedSubscription("h", "a/+")


@given(st.text(alphabet="ab$ ", min_size=1, max_size=4), topic_filters())
def test_shared_subscription_round_trip(group: str, inner: str) -> None:
    shared = SharedSubscription(group, inner)
    assert parse_shared_subscription(shared.share_filter) == shared


def test_shared_filter_matches_like_inner_filter() -> None:
    # 4.8.2: "Shared subscription "$share/consumer1//finance" matches the same
    # topics as a non-shared subscription to /finance."
    shared = parse_shared_subscription("$share/consumer1//finance")
    assert shared is not None
    assert topic_matches(shared.topic_filter, "/finance")
    assert not topic_matches(shared.topic_filter, "finance")


# --------------------------------------------------------------------------------------
# SubscriptionTree
# --------------------------------------------------------------------------------------


def test_tree_basic_operations() -> None:
    tree: SubscriptionTree[int] = SubscriptionTree()
    assert len(tree) == 0
    assert tree.matches("a") == []
    assert tree.add("sport/#", "c1", 1) is True
    assert tree.add("sport/tennis/+", "c2", 2) is True
    assert tree.add("sport/tennis/+", "c1", 3) is True
    assert tree.add("#", "c3", 4) is True
    assert tree.add("$SYS/#", "c3", 5) is True
    assert len(tree) == 5
    assert tree.add("sport/#", "c1", 6) is False  # replaced [MQTT-3.8.4-3]
    assert len(tree) == 5
    assert tree.get("sport/#", "c1") == 6
    assert tree.get("sport/#", "c2") is None
    assert tree.get("nope", "c1") is None

    assert Counter(tree.matches("sport/tennis/player1")) == Counter(
        [
            ("sport/#", "c1", 6),
            ("sport/tennis/+", "c2", 2),
            ("sport/tennis/+", "c1", 3),
            ("#", "c3", 4),
        ]
    )
    assert Counter(tree.matches("sport")) == Counter([("sport/#", "c1", 6), ("#", "c3", 4)])
    assert tree.matches("$SYS/broker/uptime") == [("$SYS/#", "c3", 5)]
    assert tree.matches("$SYS") == [("$SYS/#", "c3", 5)]

    assert tree.remove("sport/#", "c2") is False
    assert tree.remove("sport/#/x", "c1") is False
    assert tree.remove("sport/#", "c1") is True
    assert tree.remove("sport/#", "c1") is False
    assert len(tree) == 4
    assert Counter(tree.matches("sport")) == Counter([("#", "c3", 4)])


def test_tree_root_wildcards_do_not_match_dollar_topics() -> None:
    tree: SubscriptionTree[str] = SubscriptionTree()
    tree.add("#", 1, "all")
    tree.add("+/monitor/Clients", 2, "plus")
    tree.add("$SYS/monitor/+", 3, "sys")
    tree.add("+/+/+", 4, "three")
    assert tree.matches("$SYS/monitor/Clients") == [("$SYS/monitor/+", 3, "sys")]
    assert Counter(tree.matches("x/monitor/Clients")) == Counter(
        [("#", 1, "all"), ("+/monitor/Clients", 2, "plus"), ("+/+/+", 4, "three")]
    )


def test_tree_rejects_invalid_filters() -> None:
    tree: SubscriptionTree[int] = SubscriptionTree()
    for bad in ["", "a/#/b", "a+", "\x00"]:
        with pytest.raises(LocalProtocolError):
            tree.add(bad, "k", 1)
    assert len(tree) == 0


def test_tree_prunes_empty_nodes() -> None:
    tree: SubscriptionTree[int] = SubscriptionTree()
    tree.add("a/b/c/+", 1, 1)
    tree.add("a/b/#", 1, 2)
    tree.add("a/+/#", 2, 3)
    tree.add("a/b", 3, 4)  # no wildcard: not in the trie
    assert tree.remove("a/b/c/+", 1)
    # "a/b/#" is still there, so only "c" and "+" went.
    assert set(tree._root.children["a"].children) == {"b", "+"}
    assert set(tree._root.children["a"].children["b"].children) == {"#"}
    assert tree.remove("a/b/#", 1)
    assert tree.remove("a/+/#", 2)
    assert tree._root.children == {}
    assert tree.matches("a/b") == [("a/b", 3, 4)]
    assert tree.remove("a/b", 3)
    assert tree._exact == {}
    assert len(tree) == 0


def test_tree_iterates_all_entries() -> None:
    tree: SubscriptionTree[int] = SubscriptionTree()
    entries = {("a", 1, 1), ("a/b", 1, 2), ("a/b", 2, 3), ("#", 3, 4), ("/", 1, 5)}
    for entry in entries:
        tree.add(*entry)
    assert set(tree) == entries


def test_tree_with_shared_subscriptions() -> None:
    # The server stores a shared subscription under its inner filter, keyed by
    # (ShareName, client) so that both groups receive a copy.
    tree: SubscriptionTree[int] = SubscriptionTree()
    for client, topic_filter in [
        ("c1", "$share/consumer1/sport/tennis/+"),
        ("c2", "$share/consumer2/sport/tennis/+"),
        ("c3", "sport/tennis/+"),
    ]:
        shared = parse_shared_subscription(topic_filter)
        if shared is None:
            tree.add(topic_filter, client, 0)
        else:
            tree.add(shared.topic_filter, (shared.group, client), 1)
    keys = {key for _, key, _ in tree.matches("sport/tennis/player1")}
    assert keys == {("consumer1", "c1"), ("consumer2", "c2"), "c3"}


def test_tree_deep_topic_is_not_recursive() -> None:
    tree: SubscriptionTree[int] = SubscriptionTree()
    deep = "/".join(["+"] * 5000)
    tree.add(deep, 1, 1)
    name = "/".join(["x"] * 5000)
    assert tree.matches(name) == [(deep, 1, 1)]
    assert tree.remove(deep, 1)
    assert tree._root.children == {}


operations = st.lists(
    st.tuples(st.booleans(), topic_filters(), st.integers(0, 3), st.integers(0, 9)),
    max_size=40,
)


@settings(max_examples=300)
@given(operations, st.lists(topic_names, min_size=1, max_size=10))
def test_tree_agrees_with_topic_matches(
    ops: list[tuple[bool, str, int, int]], names: list[str]
) -> None:
    tree: SubscriptionTree[int] = SubscriptionTree()
    model: dict[tuple[str, Hashable], int] = {}
    for is_add, topic_filter, key, value in ops:
        if is_add:
            assert tree.add(topic_filter, key, value) is ((topic_filter, key) not in model)
            model[topic_filter, key] = value
        else:
            assert tree.remove(topic_filter, key) is ((topic_filter, key) in model)
            model.pop((topic_filter, key), None)
        assert len(tree) == len(model)

    assert set(tree) == {(f, k, v) for (f, k), v in model.items()}
    for (stored_filter, stored_key), value in model.items():
        assert tree.get(stored_filter, stored_key) == value
        assert tree.get(stored_filter, "no such key") is None
    for name in names:
        expected = Counter((f, k, v) for (f, k), v in model.items() if topic_matches(f, name))
        assert Counter(tree.matches(name)) == expected
        assert Counter(tree.values_matching(name)) == Counter(v for _, _, v in expected.elements())

    for stored_filter, stored_key in list(model):
        assert tree.remove(stored_filter, stored_key)
    assert len(tree) == 0
    assert tree._root.children == {}
    assert tree._exact == {}
