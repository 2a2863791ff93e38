"""Subscriptions for the :class:`~mqttproto.broker.Broker`: SUBSCRIBE and
UNSUBSCRIBE answered through the client's connection, the subscription trie
kept, and retained messages sent to a new subscription."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..config import BrokerConfig
from ..enums import ReasonCode
from ..errors import RemoteProtocolError
from ..events import SubscribeRequested, UnsubscribeRequested
from ..packets import Subscription
from ..store import SessionStore
from ..topics import parse_shared_subscription
from ._durable import refuse_suback
from ._message import Message
from ._retained import RetainedStore
from ._router import Router, Sub
from ._sessions import Link, Session

__all__ = ["Subscriptions"]

_C = ReasonCode


class Subscriptions:
    """The subscribing half of :class:`~mqttproto.broker.Broker`."""

    config: BrokerConfig
    store: SessionStore
    authorizer: Any
    _router: Router[Session]
    _retained: RetainedStore

    _durable: bool

    if TYPE_CHECKING:

        def _hold_answer(self, link: Link, answer: Callable[[bool], None]) -> None: ...

        def _deliver(
            self,
            session: Session,
            message: Message,
            qos: int,
            retain: bool,
            sub_ids: tuple[int, ...],
            now: float,
        ) -> bool: ...

    def _subscribe(self, link: Link, request: SubscribeRequested, now: float) -> None:
        """SUBSCRIBE: one reason code per filter [MQTT-3.8.4-6], then retained messages."""
        session = link.session
        assert session is not None
        config = self.config
        authorizer = self.authorizer
        sub_id = request.subscription_identifier
        codes: list[ReasonCode] = []
        retained_due: list[Sub[Session]] = []
        changed = False
        wanted = request.subscriptions
        if len(wanted) > config.max_filters_per_subscribe:
            # Refused as a whole, nothing changes: one 0x97 *Quota exceeded*
            # per filter [MQTT-3.8.4-6] (3.1.1: 0x80 Failure).
            codes = [_C.QUOTA_EXCEEDED] * len(wanted)
            wanted = ()
        topic_chars_ok = config.max_topic_length // 4
        for subscription in wanted:
            full_filter = subscription.topic_filter
            if len(full_filter) > topic_chars_ok and (
                len(full_filter.encode("utf-8", "surrogatepass")) > config.max_topic_length
            ):
                codes.append(_C.TOPIC_FILTER_INVALID)
                continue
            try:
                shared = parse_shared_subscription(
                    full_filter, error=RemoteProtocolError, max_levels=config.max_topic_levels
                )
            except RemoteProtocolError:
                codes.append(_C.TOPIC_FILTER_INVALID)
                continue
            inner = shared.topic_filter if shared is not None else full_filter
            if inner.count("/") >= config.max_topic_levels:
                codes.append(_C.TOPIC_FILTER_INVALID)
            elif shared is not None and not config.shared_subscription_available:
                codes.append(_C.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED)
            elif not config.wildcard_subscription_available and ("+" in inner or "#" in inner):
                codes.append(_C.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED)
            elif sub_id is not None and not config.subscription_identifiers_available:
                codes.append(_C.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED)
            elif (
                full_filter not in session.subscriptions
                and len(session.subscriptions) >= config.max_subscriptions_per_session
            ):
                codes.append(_C.QUOTA_EXCEEDED)
            elif authorizer is not None and not authorizer.may_subscribe(
                link.client_id, link.username, full_filter
            ):
                codes.append(_C.NOT_AUTHORIZED)
            else:
                sub, is_new = self._add_subscription(session, subscription, sub_id)
                changed = True
                # [MQTT-3.8.4-8]: the granted QoS may be lower than requested.
                codes.append(ReasonCode(sub.qos))
                handling = sub.retain_handling
                # Retained messages are not sent to shared subscriptions
                # (MQTT 5.0 section 4.8.2); Retain Handling 1 only for a new one.
                if shared is None and (handling == 0 or (handling == 1 and is_new)):
                    retained_due.append(sub)
        if changed and session.persistent:
            self.store.save_session(session.snapshot())

        def answer(stored: bool = True) -> None:
            if not stored:
                refuse_suback(link, request.packet_id, len(codes))
                return
            link.conn.suback(request.packet_id, codes)
            for sub in retained_due:
                self._send_retained(session, sub, now)

        if self._durable and changed and session.persistent:
            # SUBACK once the subscription is stored (Durability.commit).
            self._hold_answer(link, answer)
        else:
            answer()

    def _add_subscription(
        self, session: Session, request: Subscription, sub_id: int | None
    ) -> tuple[Sub[Session], bool]:
        full_filter = request.topic_filter
        shared = parse_shared_subscription(full_filter)
        granted = min(int(request.max_qos), self.config.maximum_qos)
        sub = Sub(
            session,
            shared.topic_filter if shared is not None else full_filter,
            granted,
            no_local=request.no_local,
            retain_as_published=request.retain_as_published,
            retain_handling=int(request.retain_handling),
            sub_id=sub_id,
            group=shared.group if shared is not None else None,
        )
        old = session.subscriptions.get(full_filter)
        # [MQTT-3.8.4-3]: a repeated filter replaces the subscription.
        session.subscriptions[full_filter] = sub
        self._router.add(sub)
        return sub, old is None

    def _send_retained(self, session: Session, sub: Sub[Session], now: float) -> None:
        """Retained messages for a new subscription, retain flag set [MQTT-3.3.1-9]."""
        authorizer = self.authorizer
        sub_ids = () if sub.sub_id is None else (sub.sub_id,)
        for retained in self._retained.match(sub.topic_filter):
            if retained.expires_at is not None and now >= retained.expires_at:
                continue
            packet = retained.packet
            if authorizer is not None and not authorizer.may_receive(
                session.client_id, session.username, packet.topic
            ):
                continue
            message = Message(packet, now, None)
            if retained.expires_at is not None:
                message.expires_at = retained.expires_at
                assert message.expiry is not None
                message.received_at = retained.expires_at - message.expiry
            qos = min(int(packet.qos), sub.qos)
            self._deliver(session, message, qos, True, sub_ids, now)

    def _unsubscribe(self, link: Link, request: UnsubscribeRequested) -> None:
        session = link.session
        assert session is not None
        codes = []
        for full_filter in request.topic_filters:
            sub = session.subscriptions.pop(full_filter, None)
            if sub is None:
                codes.append(_C.NO_SUBSCRIPTION_EXISTED)
            else:
                self._router.remove(sub)
                codes.append(_C.SUCCESS)
        # [MQTT-3.10.4-4]: UNSUBACK even when nothing was removed.
        link.conn.unsuback(request.packet_id, codes)
        if session.persistent:
            self.store.save_session(session.snapshot())
