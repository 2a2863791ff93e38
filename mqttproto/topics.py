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

from collections.abc import Hashable, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from ._topic_syntax import (
    MAX_TOPIC_LENGTH,
    SHARED_SUBSCRIPTION_PREFIX,
    SharedSubscription,
    is_shared_filter,
    parse_shared_subscription,
    topic_level_count,
    topic_matches,
    validate_topic_filter,
    validate_topic_name,
)

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


#: The ``children`` or ``values`` of a node that has none: one read-only
#: mapping shared by every node, so that a leaf keeps no empty children dict
#: and an inner level no empty values dict (64 bytes each, on every
#: subscription's path). Only :meth:`_Node.set_child`, :meth:`_Node.put` and
#: :meth:`_Node.drop` change a node's tables.
_NONE: Mapping[Any, Any] = MappingProxyType({})


class _Node(Generic[T]):
    """One level of a :class:`SubscriptionTree`.

    ``values`` holds the subscriptions whose filter ends at this node, keyed by
    subscriber; ``topic_filter`` is that filter, kept so :meth:`matches` can
    report it without rebuilding it from the path. Both tables are read-only
    views here (the shared empty one while there is nothing).
    """

    __slots__ = ("children", "hash", "plus", "topic_filter", "values")

    def __init__(self) -> None:
        self.children: Mapping[str, _Node[T]] = _NONE
        self.values: Mapping[Hashable, T] = _NONE
        self.topic_filter = ""
        # The '+' and '#' children again, so that matching, which looks for
        # them at every level, reads an attribute instead of a dict.
        self.plus: _Node[T] | None = None
        self.hash: _Node[T] | None = None

    def set_child(self, level: str, child: _Node[T] | None) -> None:
        """Add (or with None, remove) the child for *level*."""
        children = self.children
        if child is None:
            assert isinstance(children, dict)
            del children[level]
            if not children:
                self.children = _NONE
        else:
            if not isinstance(children, dict):
                children = self.children = {}
            children[level] = child
        if level == "+":
            self.plus = child
        elif level == "#":
            self.hash = child

    def put(self, key: Hashable, value: T) -> bool:
        """Store *value* for *key*; whether the key is new."""
        values = self.values
        if not isinstance(values, dict):
            values = self.values = {}
        is_new = key not in values
        values[key] = value
        return is_new

    def drop(self, key: Hashable) -> bool:
        """Remove the entry for *key*; whether there was one."""
        values = self.values
        if key not in values:
            return False
        assert isinstance(values, dict)
        del values[key]
        if not values:
            self.values = _NONE
        return True


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
            is_new = key not in values
            values[key] = value
        else:
            node = self._root
            for level in topic_filter.split("/"):
                child = node.children.get(level)
                if child is None:
                    child = _Node()
                    if isinstance(key, str) and level == key:
                        # A level that spells the subscriber's key (a client
                        # identifier: "devices/<client id>/+") keeps the key's
                        # string rather than a copy of its own.
                        level = key
                    node.set_child(level, child)
                node = child
            node.topic_filter = topic_filter
            is_new = node.put(key, value)
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
        if not node.drop(key):
            return False
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
