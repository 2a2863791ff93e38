"""The syntax of topic names and filters, their matching, and shared
subscriptions (MQTT 5.0 section 4.7 and 4.8.2): the rules
:mod:`mqttproto.topics` exports, apart from its subscription trie, so that
each module stays readable. Import them from :mod:`mqttproto.topics`.
"""

from __future__ import annotations

import attrs

from .enums import ReasonCode
from .errors import LocalProtocolError, ProtocolError

__all__ = [
    "MAX_TOPIC_LENGTH",
    "SHARED_SUBSCRIPTION_PREFIX",
    "SharedSubscription",
    "is_shared_filter",
    "parse_shared_subscription",
    "topic_level_count",
    "topic_matches",
    "validate_topic_filter",
    "validate_topic_name",
]

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
