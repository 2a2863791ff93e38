"""Configuration: limits and behaviour switches, as frozen attrs classes.

Every buffer and queue a connection keeps has its bound here, so that no peer
can make a connection grow without limit.
"""

from __future__ import annotations

from typing import Any

import attrs

from ._qos import MAX_PACKET_ID
from .enums import ReasonCode

__all__ = ["MAX_PACKET_SIZE", "BrokerConfig", "ClientConfig", "ServerConfig"]

#: The largest packet the protocol can express: a 1-byte header, a 4-byte
#: remaining length and 268,435,455 bytes of body.
MAX_PACKET_SIZE = 268_435_460


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, not {value}")


def _packet_size(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 2 <= value <= MAX_PACKET_SIZE:
        raise ValueError(f"{attribute.name} must be between 2 and {MAX_PACKET_SIZE}, not {value}")


def _u16_positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 1 <= value <= MAX_PACKET_ID:
        raise ValueError(f"{attribute.name} must be between 1 and 65535, not {value}")


def _u16(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= MAX_PACKET_ID:
        raise ValueError(f"{attribute.name} must be between 0 and 65535, not {value}")


def _optional_positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be positive or None, not {value!r}")


@attrs.frozen
class ClientConfig:
    """Limits and switches of a :class:`~mqttproto.ClientConnection`.

    The MQTT 5 values (``receive_maximum``, ``maximum_packet_size``,
    ``topic_alias_maximum``) are the defaults ``connect()`` announces to the
    server; ``connect()`` may override them for one connection. They are
    enforced on every protocol version.
    """

    #: The largest packet accepted from the server; a bigger one ends the
    #: connection with 0x95 *Packet too large*.
    maximum_packet_size: int = attrs.field(default=MAX_PACKET_SIZE, validator=_packet_size)
    #: How many QoS 1/2 messages the server may have unacknowledged with us.
    receive_maximum: int = attrs.field(default=MAX_PACKET_ID, validator=_u16_positive)
    #: How many topic aliases the server may define towards us (0: none).
    topic_alias_maximum: int = attrs.field(default=0, validator=_u16)
    #: Outgoing QoS 1/2 messages that may wait behind the server's Receive
    #: Maximum; ``publish()`` raises when the queue is full.
    max_queued_messages: int = attrs.field(default=1000, validator=_positive)
    #: Packets ``publish()``, ``subscribe()`` and ``unsubscribe()`` may leave
    #: waiting for ``data_to_send`` before they raise: a bound on the output
    #: buffer of an application that publishes faster than it writes.
    max_unsent_packets: int = attrs.field(default=65536, validator=_positive)
    #: Send PUBACK/PUBREC as soon as a message is received. When False the
    #: application calls ``acknowledge(packet_id)`` for each QoS 1/2 message.
    auto_acknowledge: bool = True
    #: Give repeated outgoing topics a topic alias, least recently used
    #: first out, within the server's Topic Alias Maximum.
    auto_topic_alias: bool = True
    #: Seconds to wait for PINGRESP (or any packet) after PINGREQ; None
    #: waits one keep-alive period.
    ping_timeout: float | None = attrs.field(default=None, validator=_optional_positive)
    #: Seconds to wait for CONNACK after CONNECT was sent; None waits forever.
    connect_timeout: float | None = attrs.field(default=30.0, validator=_optional_positive)


def _optional_u32(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{attribute.name} must be between 0 and 4294967295 or None")


def _optional_u16(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not 0 <= value <= MAX_PACKET_ID:
        raise ValueError(f"{attribute.name} must be between 0 and 65535 or None")


def _client_id_length(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 23 <= value <= MAX_PACKET_ID:
        # [MQTT-3.1.3-5]: 1 to 23 bytes must always be allowed.
        raise ValueError(f"{attribute.name} must be between 23 and 65535, not {value}")


def _qos(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value not in (0, 1, 2):
        raise ValueError(f"{attribute.name} must be 0, 1 or 2, not {value!r}")


def _positive_number(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{attribute.name} must be a positive number, not {value!r}")


@attrs.frozen
class ServerConfig:
    """Limits of one :class:`~mqttproto.server.ServerConnection`: what belongs
    to a single network connection, announced to MQTT 5 clients in CONNACK
    and enforced on every protocol version.

    A :class:`~mqttproto.broker.Broker` makes one from its
    :class:`BrokerConfig` (:meth:`BrokerConfig.server_config`).
    """

    #: The largest packet accepted from the client; a bigger one ends the
    #: connection with 0x95 *Packet too large*, refused on its fixed header.
    max_packet_size: int = attrs.field(default=1024 * 1024, validator=_packet_size)
    #: How many QoS 1/2 PUBLISH the client may have unacknowledged with us;
    #: more ends the connection with 0x93 [MQTT-3.3.4-9].
    receive_maximum: int = attrs.field(default=1024, validator=_u16_positive)
    #: How many topic aliases the client may define (0: none).
    topic_alias_maximum: int = attrs.field(default=64, validator=_u16)
    #: The highest QoS accepted from the client; above it the connection ends
    #: with 0x9B [MQTT-3.2.2-12].
    maximum_qos: int = attrs.field(default=2, validator=_qos)
    #: Whether the client may publish retained messages (0x9A if not)
    #: [MQTT-3.2.2-15].
    retain_available: bool = True
    #: Announced in CONNACK; what a SUBSCRIBE that uses them gets is the
    #: application's answer (``suback``).
    wildcard_subscription_available: bool = True
    shared_subscription_available: bool = True
    subscription_identifiers_available: bool = True
    #: QoS 1/2 messages in flight to the client at once, whatever its own
    #: Receive Maximum says (the smaller applies); past it they wait in a
    #: queue of ``max_queued_messages``.
    max_inflight_messages: int = attrs.field(default=65535, validator=_u16_positive)
    max_queued_messages: int = attrs.field(default=1000, validator=_positive)
    #: User properties one packet may carry, and their UTF-8 bytes together.
    #: Past either the packet is refused with 0x97 *Quota exceeded* (CONNECT:
    #: a refusing CONNACK; QoS 1/2 PUBLISH: PUBACK/PUBREC 0x97, QoS 0:
    #: dropped; SUBSCRIBE: 0x97 for each filter; UNSUBSCRIBE: DISCONNECT
    #: 0x97), and it is not reported; the reader stops building them past the
    #: limit, so a flood costs what the limit allows.
    max_user_properties: int = attrs.field(default=64, validator=_positive)
    max_user_property_bytes: int = attrs.field(default=16384, validator=_positive)
    #: The longest client identifier in UTF-8 bytes; longer is refused with
    #: 0x85 (3.x: return code 2) [MQTT-3.1.3-8 (5.0)] / [MQTT-3.1.3-9 (3.1.1)].
    max_client_id_length: int = attrs.field(default=256, validator=_client_id_length)
    #: The longest topic name in UTF-8 bytes, and the most levels it may
    #: have. A PUBLISH past either ends the connection with 0x90 *Topic Name
    #: invalid* (3.x: closed); a will topic past either refuses CONNECT with
    #: 0x90 (3.x: return code 3).
    max_topic_length: int = attrs.field(default=4096, validator=_u16_positive)
    max_topic_levels: int = attrs.field(default=64, validator=_positive)
    #: Bounds on the keep-alive the client may use (seconds; 0, no keep-alive,
    #: counts as more than any maximum). MQTT 5 clients outside them are told
    #: the clamped value as Server Keep Alive, which they must use
    #: [MQTT-3.2.2-21]; 3.x clients are held to it silently.
    #: ``max_keep_alive = 0`` sets no maximum: a client may ask any keep-alive,
    #: 0 (none) included. ``server_keep_alive`` imposes one value instead.
    min_keep_alive: int = attrs.field(default=0, validator=_u16)
    max_keep_alive: int = attrs.field(default=65535, validator=_u16)
    server_keep_alive: int | None = attrs.field(default=None, validator=_optional_u16)
    #: Seconds the client has to send CONNECT, and to finish an enhanced
    #: authentication exchange, from when the connection was opened.
    connect_timeout: float | None = attrs.field(default=10.0, validator=_optional_positive)
    #: Give topics sent to an MQTT 5 client topic aliases of our own, within
    #: its Topic Alias Maximum [MQTT-3.3.2-11] and ``auto_topic_alias_limit``:
    #: only topics of ``auto_topic_alias_min_length`` characters or more (an
    #: alias saves the topic's length less 3 bytes on each message after the
    #: first). A topic takes a free alias when it is first sent; once all are
    #: taken, a topic sent twice lately (a frequent one) takes the least
    #: recently used alias, and one seen once goes without (so that many
    #: one-off topics do not churn the aliases). Aliases end with the
    #: network connection [MQTT-3.3.2-7].
    auto_topic_alias: bool = True
    auto_topic_alias_min_length: int = attrs.field(default=8, validator=_u16)
    #: The most aliases kept per connection: each holds its topic name.
    auto_topic_alias_limit: int = attrs.field(default=64, validator=_u16)

    def __attrs_post_init__(self) -> None:
        if self.max_keep_alive and self.min_keep_alive > self.max_keep_alive:
            raise ValueError("min_keep_alive must not exceed max_keep_alive")


@attrs.frozen
class BrokerConfig:
    """Limits and switches of a :class:`~mqttproto.broker.Broker`.

    Whether anonymous clients may connect is the authenticator's business,
    not a setting here. The MQTT 5 values are announced to v5 clients in
    CONNACK and enforced on every protocol version.
    """

    #: The largest packet accepted from a client; a bigger one ends the
    #: connection with 0x95 *Packet too large* [MQTT-3.2.2-15 analogue],
    #: refused on its fixed header before the body is read. 16 MiB carries
    #: the payloads clients send in practice (images, firmware chunks; 1 MiB
    #: did not, with its fixed header and topic on top) while one packet costs
    #: at most about three times its size as it is joined and decoded, and it
    #: matches ``max_unsent_bytes``, so a message that fits is also sent.
    #: mosquitto allows 256 MiB; raise it for that, with
    #: ``max_buffered_input`` to match. (A lone
    #: :class:`ServerConfig` keeps 1 MiB: it has no budget across connections.)
    max_packet_size: int = attrs.field(default=16 * 1024 * 1024, validator=_packet_size)
    #: The budget of incomplete input across all connections, for the broker
    #: servers (asyncio, trio, threads): a packet larger than 64 KiB
    #: (``LARGE_INPUT`` in the servers' driver) reserves its declared size
    #: (:meth:`Broker.incomplete_packet_size`) as soon as its fixed header is
    #: read. One that does not fit in what is left is not read on -- its
    #: connection pauses, first come first served, until packets being
    #: received complete or their connections end -- unless no other large
    #: packet is being received, so one always makes progress. Smaller
    #: packets are never held. So many clients each claiming a large packet
    #: cost this much at most, plus one read (64-256 KiB) per connection, and
    #: everyone else is still served. None: no budget.
    max_buffered_input: int | None = attrs.field(
        default=64 * 1024 * 1024, validator=_optional_positive
    )
    #: How many QoS 1/2 PUBLISH a client may have unacknowledged with us;
    #: more ends the connection with 0x93 [MQTT-3.3.4-9].
    receive_maximum: int = attrs.field(default=1024, validator=_u16_positive)
    #: How many topic aliases a client may define towards us (0: none).
    topic_alias_maximum: int = attrs.field(default=64, validator=_u16)
    #: The highest QoS the broker accepts and grants [MQTT-3.2.2-9].
    maximum_qos: int = attrs.field(default=2, validator=_qos)
    retain_available: bool = True
    wildcard_subscription_available: bool = True
    shared_subscription_available: bool = True
    subscription_identifiers_available: bool = True
    #: QoS 1/2 messages in flight to one client at once, whatever its own
    #: Receive Maximum says (the smaller of the two applies).
    max_inflight_messages: int = attrs.field(default=100, validator=_u16_positive)
    #: Messages waiting for one session: behind the in-flight window while
    #: connected, or while the client is away. The bound of every queue.
    max_queued_messages: int = attrs.field(default=1000, validator=_positive)
    #: Bytes (topic and payload) of the messages waiting in one session's
    #: queue, like mosquitto's ``max_queued_bytes``. Past it, as past
    #: ``max_queued_messages``: the oldest queued QoS 0 message makes room,
    #: else a new QoS 0 message is dropped and a QoS 1/2 one refused.
    max_queued_bytes: int = attrs.field(default=64 * 1024 * 1024, validator=_positive)
    #: The broker-wide budget, in the spirit of mosquitto's ``memory_limit``:
    #: bytes (topic and payload) of the messages the broker holds for
    #: sessions, queued or in flight, each counted once however many sessions
    #: share it. A message that would pass it is neither queued nor sent at
    #: QoS 1/2 (QoS 0 is dropped). When those bytes and the output backlog
    #: adapters report for readers that are behind (``Broker.output_backlog``)
    #: together pass it, such a reader gets nothing more (QoS 0 dropped, QoS
    #: 1/2 queued) until the total is below again; a reader that keeps up is
    #: not affected. Every message dropped or refused is counted
    #: (``Broker.messages_dropped``, ``$SYS``); an MQTT 5 QoS 1/2 publisher
    #: hears 0x97 *Quota exceeded* when no subscriber took its message.
    #: None: no limit.
    memory_limit: int | None = attrs.field(default=256 * 1024 * 1024, validator=_optional_positive)
    #: Whether QoS 0 messages are queued for a persistent session whose
    #: client is away (the protocol allows either).
    queue_qos0_offline: bool = True
    #: Subscriptions one session may hold; a SUBSCRIBE for a new filter past
    #: it gets 0x97 *Quota exceeded* for that filter (3.1.1: 0x80).
    max_subscriptions_per_session: int = attrs.field(default=1000, validator=_positive)
    #: Topic filters one SUBSCRIBE may carry. A longer SUBSCRIBE is refused as
    #: a whole: every filter gets 0x97 *Quota exceeded* (3.1.1: 0x80) and no
    #: subscription changes.
    max_filters_per_subscribe: int = attrs.field(default=100, validator=_positive)
    #: Topic names and filters deeper than this are refused.
    max_topic_levels: int = attrs.field(default=64, validator=_positive)
    #: The longest topic name or filter in UTF-8 bytes (the protocol allows
    #: 65,535). A longer topic name in PUBLISH ends the connection with 0x90
    #: *Topic Name invalid* (3.x: closed), as does a too deep one; a longer
    #: will topic refuses CONNECT with 0x90 (3.x: return code 3); a longer
    #: filter gets 0x8F *Topic Filter invalid* (3.1.1: 0x80) in SUBACK.
    max_topic_length: int = attrs.field(default=4096, validator=_u16_positive)
    #: User properties one packet (CONNECT with its will, PUBLISH, SUBSCRIBE,
    #: UNSUBSCRIBE) may carry, and the UTF-8 bytes of their names and values
    #: together. Past either, the packet is refused with 0x97 *Quota
    #: exceeded*: CONNECT gets a refusing CONNACK, a QoS 1/2 PUBLISH is
    #: answered with 0x97 and a QoS 0 one dropped (neither is routed nor
    #: retained), each filter of a SUBSCRIBE gets 0x97, and an UNSUBSCRIBE
    #: (whose UNSUBACK has no such code) ends the connection with DISCONNECT
    #: 0x97. Only MQTT 5 packets carry user properties. Other packets are
    #: read and forgotten, bounded by ``max_packet_size``.
    max_user_properties: int = attrs.field(default=64, validator=_positive)
    max_user_property_bytes: int = attrs.field(default=16384, validator=_positive)
    #: Retained messages kept at once, and their topics and payloads in bytes
    #: together. A retained PUBLISH for a new topic (or a bigger replacement)
    #: that does not fit is refused whole, neither retained nor routed: an
    #: MQTT 5 QoS 1/2 publisher hears 0x97 *Quota exceeded* in PUBACK/PUBREC,
    #: others are acknowledged as usual and the message dropped (as an
    #: unauthorized one is). Deleting (an empty payload) and replacing with
    #: no more bytes always work. A retained will that does not fit is
    #: published without being retained. ``Broker.publish`` is not limited.
    max_retained_messages: int = attrs.field(default=100_000, validator=_positive)
    max_retained_bytes: int = attrs.field(default=256 * 1024 * 1024, validator=_positive)
    #: One client identifier's share of those: the retained messages it
    #: published last that are kept at once, and their bytes. Past either,
    #: its retained PUBLISH is refused as past the broker-wide limits, so that
    #: one client cannot use up everyone's quota.
    max_retained_messages_per_client: int = attrs.field(default=10_000, validator=_positive)
    max_retained_bytes_per_client: int = attrs.field(default=16 * 1024 * 1024, validator=_positive)
    #: Network connections open at once (counting those before CONNECT). A
    #: connection opened past it is answered, once its CONNECT arrives, with
    #: CONNACK 0x97 *Quota exceeded* (3.x: return code 3 *Server
    #: unavailable*) and closed; until then ``connect_timeout`` bounds it.
    #: None: no limit.
    max_connections: int | None = attrs.field(default=10_000, validator=_optional_positive)
    #: The longest client identifier in UTF-8 bytes. The protocol requires
    #: 1 to 23 to be accepted [MQTT-3.1.3-5]; a longer one is refused with
    #: CONNACK 0x85 *Client Identifier not valid* (3.x: return code 2
    #: *Identifier rejected*) [MQTT-3.1.3-8 (5.0)] / [MQTT-3.1.3-9 (3.1.1)].
    max_client_id_length: int = attrs.field(default=256, validator=_client_id_length)
    #: Bounds on the keep-alive a client may choose (seconds; a client asking
    #: 0, no keep-alive, counts as asking more than any maximum). MQTT 5
    #: clients outside them are told the clamped value as Server Keep Alive,
    #: which they must use [MQTT-3.2.2-21]. 3.1/3.1.1 clients cannot be told:
    #: one asking more than ``max_keep_alive`` is refused with return code 2
    #: *Identifier rejected*, as mosquitto 2.0 does with ``max_keepalive``;
    #: one asking 0 or less than ``min_keep_alive`` is held to the bound
    #: silently (disconnected after 1.5 times ``max_keep_alive`` of silence;
    #: 3.1.1 section 3.1.2.10 lets a server close an inactive client whatever
    #: its Keep Alive). ``max_keep_alive = 0`` sets no maximum, as mosquitto's
    #: ``max_keepalive 0`` does: any keep-alive, 0 (none) included, is taken as
    #: asked. ``server_keep_alive`` overrides both for MQTT 5.
    min_keep_alive: int = attrs.field(default=0, validator=_u16)
    max_keep_alive: int = attrs.field(default=65535, validator=_u16)
    #: Bytes of output one connection may have that are not yet written: what
    #: the adapter has not taken with ``data_to_send``/``flush``, plus the
    #: backlog it reports with ``Broker.output_backlog`` (a high-water mark,
    #: checked before each delivery). Above it QoS 0 messages for that
    #: connection are dropped and QoS 1/2 messages wait in the session's
    #: queue (bounded by ``max_queued_messages``) until the output drains.
    max_unsent_bytes: int = attrs.field(default=16 * 1024 * 1024, validator=_positive)
    #: Seconds a new connection may stay silent before CONNECT arrives (and
    #: an enhanced authentication exchange may last); None: forever.
    connect_timeout: float | None = attrs.field(default=10.0, validator=_optional_positive)
    #: A keep-alive to impose on MQTT 5 clients (Server Keep Alive); None
    #: accepts what the client asks for.
    server_keep_alive: int | None = attrs.field(default=None, validator=_optional_u16)
    #: The longest Session Expiry Interval granted, in seconds; a 3.1/3.1.1
    #: persistent session expires after this too. The default, 7 days, ends
    #: sessions whose clients never come back; an MQTT 5 client asking more
    #: is told the value granted in CONNACK. None: as the client asks (3.x:
    #: never).
    max_session_expiry_interval: int | None = attrs.field(
        default=7 * 24 * 3600, validator=_optional_u32
    )
    #: What a CONNECT gets when its client identifier belongs to a session
    #: another identity made (a different username, or a certificate's
    #: identity): ``"refuse"`` answers CONNACK 0x87 *Not authorized* (3.x:
    #: return code 5) and leaves the session and its connection alone;
    #: ``"discard"`` ends the other identity's session (its will goes, as when
    #: it expires) and starts a new one, session present 0 (mosquitto, too,
    #: lets the other identity take the client identifier).
    #: Either way nothing of one identity's session reaches another.
    session_identity_mismatch: str = attrs.field(
        default="refuse", validator=attrs.validators.in_(("refuse", "discard"))
    )
    #: The reason code an MQTT 5 client gets when the authorizer refuses a
    #: subscription (SUBACK) or a QoS 1/2 message (PUBACK, PUBREC):
    #: ``"not-authorized"``, 0x87 *Not authorized*, says why;
    #: ``"unspecified"``, 0x80 *Unspecified error*, is the code for a server
    #: that "does not wish to reveal the reason" (MQTT 5.0 sections 3.4.2.1,
    #: 3.9.3), so that a client cannot map the ACL by trying topics.
    #: (3.x SUBACK has 0x80 only; a 3.x publisher is never told.)
    deny_reason: str = attrs.field(
        default="not-authorized",
        validator=attrs.validators.in_(("not-authorized", "unspecified")),
    )
    #: Topic aliases for what the broker sends to MQTT 5 clients that accept
    #: them (a Topic Alias Maximum in CONNECT), for topics of
    #: ``auto_topic_alias_min_length`` characters or more, at most
    #: ``auto_topic_alias_limit`` per connection: a topic takes a free alias
    #: when first sent, and once all are taken a topic sent twice lately
    #: takes the least recently used one (see ``ServerConfig``). Clients
    #: that announce no Topic Alias Maximum are not affected.
    auto_topic_alias: bool = True
    auto_topic_alias_min_length: int = attrs.field(default=8, validator=_u16)
    auto_topic_alias_limit: int = attrs.field(default=64, validator=_u16)
    #: Seconds between ``$SYS/broker/...`` statistics; None: no ``$SYS``.
    sys_interval: float | None = attrs.field(default=None, validator=_optional_positive)
    #: How many topics' routes are cached, and apart from them as many of
    #: the topics one plain subscription reaches (each cache is emptied when
    #: full, and by a change to a subscription with wildcards; one without
    #: drops its own topic's entries).
    route_cache_size: int = attrs.field(default=4096, validator=_positive)
    # -- Authentication (docs/broker-auth.rst, "Under load") ------------------------
    #: Deferred authentications (a :class:`~mqttproto.auth.DeferredAuthResult`,
    #: such as a password hash, computed off the event loop) waiting at once.
    #: Past it a CONNECT that needs one is refused at once, with no hash
    #: computed: CONNACK 0x89 *Server busy* (3.x: return code 3 *Server
    #: unavailable*); a re-authentication gets DISCONNECT 0x89.
    max_pending_authentications: int = attrs.field(default=64, validator=_positive)
    #: The delay after failed authentications, per source address (the
    #: ``address`` of ``Broker.open_connection``; an IPv6 address counts as
    #: its /64). Each refusal by the authenticator adds one to the address's
    #: score, which falls by one every ``auth_failure_decay`` seconds; the
    #: next authentication from there starts ``auth_failure_delay * (2**score
    #: - 1)`` seconds, at most ``auth_failure_max_delay``, after the previous
    #: start or failure (1, 3, 7, 8, 8... seconds with the defaults), the
    #: CONNECT waiting meanwhile (``connect_timeout`` still applies). Keep the
    #: maximum below ``connect_timeout`` so that a waiting client is answered.
    #: None: no delay.
    auth_failure_delay: float | None = attrs.field(default=1.0, validator=_optional_positive)
    auth_failure_max_delay: float = attrs.field(default=8.0, validator=_positive_number)
    auth_failure_decay: float = attrs.field(default=60.0, validator=_positive_number)
    #: Addresses whose failures are remembered; past it the address whose
    #: last failure is oldest is forgotten (bounded memory under a flood of
    #: addresses).
    auth_failure_addresses: int = attrs.field(default=10_000, validator=_positive)

    @property
    def denied(self) -> ReasonCode:
        """The reason code of a refusal by the authorizer (``deny_reason``)."""
        if self.deny_reason == "unspecified":
            return ReasonCode.UNSPECIFIED_ERROR
        return ReasonCode.NOT_AUTHORIZED

    def server_config(self) -> ServerConfig:
        """The limits of each of the broker's connections."""
        return ServerConfig(
            max_packet_size=self.max_packet_size,
            receive_maximum=self.receive_maximum,
            topic_alias_maximum=self.topic_alias_maximum,
            maximum_qos=self.maximum_qos,
            retain_available=self.retain_available,
            wildcard_subscription_available=self.wildcard_subscription_available,
            shared_subscription_available=self.shared_subscription_available,
            subscription_identifiers_available=self.subscription_identifiers_available,
            max_inflight_messages=self.max_inflight_messages,
            max_queued_messages=self.max_queued_messages,
            max_user_properties=self.max_user_properties,
            max_user_property_bytes=self.max_user_property_bytes,
            max_client_id_length=self.max_client_id_length,
            max_topic_length=self.max_topic_length,
            max_topic_levels=self.max_topic_levels,
            min_keep_alive=self.min_keep_alive,
            max_keep_alive=self.max_keep_alive,
            server_keep_alive=self.server_keep_alive,
            connect_timeout=self.connect_timeout,
            auto_topic_alias=self.auto_topic_alias,
            auto_topic_alias_min_length=self.auto_topic_alias_min_length,
            auto_topic_alias_limit=self.auto_topic_alias_limit,
        )

    def __attrs_post_init__(self) -> None:
        if self.max_keep_alive and self.min_keep_alive > self.max_keep_alive:
            raise ValueError("min_keep_alive must not exceed max_keep_alive")
        delay = self.auth_failure_delay
        if delay is not None and delay > self.auth_failure_max_delay:
            raise ValueError("auth_failure_delay must not exceed auth_failure_max_delay")
