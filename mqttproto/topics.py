"""Topic names, topic filters, matching and shared subscriptions.

MQTT addresses every Application Message with a *topic name* (``sport/tennis``)
and subscribers select messages with *topic filters*, which may contain the
wildcards ``+`` (exactly one level) and ``#`` (the parent level and any number of
child levels). Both are split into *levels* by ``/``; empty levels are allowed
and significant (``/finance`` is not ``finance``).

This module provides:

- :func:`validate_topic_name` and :func:`validate_topic_filter`: the syntax rules
  of section 4.7 of MQTT 5.0 (4.7 of 3.1.1), cheap enough for the codec's hot
  path. They raise the :class:`~mqttproto.errors.ProtocolError` subclass the
  caller names, so the codec raises :class:`~mqttproto.errors.LocalProtocolError`
  when asked to encode a bad topic and a
  :class:`~mqttproto.errors.RemoteProtocolError` when it decodes one.
- :func:`topic_matches`: whether a plain topic filter selects a topic name.
- :func:`parse_shared_subscription` and :class:`SharedSubscription`: the
  ``$share/{ShareName}/{filter}`` syntax of MQTT 5.0 section 4.8.2.
- :class:`SubscriptionTree`: a trie of topic filters for servers, whose lookup
  cost depends on the depth of the topic name and the wildcards on its path,
  never on the total number of subscriptions.

Spec tags cited below are the normative statement identifiers of MQTT 5.0
(``[MQTT-x.y.z-n]``); where MQTT 3.1.1 numbers the same rule differently both
are given. MQTT 3.1 has no numbered statements but the same rules.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from typing import Generic, TypeVar

import attrs

from .enums import ReasonCode
from .errors import LocalProtocolError, ProtocolError

__all__ = [
    "MAX_TOPIC_LENGTH",
    "SHARED_SUBSCRIPTION_PREFIX",
    "SharedSubscription",
    "SubscriptionTree",
    "is_shared_filter",
    "parse_shared_subscription",
    "topic_level_count",
    "topic_matches",
    "validate_topic_filter",
    "validate_topic_name",
]

T = TypeVar("T")

#: The largest number of bytes a topic name or filter may encode to in UTF-8
#: [MQTT-4.7.3-3]: it is a UTF-8 Encoded String with a two-byte length prefix.
MAX_TOPIC_LENGTH = 65535

#: The literal prefix that marks a shared subscription's topic filter [MQTT-4.8.2-1].
SHARED_SUBSCRIPTION_PREFIX = "$share/"

# A code point encodes to at most 4 UTF-8 bytes, so a string of at most this many
# code points cannot exceed MAX_TOPIC_LENGTH bytes and need not be encoded to be
# measured. Every topic read off the wire is below this bound's byte limit anyway.
_MAX_UNMEASURED_CHARS = MAX_TOPIC_LENGTH // 4

_NAME_INVALID = ReasonCode.TOPIC_NAME_INVALID
_FILTER_INVALID = ReasonCode.TOPIC_FILTER_INVALID


def _show(text: str) -> str:
    """A short repr of *text* for an error message (topics can be 64 KiB long)."""
    if len(text) > 60:
        return repr(text[:60]) + "..."
    return repr(text)


def _too_long(text: str) -> bool:
    """Whether *text* encodes to more than :data:`MAX_TOPIC_LENGTH` UTF-8 bytes."""
    if len(text) <= _MAX_UNMEASURED_CHARS:
        return False
    if len(text) > MAX_TOPIC_LENGTH:
        return True
    # "surrogatepass" so that a lone surrogate is measured instead of raising;
    # rejecting ill-formed UTF-8 [MQTT-1.5.4-1] is the codec's job, not ours.
    return len(text.encode("utf-8", "surrogatepass")) > MAX_TOPIC_LENGTH


def topic_level_count(topic: str) -> int:
    """Return the number of levels in a topic name or filter.

    Every topic has at least one level; each ``/`` adds one, so ``"/"`` has two
    empty levels and ``"a//b"`` has three. The protocol sets no limit other than
    the string length (section 4.7.3), but a server may want one, since matching
    cost grows with depth; see the *max_levels* argument of the validators.
    """
    return topic.count("/") + 1


def validate_topic_name(
    name: str,
    *,
    error: type[ProtocolError] = LocalProtocolError,
    max_levels: int | None = None,
) -> None:
    """Check that *name* is a valid topic name, as a PUBLISH or Will carries.

    A valid name costs three substring scans and a length check.

    :param name: the topic name.
    :param error: the exception class to raise: :class:`LocalProtocolError` (the
        default) when the caller wants to send *name*, a
        :class:`RemoteProtocolError` subclass when the peer sent it.
    :param max_levels: if given, also reject names with more levels than this (a
        server's own limit, not a protocol rule).
    :raises ProtocolError: an instance of *error* with reason code
        ``TOPIC_NAME_INVALID`` (0x90) if *name* is empty, contains ``+``, ``#``
        or U+0000, encodes to more than 65535 bytes or is deeper than
        *max_levels*.

    In MQTT 5.0 a PUBLISH may carry an empty topic name together with a Topic
    Alias (section 3.3.2.3.4); the caller resolves the alias before validating.
    Well-formedness of the UTF-8 itself [MQTT-1.5.4-1] is checked by the codec.
    """
    if not name:
        # [MQTT-4.7.3-1] All Topic Names and Topic Filters MUST be at least one
        # character long.
        raise error("topic name must not be empty [MQTT-4.7.3-1]", _NAME_INVALID)
    if "+" in name or "#" in name:
        # [MQTT-3.3.2-2] The Topic Name in the PUBLISH packet MUST NOT contain
        # wildcard characters; also [MQTT-4.7.0-1] (5.0) / [MQTT-4.7.1-1] (3.1.1).
        raise error(
            f"topic name {_show(name)} must not contain the wildcards '+' or '#' [MQTT-3.3.2-2]",
            _NAME_INVALID,
        )
    if "\x00" in name:
        # [MQTT-4.7.3-2]; and every UTF-8 Encoded String, [MQTT-1.5.4-2] (5.0) /
        # [MQTT-1.5.3-2] (3.1.1).
        raise error(
            f"topic name {_show(name)} must not contain U+0000 [MQTT-4.7.3-2]", _NAME_INVALID
        )
    if _too_long(name):
        raise error(
            f"topic name {_show(name)} encodes to more than {MAX_TOPIC_LENGTH} bytes "
            "[MQTT-4.7.3-3]",
            _NAME_INVALID,
        )
    if max_levels is not None and name.count("/") >= max_levels:
        raise error(
            f"topic name {_show(name)} has {topic_level_count(name)} levels, "
            f"more than the limit of {max_levels}",
            _NAME_INVALID,
        )


def validate_topic_filter(
    topic_filter: str,
    *,
    error: type[ProtocolError] = LocalProtocolError,
    max_levels: int | None = None,
) -> None:
    """Check that *topic_filter* is a valid topic filter (section 4.7).

    A filter without wildcards costs the same few substring scans as
    :func:`validate_topic_name`; only one containing ``+`` or ``#`` is examined
    further.

    This checks the topic filter syntax only. A filter starting with ``$share/``
    is a valid topic filter here whatever follows; in MQTT 5.0 such a filter is a
    shared subscription whose extra rules :func:`parse_shared_subscription`
    checks. (MQTT 3.1 and 3.1.1 have no shared subscriptions, so there it is an
    ordinary filter.)

    :param topic_filter: the topic filter.
    :param error: the exception class to raise, as for :func:`validate_topic_name`.
    :param max_levels: if given, also reject filters with more levels than this.
    :raises ProtocolError: an instance of *error* with reason code
        ``TOPIC_FILTER_INVALID`` (0x8F) if the filter is empty, contains U+0000,
        encodes to more than 65535 bytes, has a ``#`` that is not alone in the
        last level, a ``+`` that is not alone in its level, or is deeper than
        *max_levels*.
    """
    if not topic_filter:
        raise error("topic filter must not be empty [MQTT-4.7.3-1]", _FILTER_INVALID)
    if "\x00" in topic_filter:
        raise error(
            f"topic filter {_show(topic_filter)} must not contain U+0000 [MQTT-4.7.3-2]",
            _FILTER_INVALID,
        )
    if _too_long(topic_filter):
        raise error(
            f"topic filter {_show(topic_filter)} encodes to more than {MAX_TOPIC_LENGTH} "
            "bytes [MQTT-4.7.3-3]",
            _FILTER_INVALID,
        )
    if "#" in topic_filter:
        # [MQTT-4.7.1-1] (5.0) / [MQTT-4.7.1-2] (3.1.1): the multi-level wildcard
        # MUST be specified either on its own or following a topic level
        # separator, and MUST be the last character of the Topic Filter.
        # str.find gives the first '#', so this also rejects a second one.
        index = topic_filter.find("#")
        if index != len(topic_filter) - 1 or (index and topic_filter[index - 1] != "/"):
            raise error(
                f"topic filter {_show(topic_filter)}: '#' must be the whole last level "
                "[MQTT-4.7.1-1]",
                _FILTER_INVALID,
            )
    if "+" in topic_filter:
        # [MQTT-4.7.1-2] (5.0) / [MQTT-4.7.1-3] (3.1.1): where the single-level
        # wildcard is used, it MUST occupy an entire level of the filter.
        last = len(topic_filter) - 1
        index = topic_filter.find("+")
        while index != -1:
            if (index and topic_filter[index - 1] != "/") or (
                index != last and topic_filter[index + 1] != "/"
            ):
                raise error(
                    f"topic filter {_show(topic_filter)}: '+' must occupy a whole level "
                    "[MQTT-4.7.1-2]",
                    _FILTER_INVALID,
                )
            index = topic_filter.find("+", index + 1)
    if max_levels is not None and topic_filter.count("/") >= max_levels:
        raise error(
            f"topic filter {_show(topic_filter)} has {topic_level_count(topic_filter)} "
            f"levels, more than the limit of {max_levels}",
            _FILTER_INVALID,
        )


def topic_matches(topic_filter: str, topic_name: str) -> bool:
    """Return whether *topic_filter* selects messages published to *topic_name*.

    The rules of MQTT section 4.7: a non-wildcard level matches the same level
    character for character, with no normalization [MQTT-4.7.3-4]; ``+`` matches
    exactly one level, which may be empty (``sport/+`` matches ``sport/`` but not
    ``sport``); ``#`` matches the parent level and any number of child levels
    (``sport/#`` matches ``sport``, ``sport/`` and ``sport/tennis/player1``); and
    a filter starting with a wildcard never matches a name starting with ``$``
    [MQTT-4.7.2-1], so ``#`` does not receive ``$SYS/...`` messages.

    *topic_filter* is a plain filter: a shared subscription filter
    ``$share/{ShareName}/{filter}`` matches what its ``{filter}`` matches
    (section 4.8.2), so pass :attr:`SharedSubscription.topic_filter` from
    :func:`parse_shared_subscription` instead. Both arguments are assumed valid
    (see :func:`validate_topic_filter` and :func:`validate_topic_name`); the
    result for invalid ones is unspecified.
    """
    if topic_name.startswith("$") and topic_filter.startswith(("+", "#")):
        # [MQTT-4.7.2-1] The Server MUST NOT match Topic Filters starting with a
        # wildcard character (# or +) with Topic Names beginning with a $ character.
        return False
    if "+" not in topic_filter and "#" not in topic_filter:
        return topic_filter == topic_name
    filter_levels = topic_filter.split("/")
    name_levels = topic_name.split("/")
    name_depth = len(name_levels)
    for index, level in enumerate(filter_levels):
        if level == "#":
            # Every earlier level matched, so the name has at least `index`
            # levels: '#' covers the parent (exactly `index`) and any children.
            return True
        if index >= name_depth:
            return False
        if level != "+" and level != name_levels[index]:
            return False
    return len(filter_levels) == name_depth


def is_shared_filter(topic_filter: str) -> bool:
    """Return whether *topic_filter* is a shared subscription filter (MQTT 5.0).

    True when it starts with ``$share/`` [MQTT-4.8.2-1]; it may still be
    malformed, which :func:`parse_shared_subscription` reports. ``$share`` alone,
    with no ``/``, is an ordinary topic filter.
    """
    return topic_filter.startswith(SHARED_SUBSCRIPTION_PREFIX)


@attrs.frozen
class SharedSubscription:
    """The parts of a shared subscription filter ``$share/{group}/{topic_filter}``.

    Messages are matched against :attr:`topic_filter` alone: "the $share and
    {ShareName} portions of the Topic Filter are not taken into account when
    matching against publications" (MQTT 5.0 section 4.8.2). Subscriptions with
    the same filter but different groups are distinct shared subscriptions.

    Build one with :func:`parse_shared_subscription`, which validates both parts;
    the constructor does not.

    :ivar group: the ShareName: at least one character, without ``/``, ``+``
        or ``#``.
    :ivar topic_filter: the topic filter the subscription matches messages with.
    """

    group: str
    topic_filter: str

    @property
    def share_filter(self) -> str:
        """The full ``$share/{group}/{topic_filter}`` string, as SUBSCRIBE carries it."""
        return f"{SHARED_SUBSCRIPTION_PREFIX}{self.group}/{self.topic_filter}"


def parse_shared_subscription(
    topic_filter: str,
    *,
    error: type[ProtocolError] = LocalProtocolError,
    max_levels: int | None = None,
) -> SharedSubscription | None:
    """Split a shared subscription filter into its group and topic filter.

    :param topic_filter: a topic filter from SUBSCRIBE or UNSUBSCRIBE.
    :param error: the exception class to raise, as for :func:`validate_topic_name`.
    :param max_levels: passed to :func:`validate_topic_filter` for the inner filter.
    :return: ``None`` if *topic_filter* does not start with ``$share/`` (it is not
        a shared subscription); otherwise its :class:`SharedSubscription`, with
        the inner filter validated by :func:`validate_topic_filter`.
    :raises ProtocolError: an instance of *error* with reason code
        ``TOPIC_FILTER_INVALID`` (0x8F) if the filter starts with ``$share/`` but
        the ShareName is empty or contains ``+``, ``#`` or U+0000, no ``/`` and
        topic filter follow the ShareName, or the topic filter is invalid.

    Only MQTT 5.0 defines shared subscriptions; the caller decides whether to
    call this for 3.1/3.1.1 connections. A server that does not support them
    answers with ``SHARED_SUBSCRIPTIONS_NOT_SUPPORTED`` (0x9E) instead.
    """
    if not topic_filter.startswith(SHARED_SUBSCRIPTION_PREFIX):
        return None
    group, separator, inner = topic_filter[len(SHARED_SUBSCRIPTION_PREFIX) :].partition("/")
    if not group:
        # [MQTT-4.8.2-1] A Shared Subscription's Topic Filter MUST start with
        # $share/ and MUST contain a ShareName that is at least one character long.
        raise error(
            f"shared subscription {_show(topic_filter)} has an empty ShareName [MQTT-4.8.2-1]",
            _FILTER_INVALID,
        )
    if "+" in group or "#" in group or "\x00" in group:
        # [MQTT-4.8.2-2] The ShareName MUST NOT contain the characters "/", "+" or
        # "#" ('/' cannot occur: it ends the ShareName). U+0000: [MQTT-1.5.4-2].
        raise error(
            f"shared subscription {_show(topic_filter)}: the ShareName must not contain "
            "'+', '#' or U+0000 [MQTT-4.8.2-2]",
            _FILTER_INVALID,
        )
    if not separator or not inner:
        # [MQTT-4.8.2-2] The ShareName MUST be followed by a "/" character. This "/"
        # character MUST be followed by a Topic Filter.
        raise error(
            f"shared subscription {_show(topic_filter)} has no topic filter after the "
            "ShareName [MQTT-4.8.2-2]",
            _FILTER_INVALID,
        )
    validate_topic_filter(inner, error=error, max_levels=max_levels)
    if _too_long(topic_filter):
        # The inner filter can be short enough while the whole string is not.
        raise error(
            f"topic filter {_show(topic_filter)} encodes to more than {MAX_TOPIC_LENGTH} "
            "bytes [MQTT-4.7.3-3]",
            _FILTER_INVALID,
        )
    return SharedSubscription(group, inner)


class _Node(Generic[T]):
    """One level of a :class:`SubscriptionTree`.

    ``values`` holds the subscriptions whose filter ends at this node, keyed by
    subscriber; ``topic_filter`` is that filter, kept so :meth:`matches` can
    report it without rebuilding it from the path.
    """

    __slots__ = ("children", "hash", "plus", "topic_filter", "values")

    def __init__(self) -> None:
        self.children: dict[str, _Node[T]] = {}
        self.values: dict[Hashable, T] = {}
        self.topic_filter = ""
        # The '+' and '#' children again, so that matching, which looks for
        # them at every level, reads an attribute instead of a dict.
        self.plus: _Node[T] | None = None
        self.hash: _Node[T] | None = None

    def set_child(self, level: str, child: _Node[T] | None) -> None:
        """Add (or with None, remove) the child for *level*."""
        if child is None:
            del self.children[level]
        else:
            self.children[level] = child
        if level == "+":
            self.plus = child
        elif level == "#":
            self.hash = child


class SubscriptionTree(Generic[T]):
    """Topic filters and their subscribers, for a server's subscriptions.

    Each entry is a (topic filter, key, value) triple: *key* identifies the
    subscriber (a client identifier, or a (ShareName, client identifier) pair),
    and at most one entry exists per (filter, key), as a Session has at most one
    subscription per filter [MQTT-3.8.4-3]. Store a shared subscription under
    its inner :attr:`SharedSubscription.topic_filter`, since that is what it
    matches with.

    A filter without wildcards matches one topic name, itself [MQTT-4.7.3-4]:
    those are kept in a dict by name (one subscriber's as a ``(key, value)``
    pair). Filters with ``+`` or ``#`` are kept in a trie keyed by level, walked
    only when it holds any, and then only along the branches a topic name can
    match: at each level the exact, ``+`` and ``#`` children. A lookup costs one
    dict lookup plus the depth of the name times the wildcard branches on its
    path, never the number of subscriptions. :meth:`remove` prunes nodes left
    empty, so memory stays proportional to the live subscriptions.

    Not thread-safe; :meth:`matches` returns a list, so the tree may be changed
    while the result is used.
    """

    __slots__ = ("_exact", "_len", "_root")

    def __init__(self) -> None:
        #: Filters without wildcards -> (key, value), or key -> value for several.
        self._exact: dict[str, tuple[Hashable, T] | dict[Hashable, T]] = {}
        #: The trie of the filters with wildcards (and the levels leading to them).
        self._root: _Node[T] = _Node()
        self._len = 0

    def __len__(self) -> int:
        """The number of (filter, key) entries."""
        return self._len

    def __iter__(self) -> Iterator[tuple[str, Hashable, T]]:
        """Every (topic filter, key, value) entry, in no particular order."""
        for topic_filter, entry in self._exact.items():
            for key, value in _pairs(entry):
                yield topic_filter, key, value
        stack = [self._root]
        while stack:
            node = stack.pop()
            for key, value in node.values.items():
                yield node.topic_filter, key, value
            stack.extend(node.children.values())

    def add(self, topic_filter: str, key: Hashable, value: T) -> bool:
        """Store *value* for *key* under *topic_filter*, replacing any previous one.

        :return: ``True`` if the entry is new, ``False`` if it replaced one.
        :raises LocalProtocolError: if *topic_filter* is not a valid topic filter
            (see :func:`validate_topic_filter`).
        """
        validate_topic_filter(topic_filter)
        if "+" not in topic_filter and "#" not in topic_filter:
            entry = self._exact.get(topic_filter)
            if entry is None or (type(entry) is tuple and entry[0] == key):
                self._exact[topic_filter] = (key, value)
                self._len += entry is None
                return entry is None
            if type(entry) is tuple:
                entry = self._exact[topic_filter] = {entry[0]: entry[1]}
            values: dict[Hashable, T] = entry  # type: ignore[assignment]  # the dict
        else:
            node = self._root
            for level in topic_filter.split("/"):
                child = node.children.get(level)
                if child is None:
                    child = _Node()
                    node.set_child(level, child)
                node = child
            node.topic_filter = topic_filter
            values = node.values
        is_new = key not in values
        values[key] = value
        if is_new:
            self._len += 1
        return is_new

    def get(self, topic_filter: str, key: Hashable) -> T | None:
        """Return the value stored for *key* under *topic_filter*, or ``None``."""
        if "+" not in topic_filter and "#" not in topic_filter:
            return dict(_pairs(self._exact.get(topic_filter))).get(key)
        node = self._root
        for level in topic_filter.split("/"):
            child = node.children.get(level)
            if child is None:
                return None
            node = child
        return node.values.get(key)

    def remove(self, topic_filter: str, key: Hashable) -> bool:
        """Remove the entry for *key* under *topic_filter*.

        Nodes left with neither entries nor children are deleted.

        :return: ``True`` if the entry existed, ``False`` otherwise.
        """
        if "+" not in topic_filter and "#" not in topic_filter:
            return self._remove_exact(topic_filter, key)
        node = self._root
        path: list[tuple[_Node[T], str]] = []
        for level in topic_filter.split("/"):
            child = node.children.get(level)
            if child is None:
                return False
            path.append((node, level))
            node = child
        if key not in node.values:
            return False
        del node.values[key]
        self._len -= 1
        # Prune from the leaf up while the node is empty.
        for parent, level in reversed(path):
            child = parent.children[level]
            if child.values or child.children:
                break
            parent.set_child(level, None)
        return True

    def _remove_exact(self, topic_filter: str, key: Hashable) -> bool:
        exact = self._exact
        entry = exact.get(topic_filter)
        if type(entry) is tuple and entry[0] == key:
            del exact[topic_filter]
        elif type(entry) is dict and key in entry:
            del entry[key]
            if len(entry) == 1:
                exact[topic_filter] = next(iter(entry.items()))
        else:
            return False
        self._len -= 1
        return True

    def matches(self, topic_name: str) -> list[tuple[str, Hashable, T]]:
        """Return every (topic filter, key, value) whose filter matches *topic_name*.

        The result is what filtering all entries with :func:`topic_matches` gives,
        in no particular order. A key subscribed with several matching filters
        appears once per filter; the server decides how to combine them
        (section 4.8.1). *topic_name* is assumed valid (no wildcards).
        """
        result = [(topic_name, k, v) for k, v in _pairs(self._exact.get(topic_name))]
        if self._root.children:
            for node in self._walk(topic_name):
                filter_ = node.topic_filter
                result.extend((filter_, key, value) for key, value in node.values.items())
        return result

    def values_matching(self, topic_name: str) -> list[T]:
        """The values of :meth:`matches`, without their filters and keys
        (what a server routes with); the cheaper of the two."""
        entry = self._exact.get(topic_name)
        if entry is None:
            result = []
        elif type(entry) is tuple:
            result = [entry[1]]
        else:
            result = list(entry.values())  # type: ignore[union-attr]  # the dict
        if self._root.children:
            for node in self._walk(topic_name):
                result.extend(node.values.values())
        return result

    def _walk(self, topic_name: str) -> list[_Node[T]]:
        """The trie's nodes whose filters (all with wildcards) match *topic_name*."""
        found: list[_Node[T]] = []
        append = found.append
        # [MQTT-4.7.2-1] Filters starting with a wildcard never match a name
        # starting with '$': skip the root's '+' and '#' children for such names.
        wildcards = not topic_name.startswith("$")
        # Level by level, the nodes whose filters match the name so far.
        nodes: list[_Node[T]] = [self._root]
        for level in topic_name.split("/"):
            following: list[_Node[T]] = []
            for node in nodes:
                if wildcards:
                    # A '#' child matches this level and everything below.
                    if node.hash is not None:
                        append(node.hash)
                    if node.plus is not None:
                        following.append(node.plus)
                child = node.children.get(level)
                if child is not None:
                    following.append(child)
            if not following:
                return found
            nodes = following
            wildcards = True
        for node in nodes:
            # "a/#" also matches "a" itself (MQTT 5.0 section 4.7.1.2).
            if node.hash is not None:
                append(node.hash)
            append(node)
        return found


def _pairs(entry: tuple[Hashable, T] | dict[Hashable, T] | None) -> Iterable[tuple[Hashable, T]]:
    """The (key, value) pairs of an entry of ``SubscriptionTree._exact``."""
    if type(entry) is tuple:
        return (entry,)
    return () if entry is None else entry.items()  # type: ignore[union-attr]  # the dict
