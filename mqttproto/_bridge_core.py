"""The forwarding between a bridge's two client connections, without I/O.

:class:`BridgeCore` holds the two :class:`~mqttproto.client.ClientConnection`
objects of a bridge (the *remote* link to the other broker, the *local* link
to this one, see :mod:`mqttproto.adapters._bridge`) and answers their events:
subscriptions when a link is accepted, each message forwarded to the other
side (topic remapped, QoS lowered to the topic line's), each QoS 1/2
acknowledgement passed back once the other side has acknowledged
(:class:`._bridge_state.Forwarding`). It reads no socket and no clock: an
adapter feeds the connections, calls :meth:`BridgeCore.remote_events` and
:meth:`BridgeCore.local_events`, writes what the connections have to send,
and implements the few hooks below (``_end``, ``_now``, ``_local_ready``,
``_local_failed``, ``_published_locally``).
"""

from __future__ import annotations

import collections
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import attrs

from ._bridge_state import BridgeStatus, EchoFilter, Forwarding, PendingOut
from ._bridge_topics import rule_for_local, rule_for_remote
from .bridge import BridgeConfig
from .broker import Broker
from .client import ClientConnection
from .config import ClientConfig
from .enums import ProtocolVersion, QoS, ReasonCode, RetainHandling
from .errors import LocalProtocolError
from .events import (
    ConnectionAccepted,
    ConnectionRefused,
    Disconnected,
    MessageReceived,
    PublishAcknowledged,
    PublishDiscarded,
    SubscribeAcknowledged,
)
from .packets import Subscription, Will

__all__ = ["WINDOW", "BridgeCore"]

logger = logging.getLogger("mqttproto.bridge")

CONNECTED = "connected"
#: QoS 1/2 messages the broker may have in flight to the bridge at once, and
#: the remote broker (MQTT 5) too: the windows that bound what the bridge holds.
WINDOW = 100
#: The longest session expiry (a broker caps it at its own maximum).
NEVER = 0xFFFFFFFF
_LOCAL_CONFIG = ClientConfig(
    receive_maximum=WINDOW,
    max_queued_messages=10 * WINDOW,
    auto_acknowledge=False,
    auto_topic_alias=False,
    connect_timeout=None,
)
_REMOTE_CONFIG = ClientConfig(
    receive_maximum=WINDOW, max_queued_messages=10 * WINDOW, auto_acknowledge=False
)
_V5_PROPERTIES = (
    "payload_format_indicator",
    "message_expiry_interval",
    "response_topic",
    "correlation_data",
    "user_properties",
    "content_type",
)

_Handler = Callable[["BridgeCore", Any], None]


class BridgeCore(ABC):
    """The two connections of one bridge and what flows between them.

    :param config: the bridge.
    :param broker: this broker: the notifications are published with
        :meth:`Broker.publish`, and :meth:`Broker.subscriptions` tells which
        patterns an earlier configuration left in the bridge's session.
    """

    def __init__(self, config: BridgeConfig, broker: Broker) -> None:
        self.config = config
        self._broker = broker
        version = ProtocolVersion(config.protocol_version)
        self._v5 = version == ProtocolVersion.MQTT_5_0
        remote_config = attrs.evolve(_REMOTE_CONFIG, connect_timeout=config.connect_timeout)
        self._remote = ClientConnection(version, config=remote_config)
        self._local = ClientConnection(ProtocolVersion.MQTT_5_0, config=_LOCAL_CONFIG)
        self._outgoing = config.outgoing
        self._incoming = config.incoming
        self._forwarding = Forwarding()
        #: Whether the 3.1.1 CONNECT carries mosquitto's bridge flag; off once
        #: the remote broker refused it (0x01), as mosquitto's bridges do.
        self._try_private = config.try_private and not self._v5
        self._echoes = EchoFilter()
        #: Messages going out whose remote session was lost while the link was down.
        self._parked: list[PendingOut] = []
        self._first_local = True
        #: Whether "the outage queue is full" was logged in this outage.
        self._queue_full_logged = False
        self._accepted_this_time = False
        self._stopping = False
        #: Whether the local link in use is open (events of an old one are ignored).
        self._link_open = False
        self.state = "connecting"
        self.address = config.address_text.split(", ")[0]
        self.last_error: str | None = None
        self.connects = 0
        self.messages_out = 0
        self.messages_in = 0
        self.messages_dropped = 0

    def status(self) -> BridgeStatus:
        return BridgeStatus(
            name=self.config.name,
            state=self.state,
            address=self.address,
            last_error=self.last_error,
            connects=self.connects,
            messages_out=self.messages_out,
            messages_in=self.messages_in,
            messages_dropped=self.messages_dropped,
            in_flight=len(self._forwarding),
        )

    # -- the hooks of the adapter --------------------------------------------------

    @abstractmethod
    def _now(self) -> float:
        """The adapter's clock (the ``now`` of both connections)."""

    @abstractmethod
    def _end(self, reason: str) -> None:
        """A link ended: close both, and try again later."""

    def _local_ready(self) -> None:  # noqa: B027 (optional hook, nothing by default)
        """The local link is accepted and subscribed."""

    def _local_failed(self, why: str) -> None:  # noqa: B027 (optional hook)
        """This broker refused the local link."""

    def _published_locally(self) -> None:  # noqa: B027 (optional hook)
        """:meth:`Broker.publish` was called: the server has output to write."""

    # -- starting the links ----------------------------------------------------------

    def connect_remote(self) -> None:
        """Queue the remote CONNECT (with the notification will)."""
        config = self.config
        self._accepted_this_time = False
        will = None
        if config.notifications:
            will = Will(config.notification_topic, b"0", QoS.AT_LEAST_ONCE, retain=True)
        expiry = None
        if self._v5:
            expiry = 0 if config.clean_start else NEVER
        self._remote.connect(
            client_id=config.client_id,
            clean_start=config.clean_start,
            keep_alive=config.keep_alive,
            will=will,
            username=config.username,
            password=config.password,
            session_expiry_interval=expiry,
            bridge=self._try_private,
        )
        self.remote_events()

    def connect_local(self) -> None:
        """Queue the local CONNECT: the persistent session, no keep-alive."""
        self._link_open = True
        self._local.connect(
            client_id=self.config.local_client_id,
            clean_start=False,
            keep_alive=0,
            session_expiry_interval=NEVER,
            receive_maximum=WINDOW,
        )

    def close_local(self) -> None:
        """End the local link (DISCONNECT if it was accepted); its events are dropped."""
        self._link_open = False
        local = self._local
        if local.state.value == "connected":
            with contextlib.suppress(LocalProtocolError):
                local.disconnect()
        elif local.state.value == "connecting":
            local.receive_eof(self._now())
        # Drained: what the closing connection reported is of no use now.
        collections.deque(local.events(), maxlen=0)

    def notify_local(self, payload: bytes) -> None:
        """The bridge's state, retained on the notification topic of this broker."""
        if not self.config.notifications:
            return
        try:
            self._broker.publish(
                self.config.notification_topic, payload, qos=1, retain=True, now=self._now()
            )
        except LocalProtocolError as exc:
            logger.warning("bridge %s: notification not published: %s", self.config.name, exc)
        self._published_locally()

    # -- the remote link ------------------------------------------------------------

    def remote_events(self) -> None:
        """Answer what the remote connection reported."""
        for event in self._remote.events():
            handler = self._REMOTE_HANDLERS.get(type(event))
            if handler is not None:
                handler(self, event)

    def _on_remote_accepted(self, event: Any) -> None:
        assert isinstance(event, ConnectionAccepted)
        config = self.config
        if any(s.client_id == config.client_id and s.connected for s in self._broker.sessions()):
            # The remote broker is this one (an address that leads back here):
            # every message would go round for ever.
            self.last_error = "the remote broker is this broker itself: not bridging to it"
            logger.error("bridge %s: %s (%s)", config.name, self.last_error, self.address)
            with contextlib.suppress(LocalProtocolError):
                self._remote.disconnect()
            self._end(self.last_error)
            return
        self.connects += 1
        self._accepted_this_time = True
        self.state = CONNECTED
        self._queue_full_logged = False
        logger.info(
            "bridge %s: connected to %s as %s (session present: %s)",
            config.name,
            self.address,
            config.client_id,
            event.session_present,
        )
        if config.notifications:
            try:
                self._remote.publish(config.notification_topic, b"1", qos=1, retain=True)
            except LocalProtocolError as exc:  # a broker without QoS 1 or retain, say
                logger.warning("bridge %s: notification not sent: %s", config.name, exc)
            self.notify_local(b"1")
        subs: dict[str, Subscription] = {}
        for rule in self._incoming:
            old = subs.get(rule.remote_filter)
            if old is None or old.max_qos < rule.qos:
                # MQTT 5: No Local, so what the bridge publishes there does not
                # come back [MQTT-3.8.3-3], and Retain As Published, so retain
                # flags cross as they were set [MQTT-3.3.1-12].
                subs[rule.remote_filter] = Subscription(
                    rule.remote_filter, rule.qos, no_local=self._v5, retain_as_published=self._v5
                )
        if subs:
            try:
                self._remote.subscribe(list(subs.values()))
            except LocalProtocolError as exc:  # no wildcard subscriptions there, say
                logger.warning("bridge %s: cannot subscribe: %s", config.name, exc)
        parked, self._parked = self._parked, []
        for pending in parked:
            self._publish_out(pending)

    def _on_remote_refused(self, event: Any) -> None:
        assert isinstance(event, ConnectionRefused)
        self.last_error = f"the remote broker refused the connection: {event.reason_code.name}"
        if event.reason_string:
            self.last_error += f" ({event.reason_string})"
        if event.reason_code == ReasonCode.UNSUPPORTED_PROTOCOL_VERSION and self._try_private:
            # Not mosquitto: MQTT 3.1.1 without the flag, and the echoes filtered here.
            self._try_private = False
            self.last_error += "; the next attempt goes without the bridge flag (try_private)"

    def _on_remote_disconnected(self, event: Any) -> None:
        assert isinstance(event, Disconnected)
        if self.last_error is None and event.reason_code != ReasonCode.NORMAL_DISCONNECTION:
            self.last_error = f"disconnected: {event.reason_code.name}" + (
                f" ({event.reason_string})" if event.reason_string else ""
            )
        self._end(self.last_error or "disconnected")

    def _on_remote_message(self, event: Any) -> None:
        """A message from the remote broker: publish it here."""
        assert isinstance(event, MessageReceived)
        remote_id = event.packet_id
        found = rule_for_remote(self._incoming, event.topic)
        if found is None:
            self._ack_remote(remote_id)
            return
        if self._filters_echoes and self._echoes.is_echo(event.topic, event.payload):
            # Our own message, back from a 3.1.1 broker without No Local.
            self._ack_remote(remote_id)
            return
        rule, topic = found
        qos = min(rule.qos, event.qos)
        properties = {name: getattr(event.packet, name) for name in _V5_PROPERTIES}
        try:
            local_id = self._local.publish(
                topic, event.payload, qos=qos, retain=event.retain, **properties
            )
        except LocalProtocolError as exc:
            self.messages_dropped += 1
            logger.warning("bridge %s: %s not brought in: %s", self.config.name, topic, exc)
            self._ack_remote(remote_id)
            return
        if local_id is not None and remote_id is not None:
            # Counted once this broker has it (_on_local_acknowledged).
            self._forwarding.sent_in(local_id, remote_id)
        else:
            self.messages_in += 1
            self._ack_remote(remote_id)

    def _ack_remote(self, remote_id: int | None, code: ReasonCode = ReasonCode.SUCCESS) -> None:
        if remote_id is None:
            return
        if not self._v5 and code >= 0x80:
            code = ReasonCode.SUCCESS  # 3.1.1 has no way to refuse
        with contextlib.suppress(LocalProtocolError):
            # (A session the remote broker did not resume no longer has it.)
            self._remote.acknowledge(remote_id, code)

    def _on_remote_acknowledged(self, event: Any) -> None:
        assert isinstance(event, PublishAcknowledged)
        local_id = self._forwarding.remote_acknowledged(event.packet_id)
        if local_id is None:
            return
        code = event.reason_code
        if code >= 0x80:
            self.messages_dropped += 1
            logger.warning(
                "bridge %s: the remote broker refused a message: %s", self.config.name, code.name
            )
        else:
            self.messages_out += 1
        self._ack_local(local_id, code)

    def _on_remote_discarded(self, event: Any) -> None:
        assert isinstance(event, PublishDiscarded)
        pending = self._forwarding.remote_discarded(event.packet_id)
        if pending is None:
            return
        if self._remote.state.value == "connected":
            self._publish_out(pending)
        else:
            self._parked.append(pending)

    def _on_remote_subscribed(self, event: Any) -> None:
        assert isinstance(event, SubscribeAcknowledged)
        failed = [code for code in event.reason_codes if code >= 0x80]
        if failed:
            logger.warning(
                "bridge %s: the remote broker refused %d of the bridge's subscriptions (%s)",
                self.config.name,
                len(failed),
                ", ".join(code.name for code in failed),
            )

    _REMOTE_HANDLERS: ClassVar[dict[type, _Handler]] = {
        ConnectionAccepted: _on_remote_accepted,
        ConnectionRefused: _on_remote_refused,
        Disconnected: _on_remote_disconnected,
        MessageReceived: _on_remote_message,
        PublishAcknowledged: _on_remote_acknowledged,
        PublishDiscarded: _on_remote_discarded,
        SubscribeAcknowledged: _on_remote_subscribed,
    }

    # -- the local link ----------------------------------------------------------------

    def local_events(self) -> None:
        """Answer what the local connection reported."""
        for event in self._local.events():
            handler = self._LOCAL_HANDLERS.get(type(event))
            if handler is not None:
                handler(self, event)

    def _ack_local(self, local_id: int, code: ReasonCode = ReasonCode.SUCCESS) -> None:
        if self._local.state.value != "connected":
            # Sent once the link is back: the broker resends the message
            # meanwhile and the client absorbs the resend of an id it holds.
            self._forwarding.local_acks_due.append((local_id, code))
            return
        with contextlib.suppress(LocalProtocolError):
            self._local.acknowledge(local_id, code)

    def _on_local_accepted(self, event: Any) -> None:
        assert isinstance(event, ConnectionAccepted)
        if not event.session_present:
            self._forwarding.local_session_lost()
        wanted: dict[str, Subscription] = {}
        for rule in self._outgoing:
            old = wanted.get(rule.local_filter)
            if old is None or old.max_qos < rule.qos:
                # No Local [MQTT-3.8.3-3] and Retain As Published
                # [MQTT-3.3.1-12], as on the remote side; the retained
                # messages only for a new subscription [MQTT-3.3.1-10], not
                # again at each reconnection of the persistent session.
                wanted[rule.local_filter] = Subscription(
                    rule.local_filter,
                    rule.qos,
                    no_local=True,
                    retain_as_published=True,
                    retain_handling=RetainHandling.SEND_IF_NEW_SUBSCRIPTION,
                )
        if self._first_local:
            # Patterns of an earlier configuration, kept by the persistent session.
            self._first_local = False
            stale = [
                sub.topic_filter
                for sub in self._broker.subscriptions(self.config.local_client_id)
                if sub.topic_filter not in wanted
            ]
            if stale:
                self._local.unsubscribe(stale)
        if wanted:
            try:
                self._local.subscribe(list(wanted.values()))
            except LocalProtocolError as exc:  # wildcards turned off here, say
                logger.warning("bridge %s: cannot subscribe here: %s", self.config.name, exc)
        due, self._forwarding.local_acks_due = self._forwarding.local_acks_due, []
        for local_id, code in due:
            self._ack_local(local_id, code)
        self._local_ready()

    def _on_local_refused(self, event: Any) -> None:
        assert isinstance(event, ConnectionRefused)
        why = f"the local broker refused the bridge: {event.reason_code.name}"
        if event.reason_code in (ReasonCode.NOT_AUTHORIZED, ReasonCode.BAD_USER_NAME_OR_PASSWORD):
            why += " (set local_username to a user the broker admits)"
        self._local_failed(why)

    def _on_local_disconnected(self, event: Any) -> None:
        assert isinstance(event, Disconnected)
        if self._link_open and not self._stopping:
            self._end(f"the local broker closed the bridge's connection ({event.reason_code.name})")

    def _on_local_message(self, event: Any) -> None:
        """A message of this broker for the remote one."""
        assert isinstance(event, MessageReceived)
        local_id = event.packet_id
        found = rule_for_local(self._outgoing, event.topic)
        if found is None:
            if local_id is not None:
                self._ack_local(local_id)
            return
        rule, topic = found
        qos = min(rule.qos, event.qos)
        if local_id is None or not qos:
            self._publish_now(event, topic, qos)
            if local_id is not None:
                self._ack_local(local_id)
            return
        self._publish_out(PendingOut(local_id, event, topic, qos))

    def _publish_now(self, event: MessageReceived, topic: str, qos: int) -> int | None:
        """Publish on the remote link; None for QoS 0. :raises LocalProtocolError:"""
        properties: dict[str, Any] = {}
        if self._v5:
            properties = {name: getattr(event.packet, name) for name in _V5_PROPERTIES}
        try:
            remote_id = self._remote.publish(
                topic, event.payload, qos=qos, retain=event.retain, **properties
            )
        except LocalProtocolError as exc:
            if qos:
                raise
            self.messages_dropped += 1
            logger.debug("bridge %s: %s not forwarded: %s", self.config.name, topic, exc)
            return None
        if not qos:
            # (QoS 1/2: counted once the remote broker has it, in
            # _on_remote_acknowledged; a resend is not a second message.)
            self.messages_out += 1
        if self._filters_echoes and rule_for_remote(self._incoming, topic) is not None:
            self._echoes.sent(topic, event.payload)
        return remote_id

    @property
    def _filters_echoes(self) -> bool:
        """Whether the remote broker may send the bridge its own messages."""
        return not self._v5 and not self._try_private

    def _publish_out(self, pending: PendingOut) -> None:
        try:
            remote_id = self._publish_now(pending.message, pending.topic, pending.qos)
        except LocalProtocolError as exc:
            if self._remote.state.value == "connected":
                # It can never go (too large for the remote broker, say).
                self.messages_dropped += 1
                logger.warning(
                    "bridge %s: %s not forwarded: %s", self.config.name, pending.topic, exc
                )
                self._ack_local(pending.local_id, ReasonCode.UNSPECIFIED_ERROR)
            else:
                self._parked.append(pending)
            return
        assert remote_id is not None
        self._forwarding.sent_out(pending, remote_id)

    def _on_local_acknowledged(self, event: Any) -> None:
        assert isinstance(event, PublishAcknowledged)
        remote_id = self._forwarding.local_acknowledged(event.packet_id)
        if remote_id is None:
            return
        if event.reason_code >= 0x80:
            self.messages_dropped += 1
        else:
            self.messages_in += 1
        self._ack_remote(remote_id, event.reason_code)

    def _on_local_discarded(self, event: Any) -> None:
        assert isinstance(event, PublishDiscarded)
        remote_id = self._forwarding.local_discarded(event.packet_id)
        if remote_id is not None:
            self.messages_dropped += 1
            self._ack_remote(remote_id)

    def _on_local_subscribed(self, event: Any) -> None:
        assert isinstance(event, SubscribeAcknowledged)
        failed = [code for code in event.reason_codes if code >= 0x80]
        if failed:
            logger.warning(
                "bridge %s: this broker refused %d of the bridge's subscriptions (%s)",
                self.config.name,
                len(failed),
                ", ".join(code.name for code in failed),
            )

    _LOCAL_HANDLERS: ClassVar[dict[type, _Handler]] = {
        ConnectionAccepted: _on_local_accepted,
        ConnectionRefused: _on_local_refused,
        Disconnected: _on_local_disconnected,
        MessageReceived: _on_local_message,
        PublishAcknowledged: _on_local_acknowledged,
        PublishDiscarded: _on_local_discarded,
        SubscribeAcknowledged: _on_local_subscribed,
    }
