"""Routing: which sessions a PUBLISH reaches, and with what options.

Subscriptions live in a :class:`~mqttproto.topics.SubscriptionTree` keyed by
client identifier (plain subscriptions) or ``(ShareName, client identifier)``
(shared ones, stored under their inner filter). A lookup finds the filters without
wildcards in a dict and walks the trie of the others only along the branches
the topic can match; its result is cached per topic until a subscription that
can match the topic changes, so a steady stream of messages on the same
topics costs one dict lookup each, and a message on a topic the cache does
not hold a lookup in the tree.

Overlapping subscriptions (MQTT 5.0 section 4.8.1 leaves the choice to the
server): a client whose several plain subscriptions match one topic gets the
message **once**, at the highest QoS granted among them, with every matching
Subscription Identifier [MQTT-3.3.4-3] / [MQTT-3.3.4-5], and with the retain
flag kept if any of them asked for Retain As Published. Subscriptions with
No Local are left out of that aggregate when the publisher is the client
itself [MQTT-3.8.3-3]. A shared subscription is delivered separately from a
client's plain ones: to one member of each group (MQTT 5.0 section 4.8.2),
chosen round-robin among the members whose client is connected (any member
if none is).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Generic, Protocol, TypeVar

from ..topics import SubscriptionTree

__all__ = ["Route", "Router", "Sub", "Subscriber", "Target"]


class Subscriber(Protocol):
    """What the router needs of a subscription's session."""

    @property
    def client_id(self) -> str: ...

    @property
    def connected(self) -> bool: ...


S = TypeVar("S", bound=Subscriber)


class Sub(Generic[S]):
    """One subscription of a session (``group`` is the ShareName, or None)."""

    __slots__ = (
        "group",
        "no_local",
        "qos",
        "retain_as_published",
        "retain_handling",
        "session",
        "sub_id",
        "topic_filter",
    )

    def __init__(
        self,
        session: S,
        topic_filter: str,
        qos: int,
        *,
        no_local: bool = False,
        retain_as_published: bool = False,
        retain_handling: int = 0,
        sub_id: int | None = None,
        group: str | None = None,
    ) -> None:
        self.session = session
        #: The filter messages are matched with (the inner one of a shared subscription).
        self.topic_filter = topic_filter
        self.qos = qos
        self.no_local = no_local
        self.retain_as_published = retain_as_published
        self.retain_handling = retain_handling
        self.sub_id = sub_id
        self.group = group

    @property
    def key(self) -> Hashable:
        client_id = self.session.client_id
        return client_id if self.group is None else (self.group, client_id)


class Target(Generic[S]):
    """A client's aggregate of its matching plain subscriptions for one topic.

    ``local_*`` is the aggregate without the No Local subscriptions, used when
    the client published the message itself; ``has_local`` says whether any
    subscription is left then.
    """

    __slots__ = (
        "has_local",
        "local_qos",
        "local_rap",
        "local_sub_ids",
        "qos",
        "rap",
        "session",
        "sub_ids",
    )

    def __init__(self, session: S) -> None:
        self.session = session
        self.qos = 0
        self.rap = False
        self.sub_ids: tuple[int, ...] = ()
        self.has_local = False
        self.local_qos = 0
        self.local_rap = False
        self.local_sub_ids: tuple[int, ...] = ()

    @classmethod
    def of(cls, sub: Sub[S]) -> Target[S]:
        """The target of a client with this one matching subscription."""
        target = cls.__new__(cls)
        target.session = sub.session
        target.qos = qos = sub.qos
        target.rap = rap = sub.retain_as_published
        target.sub_ids = sub_ids = () if sub.sub_id is None else (sub.sub_id,)
        if sub.no_local:
            target.has_local = False
            target.local_qos = 0
            target.local_rap = False
            target.local_sub_ids = ()
        else:
            target.has_local = True
            target.local_qos = qos
            target.local_rap = rap
            target.local_sub_ids = sub_ids
        return target

    def add(self, sub: Sub[S]) -> None:
        if sub.qos > self.qos:
            self.qos = sub.qos
        self.rap = self.rap or sub.retain_as_published
        if sub.sub_id is not None:
            self.sub_ids = (*self.sub_ids, sub.sub_id)
        if not sub.no_local:
            self.has_local = True
            if sub.qos > self.local_qos:
                self.local_qos = sub.qos
            self.local_rap = self.local_rap or sub.retain_as_published
            if sub.sub_id is not None:
                self.local_sub_ids = (*self.local_sub_ids, sub.sub_id)


class Route(Generic[S]):
    """What one topic reaches: plain targets, and shared groups to pick from."""

    __slots__ = ("groups", "plan", "targets")

    def __init__(
        self, targets: list[Target[S]], groups: list[tuple[tuple[str, str], list[Sub[S]]]]
    ) -> None:
        self.targets = targets
        self.groups = groups
        #: What the router's user derives from the route and keeps with it
        #: (the broker's fan-out plan); dropped with the route.
        self.plan: Any = None

    def __bool__(self) -> bool:
        return bool(self.targets or self.groups)


V = TypeVar("V")


def _put(cache: dict[str, V], topic: str, value: V, size: int) -> V:
    """Cache ``value`` for ``topic``, emptying the cache first if full."""
    if len(cache) >= size:
        cache.clear()
    cache[topic] = value
    return value


#: The route of a topic nobody subscribes to; shared, never modified.
_NO_ROUTE: Route[Subscriber] = Route([], [])


class Router(Generic[S]):
    """The subscriptions (a :class:`~mqttproto.topics.SubscriptionTree`), a
    per-topic route cache and the shared-group cursors.

    Two caches: a topic's :class:`Route`, or the :class:`Sub` itself when
    that one plain subscription is all the topic reaches (the common case on
    a big broker: a client per topic). An entry of the second, and one of a
    topic nobody subscribes to, makes no object, so caches that turn over
    (more topics than they hold) leave no garbage behind: routes that
    outlive a few collections and then die are what make the cyclic GC's
    full collections frequent, and a full collection walks every object of
    every session. Kept apart, the topics with a Route are read as before,
    with nothing to tell them from the others. A subscription without
    wildcards can only change the route of the topic it names, so only that
    entry goes; one with wildcards empties the caches.
    """

    __slots__ = ("_cache", "_cache_size", "_cursors", "_single", "tree")

    def __init__(self, cache_size: int = 4096) -> None:
        self.tree: SubscriptionTree[Sub[S]] = SubscriptionTree()
        #: Topic -> its route: each holds ``cache_size`` topics at most.
        self._cache: dict[str, Route[S]] = {}
        self._single: dict[str, Sub[S]] = {}
        self._cache_size = cache_size
        #: (ShareName, filter) -> how many messages the group has had.
        self._cursors: dict[tuple[str, str], int] = {}

    def __len__(self) -> int:
        return len(self.tree)

    def _forget(self, topic_filter: str) -> None:
        """Drop the cached routes a change of ``topic_filter`` may change."""
        if "+" in topic_filter or "#" in topic_filter:
            self._cache.clear()
            self._single.clear()
        else:
            # [MQTT-4.7.3-4]: a filter without wildcards matches itself only.
            self._cache.pop(topic_filter, None)
            self._single.pop(topic_filter, None)

    def add(self, sub: Sub[S]) -> bool:
        """Store ``sub`` (replacing the session's one with the same filter)."""
        self._forget(sub.topic_filter)
        return self.tree.add(sub.topic_filter, sub.key, sub)

    def remove(self, sub: Sub[S]) -> bool:
        self._forget(sub.topic_filter)
        return self.tree.remove(sub.topic_filter, sub.key)

    def lookup(self, topic: str) -> Route[S] | Sub[S]:
        """What ``topic`` reaches (cached): the one plain subscription that
        matches it, or else its :class:`Route`."""
        cached = self._cache.get(topic)
        if cached is not None:
            return cached
        one = self._single.get(topic)
        if one is not None:
            return one
        return self.resolve(topic)

    def resolve(self, topic: str) -> Route[S] | Sub[S]:
        """:meth:`lookup` for a topic neither cache holds: from the tree,
        then cached."""
        subs = self.tree.values_matching(topic)
        if len(subs) == 1 and subs[0].group is None:
            return _put(self._single, topic, subs[0], self._cache_size)
        if not subs:
            route: Route[S] = _NO_ROUTE  # type: ignore[assignment]  # empty: any session type
        else:
            route = self._build(subs)
        return _put(self._cache, topic, route, self._cache_size)

    def route(self, topic: str) -> Route[S]:
        """The targets and shared groups of ``topic`` (cached: a topic of one
        plain subscription gets its Route cached too, for the messages that
        take the general path, QoS 1 and 2 among them)."""
        found = self.lookup(topic)
        if isinstance(found, Sub):
            return _put(self._cache, topic, Route([Target.of(found)], []), self._cache_size)
        return found

    def _build(self, subs: list[Sub[S]]) -> Route[S]:
        targets: dict[str, Target[S]] = {}
        groups: dict[tuple[str, str], list[Sub[S]]] = {}
        for sub in subs:
            if sub.group is None:
                client_id = sub.session.client_id
                target = targets.get(client_id)
                if target is None:
                    target = targets[client_id] = Target(sub.session)
                target.add(sub)
            else:
                groups.setdefault((sub.group, sub.topic_filter), []).append(sub)
        for members in groups.values():
            # A stable order, so that round-robin is fair whatever the trie did.
            members.sort(key=lambda s: s.session.client_id)
        return Route(list(targets.values()), list(groups.items()))

    def pick(self, group: tuple[str, str], members: list[Sub[S]]) -> Sub[S]:
        """The member of a shared group that gets the next message."""
        count = len(members)
        cursor = self._cursors.get(group, 0)
        chosen = members[cursor % count]
        for step in range(count):
            candidate = members[(cursor + step) % count]
            if candidate.session.connected:
                chosen = candidate
                cursor += step
                break
        self._cursors[group] = cursor + 1
        return chosen

    def forget_group(self, group: tuple[str, str]) -> None:
        self._cursors.pop(group, None)
