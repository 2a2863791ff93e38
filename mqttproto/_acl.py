"""Access control lists in mosquitto's format (re-exported by :mod:`mqttproto.auth`).

Pure logic except :meth:`AclFile.load`. See ``docs/broker-auth.rst`` for the
format; in short::

    # anonymous clients (before the first "user" line)
    topic read public/#
    user alice
    topic readwrite alice/#
    topic deny alice/secret
    # every client; %c is the client id, %u the username
    pattern write devices/%c/status
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

import attrs

from .errors import LocalProtocolError
from .topics import parse_shared_subscription, topic_matches, validate_topic_filter

__all__ = ["Access", "AclAuthorizer", "AclFile", "AclRule", "filter_includes"]


class Access(enum.Enum):
    """The access an ACL line grants (or, for :attr:`DENY`, takes away)."""

    READ = "read"
    WRITE = "write"
    READWRITE = "readwrite"
    DENY = "deny"

    @property
    def reads(self) -> bool:
        return self in (Access.READ, Access.READWRITE)

    @property
    def writes(self) -> bool:
        return self in (Access.WRITE, Access.READWRITE)


@attrs.frozen
class AclRule:
    """One ``topic`` or ``pattern`` line.

    :ivar access: what the line grants or denies.
    :ivar topic_filter: the topic filter; for a pattern, with ``%c`` / ``%u`` in it.
    :ivar line: the 1-based line number in the file (0 if built in code).
    """

    access: Access
    topic_filter: str
    line: int = 0


def filter_includes(outer: str, inner: str) -> bool:
    """Return whether every topic name *inner* matches is also matched by *outer*.

    Both are valid plain topic filters (no ``$share/`` prefix). This is the
    subscription check of an ACL: a client may subscribe to *inner* if a read
    grant *outer* covers everything the subscription could deliver. So
    ``sensors/#`` includes ``sensors/+/temp`` and ``sensors`` itself, ``+/temp``
    includes ``kitchen/temp``, but ``sensors/+`` does not include ``sensors/#``
    (which also matches ``sensors`` and ``sensors/a/b``).

    The ``$`` rule [MQTT-4.7.2-1] is respected: a filter starting with a wildcard
    matches no topic starting with ``$``, so ``#`` does not include ``$SYS/#``.
    """
    outer_levels = outer.split("/")
    inner_levels = inner.split("/")
    first = inner_levels[0]
    if first not in ("+", "#") and first.startswith("$") and outer_levels[0] in ("+", "#"):
        # inner matches only $-topics here, which a leading wildcard never matches.
        return False
    for index, level in enumerate(outer_levels):
        if level == "#":
            # outer matches anything with at least `index` levels and these
            # prefixes; every topic inner matches has its first `index` levels.
            return True
        if index >= len(inner_levels):
            # inner's topics end here; outer needs another level.
            return False
        inner_level = inner_levels[index]
        if inner_level == "#":
            if index == 0:
                # inner is "#": every topic not starting with "$", each at least
                # one level deep. Besides "#" itself only "+/#" matches them all.
                return outer_levels == ["+", "#"]
            if index == 1 and inner_levels[0] == "":
                # inner is "/#": its parent would be the empty topic name, which
                # does not exist, so it matches only names of two or more
                # levels, as outer does when its rest is "+/#".
                return outer_levels[1:] == ["+", "#"]
            # inner also matches the parent topic (exactly `index` levels), which
            # outer cannot: its level `index` is not '#'.
            return False
        if level == "+":
            continue
        if inner_level != level:
            # A literal against '+' or a different literal.
            return False
    return len(outer_levels) == len(inner_levels)


_ACCESS_WORDS = frozenset(access.value for access in Access)


def _parse_access(rest: str) -> tuple[Access, str]:
    """Split ``[read|write|readwrite|deny] <topic>``; the keyword is optional."""
    words = rest.split(None, 1)
    if len(words) == 2 and words[0] in _ACCESS_WORDS:
        return Access(words[0]), words[1].strip()
    # mosquitto: without a keyword the access is readwrite and the rest (which
    # may contain spaces: topics can) is the topic.
    return Access.READWRITE, rest.strip()


def _suspect_access(rest: str, topic_filter: str) -> str | None:
    """The first word of a keyword-less rule's filter when it reads like a
    misspelt access keyword: a lone word (no level separator, wildcard or
    placeholder) followed by a space, as in ``maybe alice/#``."""
    if topic_filter != rest.strip():
        return None  # it had a keyword
    first, *more = topic_filter.split(None, 1)
    if not more or any(mark in first for mark in "/+#%"):
        return None
    return first


def _frozen_users(users: Mapping[str, tuple[AclRule, ...]]) -> Mapping[str, tuple[AclRule, ...]]:
    # A read-only copy: the file object is frozen, so is its user table.
    return MappingProxyType(dict(users))


@attrs.frozen
class AclFile:
    """A parsed ACL file: the rules for anonymous clients, per user, and patterns.

    :ivar anonymous: ``topic`` lines before the first ``user`` line; they apply to
        clients that connected without a username.
    :ivar users: username → the ``topic`` lines after its ``user`` line(s).
    :ivar patterns: ``pattern`` lines, which apply to every client after
        substituting ``%c`` (client id) and ``%u`` (username).
    """

    anonymous: tuple[AclRule, ...] = ()
    users: Mapping[str, tuple[AclRule, ...]] = attrs.field(
        factory=dict, converter=_frozen_users, hash=False
    )
    patterns: tuple[AclRule, ...] = ()
    #: Lines that parse but look like mistakes (``topic raed a/#``: the
    #: filter is ``raed a/#``, with readwrite), each naming its line; the
    #: broker logs them.
    warnings: tuple[str, ...] = attrs.field(default=(), eq=False)

    @classmethod
    def parse(cls, text: str) -> AclFile:
        """Parse ACL file text.

        :raises ValueError: naming the 1-based line number of the first line with
            an unknown keyword, a missing username or topic, or an invalid filter.
        """
        anonymous: list[AclRule] = []
        users: dict[str, list[AclRule]] = {}
        patterns: list[AclRule] = []
        warnings: list[str] = []
        current = anonymous
        # Lines end at "\n" only, so line numbers are the ones an editor shows.
        for number, raw in enumerate(text.split("\n"), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            keyword, *tail = line.split(None, 1)
            rest = tail[0].strip() if tail else ""
            try:
                if keyword == "user":
                    if not rest:
                        raise ValueError("'user' needs a username")
                    current = users.setdefault(rest, [])
                elif keyword in ("topic", "pattern"):
                    access, topic_filter = _parse_access(rest)
                    if not topic_filter:
                        raise ValueError(f"'{keyword}' needs a topic filter")
                    try:
                        validate_topic_filter(topic_filter)
                    except LocalProtocolError as exc:
                        raise ValueError(str(exc)) from exc
                    suspect = _suspect_access(rest, topic_filter)
                    if suspect is not None:
                        warnings.append(
                            f"line {number}: {keyword} {rest!r} gives readwrite on the filter"
                            f" {topic_filter!r} ({suspect!r} is not read, write, readwrite"
                            " or deny)"
                        )
                    rule = AclRule(access, topic_filter, number)
                    (patterns if keyword == "pattern" else current).append(rule)
                else:
                    raise ValueError(
                        f"unknown keyword {keyword!r} (expected user, topic or pattern)"
                    )
            except ValueError as exc:
                raise ValueError(f"ACL file line {number}: {exc}") from exc
        return cls(
            tuple(anonymous),
            {name: tuple(rules) for name, rules in users.items()},
            tuple(patterns),
            tuple(warnings),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AclFile:
        """Read and :meth:`parse` the ACL file at *path* (UTF-8)."""
        return cls.parse(Path(path).read_text(encoding="utf-8"))


_WIDENING = ("+", "#", "/")
_PLACEHOLDER = re.compile("%[cu]")


def _substitute(rule: AclRule, client_id: str, username: str | None) -> str | None:
    """The pattern's filter for this client; ``None`` if the rule does not apply.

    A substituted value is data, never syntax: a client id such as ``#`` or
    ``a/b`` must not turn ``devices/%c/status`` into a wider filter. So a grant
    whose substitution would contain ``+``, ``#`` or ``/`` (or put a ``$`` at the
    start of the filter, reaching ``$SYS``) does not apply, and a deny with such a
    substitution denies everything from that level down instead (the filter is cut
    there and ends in ``#``): a value with ``/`` spans an unknown number of levels.
    An odd client id or username can only lose access, never gain it.
    """
    if "%u" in rule.topic_filter and username is None:
        # A pattern naming the username says nothing about anonymous clients.
        return None
    levels = rule.topic_filter.split("/")
    for index, level in enumerate(levels):
        if "%" not in level:
            continue
        # One pass, so a client id containing "%u" is not substituted again.
        value = _PLACEHOLDER.sub(
            lambda match: client_id if match.group() == "%c" else username or "", level
        )
        unsafe = any(char in value for char in _WIDENING) or (
            index == 0 and value.startswith("$") and not level.startswith("$")
        )
        if unsafe:
            if rule.access is not Access.DENY:
                return None
            return "/".join([*levels[:index], "#"])
        levels[index] = value
    return "/".join(levels)


class AclAuthorizer:
    """An :class:`~mqttproto.auth.Authorizer` that enforces an :class:`AclFile`.

    Everything not granted is denied. For a client, the rules that apply are the
    anonymous ``topic`` lines (no username) or the ``topic`` lines of its
    username, plus every ``pattern`` line. Then:

    - publishing to a topic needs a ``write``/``readwrite`` rule matching it;
    - receiving a message needs a ``read``/``readwrite`` rule matching its topic;
    - subscribing to a filter needs a read rule whose filter includes it (see
      :func:`filter_includes`), so ``sensors/#`` allows ``sensors/+/temp``;
    - a matching ``deny`` rule refuses, whatever grants it. A subscription is
      refused when a deny filter includes it entirely; one that merely overlaps a
      deny (``sensors/#`` against ``deny sensors/secret``) is allowed, and
      :meth:`may_receive` keeps the denied messages from it, so the broker must
      check every delivery.

    A shared subscription ``$share/group/filter`` is checked as ``filter``.
    Rules are scanned in order, so the cost is linear in the number of rules
    that apply to the client.
    """

    def __init__(self, acl: AclFile) -> None:
        self.acl = acl

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AclAuthorizer:
        """An authorizer for the ACL file at *path*."""
        return cls(AclFile.load(path))

    def _rules(self, client_id: str, username: str | None) -> Iterator[tuple[Access, str]]:
        own = self.acl.anonymous if username is None else self.acl.users.get(username, ())
        for rule in own:
            yield rule.access, rule.topic_filter
        for rule in self.acl.patterns:
            topic_filter = _substitute(rule, client_id, username)
            if topic_filter is not None:
                yield rule.access, topic_filter

    def _may(self, client_id: str, username: str | None, topic: str, write: bool) -> bool:
        granted = False
        for access, topic_filter in self._rules(client_id, username):
            if not topic_matches(topic_filter, topic):
                continue
            if access is Access.DENY:
                return False
            granted = granted or (access.writes if write else access.reads)
        return granted

    def may_publish(self, client_id: str, username: str | None, topic: str) -> bool:
        """Whether the client may publish to the topic name *topic*."""
        return self._may(client_id, username, topic, write=True)

    def may_receive(self, client_id: str, username: str | None, topic: str) -> bool:
        """Whether a message published to *topic* may be delivered to the client."""
        return self._may(client_id, username, topic, write=False)

    def may_subscribe(self, client_id: str, username: str | None, topic_filter: str) -> bool:
        """Whether the client may subscribe to *topic_filter* (validated by the caller)."""
        try:
            shared = parse_shared_subscription(topic_filter)
        except LocalProtocolError:
            return False
        if shared is not None:
            topic_filter = shared.topic_filter
        granted = False
        for access, acl_filter in self._rules(client_id, username):
            if not filter_includes(acl_filter, topic_filter):
                continue
            if access is Access.DENY:
                return False
            granted = granted or access.reads
        return granted
