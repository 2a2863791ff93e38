"""A hypothesis state machine of the SQLite store against a model.

The model is two dictionaries: what was committed, and the batch pending.
Any sequence of snapshots (whole, or without the messages), message changes
(queued, sent from the queue, dropped from it, sent at once, past PUBREC,
acknowledged), deletes, retained changes, commits and reopenings (a crash:
the pending batch is lost) leaves the file loading exactly the committed
model.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import attrs
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from mqttproto.enums import QoS
from mqttproto.packets import PublishPacket
from mqttproto.store import (
    RetainedMessage,
    SQLiteStore,
    StoredMessage,
    StoredSession,
    StoredSubscription,
)

CLIENTS = ("a", "b", "c")
#: Few identifiers, so that flows replace each other, and the two around
#: the wrap, which a run of identifiers in the file must not span.
PACKET_IDS = st.sampled_from([1, 2, 3, 4, 65534, 65535])
TOPICS = ("r/1", "r/2")
#: A small pool, so that snapshots share messages as a broker's do.
MESSAGES = tuple(
    StoredMessage(PublishPacket(f"t/{n}", b"%d" % n, QoS(1 + n % 2)), float(n) if n % 3 else None)
    for n in range(6)
)
INFLIGHT = tuple(
    StoredMessage(PublishPacket("i", b"%d" % n, QoS.EXACTLY_ONCE, packet_id=n), None, n, released)
    for n in range(1, 4)
    for released in (False, True)
)

sessions = st.builds(
    StoredSession,
    st.sampled_from(CLIENTS),
    st.sampled_from([1, 60, 0xFFFFFFFF]),
    st.sampled_from([None, 10.0]),
    st.lists(st.sampled_from(["x", "y/#"]), unique=True).map(
        lambda filters: tuple(StoredSubscription(f, QoS.AT_LEAST_ONCE) for f in filters)
    ),
    st.lists(st.sampled_from(INFLIGHT), unique_by=lambda m: m.packet_id).map(tuple),
    st.lists(st.sampled_from(MESSAGES), max_size=5).map(tuple),
    st.lists(st.integers(1, 5), unique=True).map(lambda ids: tuple(sorted(ids))),
)


def _by_id(session: StoredSession) -> StoredSession:
    return attrs.evolve(
        session, inflight=tuple(sorted(session.inflight, key=lambda m: m.packet_id or 0))
    )


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.path = Path(self.dir.name) / "store.db"
        self.store = self._open()
        self.committed: dict[str, StoredSession] = {}
        self.committed_retained: dict[str, RetainedMessage] = {}
        self.pending: dict[str, StoredSession | None] = {}
        self.pending_retained: dict[str, RetainedMessage | None] = {}
        self.streamed = 0

    def _open(self) -> SQLiteStore:
        return SQLiteStore(self.path, clock=lambda: 0.0, wall_clock=lambda: 0.0)

    def _current(self, client_id: str) -> StoredSession | None:
        if client_id in self.pending:
            return self.pending[client_id]
        return self.committed.get(client_id)

    @rule(session=sessions)
    def save(self, session: StoredSession) -> None:
        self.store.save_session(session)
        self.pending[session.client_id] = session

    @rule(client_id=st.sampled_from(CLIENTS), message=st.sampled_from(MESSAGES))
    def append(self, client_id: str, message: StoredMessage) -> None:
        self.store.append_queued(client_id, message)
        self._appended(client_id, message)

    def _appended(self, client_id: str, message: StoredMessage) -> None:
        current = self._current(client_id)
        if current is not None:
            self.pending[client_id] = StoredSession(
                current.client_id,
                current.session_expiry_interval,
                current.expires_at,
                current.subscriptions,
                current.inflight,
                (*current.queued, message),
                current.awaiting_release,
            )

    @rule(session=sessions)
    def save_own_state(self, session: StoredSession) -> None:
        self.store.save_session(session, messages=False)
        current = self._current(session.client_id)
        if current is not None:
            self.pending[session.client_id] = attrs.evolve(
                session, inflight=current.inflight, queued=current.queued
            )

    @rule(client_id=st.sampled_from(CLIENTS), index=st.integers(0, 5))
    def remove_queued(self, client_id: str, index: int) -> None:
        self.store.remove_queued(client_id, index)
        current = self._current(client_id)
        if current is not None and index < len(current.queued):
            queued = current.queued[:index] + current.queued[index + 1 :]
            self.pending[client_id] = attrs.evolve(current, queued=queued)

    @rule(client_id=st.sampled_from(CLIENTS), packet_id=PACKET_IDS)
    def send_queued(self, client_id: str, packet_id: int) -> None:
        self.store.send_queued(client_id, packet_id)
        self._sent(client_id, packet_id)

    def _sent(self, client_id: str, packet_id: int) -> None:
        current = self._current(client_id)
        if current is not None and current.queued:
            self.pending[client_id] = self._in_flight(
                current, packet_id, current.queued[0], queued=current.queued[1:]
            )

    @rule(
        client_id=st.sampled_from(CLIENTS),
        packet_id=PACKET_IDS,
        message=st.sampled_from(MESSAGES),
    )
    def add_inflight(self, client_id: str, packet_id: int, message: StoredMessage) -> None:
        self.store.add_inflight(client_id, packet_id, message)
        current = self._current(client_id)
        if current is not None:
            self.pending[client_id] = self._in_flight(
                current, packet_id, message, queued=current.queued
            )

    @staticmethod
    def _in_flight(
        session: StoredSession,
        packet_id: int,
        message: StoredMessage,
        queued: tuple[StoredMessage, ...],
    ) -> StoredSession:
        sent = StoredMessage(
            attrs.evolve(message.packet, packet_id=packet_id), message.expires_at, packet_id
        )
        others = tuple(m for m in session.inflight if m.packet_id != packet_id)
        return attrs.evolve(session, inflight=(*others, sent), queued=queued)

    @rule(client_id=st.sampled_from(CLIENTS), packet_id=PACKET_IDS)
    def release_inflight(self, client_id: str, packet_id: int) -> None:
        self.store.release_inflight(client_id, packet_id)
        current = self._current(client_id)
        if current is not None:
            inflight = tuple(
                attrs.evolve(m, released=True) if m.packet_id == packet_id else m
                for m in current.inflight
            )
            self.pending[client_id] = attrs.evolve(current, inflight=inflight)

    @rule(client_id=st.sampled_from(CLIENTS), packet_id=PACKET_IDS)
    def end_inflight(self, client_id: str, packet_id: int) -> None:
        self.store.end_inflight(client_id, packet_id)
        self._ended(client_id, packet_id)

    def _ended(self, client_id: str, packet_id: int) -> None:
        current = self._current(client_id)
        if current is not None:
            inflight = tuple(m for m in current.inflight if m.packet_id != packet_id)
            self.pending[client_id] = attrs.evolve(current, inflight=inflight)

    @rule(
        clients=st.lists(st.sampled_from(CLIENTS), min_size=1, max_size=3, unique=True),
        count=st.integers(2, 6),
    )
    def append_stream(self, clients: list[str], count: int) -> None:
        """New messages, each queued for every one of ``clients`` in turn,
        as a fan-out does: runs of deliveries of consecutive messages."""
        for _ in range(count):
            self.streamed += 1
            packet = PublishPacket("s", b"%d" % self.streamed, QoS.AT_LEAST_ONCE)
            message = StoredMessage(packet, None)
            self.store.append_queued_many(clients, message)
            for client_id in clients:
                self._appended(client_id, message)

    @rule(client_id=st.sampled_from(CLIENTS), first=PACKET_IDS, count=st.integers(2, 4))
    def send_run(self, client_id: str, first: int, count: int) -> None:
        """The head of the queue sent with identifiers in turn (across the wrap)."""
        packet_ids = [(first - 1 + k) % 65535 + 1 for k in range(count)]
        self.store.send_queued_many(client_id, packet_ids)
        for packet_id in packet_ids:
            self._sent(client_id, packet_id)

    @rule(client_id=st.sampled_from(CLIENTS), first=PACKET_IDS, count=st.integers(2, 4))
    def end_run(self, client_id: str, first: int, count: int) -> None:
        """Flows acknowledged in the order they were sent (an identifier
        twice: the second one is not in flight any more)."""
        packet_ids = [(first - 1 + k) % 65535 + 1 for k in range(count)]
        self.store.end_inflight_many(client_id, packet_ids + packet_ids[:1])
        for packet_id in packet_ids:
            self._ended(client_id, packet_id)

    @rule(client_id=st.sampled_from(CLIENTS))
    def delete(self, client_id: str) -> None:
        self.store.delete_session(client_id)
        self.pending[client_id] = None

    @rule(topic=st.sampled_from(TOPICS), payload=st.sampled_from([b"", b"1", b"22"]))
    def retain(self, topic: str, payload: bytes) -> None:
        message = RetainedMessage(PublishPacket(topic, payload, retain=True)) if payload else None
        self.store.set_retained(topic, message)
        self.pending_retained[topic] = message

    @rule()
    def commit(self) -> None:
        self.store.commit()
        for client_id, session in self.pending.items():
            if session is None:
                self.committed.pop(client_id, None)
            else:
                self.committed[client_id] = session
        for topic, message in self.pending_retained.items():
            if message is None:
                self.committed_retained.pop(topic, None)
            else:
                self.committed_retained[topic] = message
        self.pending.clear()
        self.pending_retained.clear()

    @rule()
    def crash_and_reopen(self) -> None:
        self.store.close()
        self.store = self._open()
        self.pending.clear()
        self.pending_retained.clear()
        self.check_the_file()

    @invariant()
    def check_the_file(self) -> None:
        # Read through a second connection: what a restart would load.
        reader = self._open()
        try:
            loaded = {s.client_id: s for s in reader.load_sessions()}
            retained = {m.topic: m for m in reader.load_retained()}
        finally:
            reader.close()
        # In-flight messages load in the order they were first recorded;
        # the model does not follow that order, so compare them as sets.
        assert {c: _by_id(s) for c, s in loaded.items()} == {
            c: _by_id(s) for c, s in self.committed.items()
        }
        assert retained == self.committed_retained

    def teardown(self) -> None:
        self.store.close()
        self.dir.cleanup()


StoreMachine.TestCase.settings = settings(
    settings.default, stateful_step_count=40, max_examples=min(settings.default.max_examples, 80)
)
TestStoreMachine = StoreMachine.TestCase
