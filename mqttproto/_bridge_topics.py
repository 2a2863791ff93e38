"""A bridge's topic lines: mosquitto's grammar, its checks and its remapping.

A topic line is ``"PATTERN [in|out|both [QOS [LOCAL_PREFIX REMOTE_PREFIX]]]"``
(mosquitto's ``topic`` option): words separated by spaces, ``""`` standing
for an empty word. The direction defaults to ``out`` and the QoS to 0.

With prefixes, the pattern is subscribed to as ``LOCAL_PREFIX + PATTERN``
on the local broker and ``REMOTE_PREFIX + PATTERN`` on the remote one, and a
forwarded topic trades one prefix for the other: with
``"sensors/# out 1 edge/ site1/"`` the local ``edge/sensors/t`` goes to the
remote broker as ``site1/sensors/t``. An empty pattern (``""``) with both
prefixes bridges exactly one topic under two names. A prefix is a topic
name fragment: no wildcards.

Nothing here does I/O: :func:`parse_topic_line` checks a line and makes a
:class:`TopicRule`, whose methods map topics one way or the other; the
bridge (:mod:`mqttproto.adapters._bridge`) picks the first rule that
applies, in the order of the lines.
"""

from __future__ import annotations

import enum

import attrs

from .enums import QoS
from .errors import ProtocolError
from .topics import topic_matches, validate_topic_filter

__all__ = ["Direction", "TopicRule", "parse_topic_line", "rule_for_local", "rule_for_remote"]


class Direction(enum.Enum):
    """Which way a topic line forwards messages."""

    #: Local messages go to the remote broker (mosquitto's default).
    OUT = "out"
    #: Remote messages come to the local broker.
    IN = "in"
    #: Both ways; neither side sees its own messages come back (No Local).
    BOTH = "both"


def _check_prefix(prefix: str, which: str) -> None:
    if "+" in prefix or "#" in prefix:
        raise ValueError(f"the {which} prefix {prefix!r} must not contain the wildcards + or #")
    if "\x00" in prefix:
        raise ValueError(f"the {which} prefix {prefix!r} must not contain U+0000")


def _check_filter(topic_filter: str, what: str) -> None:
    try:
        validate_topic_filter(topic_filter)
    except ProtocolError as exc:
        raise ValueError(f"{what} {topic_filter!r} is not a valid topic filter: {exc}") from None


@attrs.frozen
class TopicRule:
    """One topic line of a bridge.

    :ivar pattern: the topic filter, without the prefixes ("" with both
        prefixes: the prefixes are the topic).
    :ivar direction: :class:`Direction` (or ``"in"``, ``"out"``, ``"both"``).
    :ivar qos: the highest QoS forwarded: a message goes on at the lower of
        this and its own QoS.
    :ivar local_prefix: put before the pattern on the local broker.
    :ivar remote_prefix: put before the pattern on the remote broker.

    :raises ValueError: an invalid pattern, QoS or prefix (the message says which).
    """

    pattern: str
    direction: Direction = attrs.field(default=Direction.OUT, converter=Direction)
    qos: QoS = attrs.field(default=QoS.AT_MOST_ONCE, converter=QoS)
    local_prefix: str = ""
    remote_prefix: str = ""

    def __attrs_post_init__(self) -> None:
        _check_prefix(self.local_prefix, "local")
        _check_prefix(self.remote_prefix, "remote")
        if not self.pattern:
            if not (self.local_prefix and self.remote_prefix):
                raise ValueError("an empty pattern needs both a local and a remote prefix")
        else:
            _check_filter(self.pattern, "the pattern")
        _check_filter(self.local_filter, "the local topic")
        _check_filter(self.remote_filter, "the remote topic")

    @property
    def local_filter(self) -> str:
        """What the bridge subscribes to locally (``out`` and ``both``)."""
        return self.local_prefix + self.pattern

    @property
    def remote_filter(self) -> str:
        """What the bridge subscribes to on the remote broker (``in`` and ``both``)."""
        return self.remote_prefix + self.pattern

    @property
    def outgoing(self) -> bool:
        return self.direction is not Direction.IN

    @property
    def incoming(self) -> bool:
        return self.direction is not Direction.OUT

    def to_remote(self, topic: str) -> str | None:
        """The remote name of local ``topic``; None if this rule does not forward it out."""
        if not self.outgoing or not topic_matches(self.local_filter, topic):
            return None
        return self.remote_prefix + topic[len(self.local_prefix) :]

    def to_local(self, topic: str) -> str | None:
        """The local name of remote ``topic``; None if this rule does not bring it in."""
        if not self.incoming or not topic_matches(self.remote_filter, topic):
            return None
        return self.local_prefix + topic[len(self.remote_prefix) :]

    def line(self) -> str:
        """The rule as a topic line (``""`` for an empty word)."""
        words = [self.pattern or '""', self.direction.value, str(int(self.qos))]
        if self.local_prefix or self.remote_prefix:
            words += [self.local_prefix or '""', self.remote_prefix or '""']
        return " ".join(words)


_QOS_WORDS = {"0": QoS.AT_MOST_ONCE, "1": QoS.AT_LEAST_ONCE, "2": QoS.EXACTLY_ONCE}


def parse_topic_line(line: str) -> TopicRule:
    """The :class:`TopicRule` of a topic line, as mosquitto reads it.

    :raises ValueError: an empty line, an unknown direction, a QoS other than
        0, 1 or 2, one prefix without the other, words too many, or an
        invalid pattern or prefix; the message says which.
    """
    if not isinstance(line, str):
        raise ValueError(f"a topic line must be a string, not {line!r}")
    words = ["" if word == '""' else word for word in line.split()]
    if not words:
        raise ValueError("empty topic line")
    if len(words) > 5:
        raise ValueError(f"{len(words)} words, at most 5: PATTERN DIRECTION QOS LOCAL REMOTE")
    if len(words) == 4:
        raise ValueError('a local prefix needs a remote prefix after it ("" for an empty one)')
    direction = Direction.OUT
    if len(words) > 1:
        try:
            direction = Direction(words[1])
        except ValueError:
            raise ValueError(f"unknown direction {words[1]!r}: in, out or both") from None
    qos = QoS.AT_MOST_ONCE
    if len(words) > 2:
        found = _QOS_WORDS.get(words[2])
        if found is None:
            raise ValueError(f"QoS must be 0, 1 or 2, not {words[2]!r}")
        qos = found
    local, remote = (words[3], words[4]) if len(words) == 5 else ("", "")
    return TopicRule(words[0], direction, qos, local, remote)


def rule_for_local(rules: tuple[TopicRule, ...], topic: str) -> tuple[TopicRule, str] | None:
    """The first rule forwarding local ``topic`` out, and the remote topic."""
    for rule in rules:
        remote = rule.to_remote(topic)
        if remote is not None:
            return rule, remote
    return None


def rule_for_remote(rules: tuple[TopicRule, ...], topic: str) -> tuple[TopicRule, str] | None:
    """The first rule bringing remote ``topic`` in, and the local topic."""
    for rule in rules:
        local = rule.to_local(topic)
        if local is not None:
            return rule, local
    return None
