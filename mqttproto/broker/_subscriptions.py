"""Subscriptions for the :class:`~mqttproto.broker.Broker`: SUBSCRIBE and
UNSUBSCRIBE answered through the client's connection, the subscription trie
kept, and the retained messages owed to a new subscription started (see
:mod:`._feed`)."""

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

        def _start_feed(self, session: Session, full_filter: str, sub: Sub[Session]) -> None: ...

        def _stop_feed(self, session: Session, full_filter: str) -> None: ...

        def _save_session(self, session: Session) -> None: ...

        def _renew_feed(self, session: Session, full_filter: str, sub: Sub[Session]) -> None: ...

        def _feed(self, session: Session, now: float) -> None: ...

        def _hold_answer(self, link: Link, answer: Callable[[bool], None]) -> None: ...

    def _subscribe(self, link: Link, request: SubscribeRequested, now: float) -> None:
        """SUBSCRIBE: one reason code per filter [MQTT-3.8.4-6], then retained messages."""
        session = link.session
        assert session is not None
        config = self.config
        authorizer = self.authorizer
        sub_id = request.subscription_identifier
        codes: list[ReasonCode] = []
        retained_due: list[tuple[str, Sub[Session]]] = []
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
                session.subscription_count >= config.max_subscriptions_per_session
                and session.subscription(full_filter) is None
            ):
                codes.append(_C.QUOTA_EXCEEDED)
            elif authorizer is not None and not authorizer.may_subscribe(
                link.client_id, link.username, full_filter
            ):
                codes.append(config.denied)
            else:
                sub, is_new = self._add_subscription(session, subscription, sub_id)
                changed = True
                # [MQTT-3.8.4-8]: the granted QoS may be lower than requested.
                codes.append(ReasonCode(sub.qos))
                handling = sub.retain_handling
                # Retained messages are not sent to shared subscriptions
                # (MQTT 5.0 section 4.8.2); Retain Handling 0 sends them,
                # again for a repeated filter [MQTT-3.8.4-4]; 1 only for a
                # new subscription [MQTT-3.3.1-10]; 2 never [MQTT-3.3.1-11].
                if shared is None and (handling == 0 or (handling == 1 and is_new)):
                    retained_due.append((full_filter, sub))
                elif shared is None and not is_new:
                    self._renew_feed(session, full_filter, sub)
        if changed and session.persistent:
            self._save_session(session)

        def answer(stored: bool = True) -> None:
            if not stored:
                refuse_suback(link, request.packet_id, len(codes))
                return
            link.conn.suback(request.packet_id, codes)
            if retained_due:
                # After the SUBACK, paced by the client (see _feed).
                for full_filter, sub in retained_due:
                    self._start_feed(session, full_filter, sub)
                if not session.pending:
                    self._feed(session, now)

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
        # [MQTT-3.8.4-3]: a repeated filter replaces the subscription.
        old = session.put_subscription(full_filter, sub)
        self._router.add(sub)
        return sub, old is None

    def _unsubscribe(self, link: Link, request: UnsubscribeRequested) -> None:
        session = link.session
        assert session is not None
        codes = []
        for full_filter in request.topic_filters:
            sub = session.pop_subscription(full_filter)
            if sub is None:
                codes.append(_C.NO_SUBSCRIPTION_EXISTED)
            else:
                self._router.remove(sub)
                # Retained messages still owed to it are not sent.
                self._stop_feed(session, full_filter)
                codes.append(_C.SUCCESS)
        # [MQTT-3.10.4-4]: UNSUBACK even when nothing was removed.
        link.conn.unsuback(request.packet_id, codes)
        if session.persistent:
            self._save_session(session)
