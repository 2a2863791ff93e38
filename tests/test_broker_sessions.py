"""Broker sessions, wills and every timer, on a fake clock."""

from __future__ import annotations

import pytest
from helpers import V5, V311, BrokerHarness, PacketFactory

from mqttproto import QoS, ReasonCode, Subscription, Will
from mqttproto.config import BrokerConfig
from mqttproto.events import ConnectionAccepted, ConnectionRefused, Disconnected
from mqttproto.store import MemoryStore


def accepted(events):
    [event] = [e for e in events if isinstance(e, ConnectionAccepted)]
    return event


def test_assigned_client_identifier_v5():
    h = BrokerHarness()
    client = h.client("x")
    event = accepted(client.connect(client_id=""))
    # [MQTT-3.2.2-16]: the server sends the identifier it assigned.
    assert event.assigned_client_identifier
    assert [s.client_id for s in h.broker.sessions()] == [event.assigned_client_identifier]


def test_empty_client_id_v311_clean_session_is_accepted():
    h = BrokerHarness()
    client = h.client("x", V311)
    event = accepted(client.connect(client_id="", clean_start=True))
    assert event.assigned_client_identifier is None
    assert len(h.broker.sessions()) == 1


def test_persistent_session_resumes_with_queued_messages():
    h = BrokerHarness()
    sub = h.connected("sub", clean_start=False, session_expiry_interval=100)
    sub.conn.subscribe([Subscription("t", QoS.AT_LEAST_ONCE)])
    h.pump()
    sub.conn.disconnect()
    h.pump()
    pub = h.connected("pub")
    pub.conn.publish("t", b"while away", qos=1)
    h.pump()
    assert h.broker.sessions()[0].queued == 1
    event = accepted(sub.connect(clean_start=False, session_expiry_interval=100))
    assert event.session_present  # [MQTT-3.2.2-2]
    h.pump()
    assert [m.payload for m in sub.take_messages()] == [b"while away"]


def test_clean_start_discards_session():
    h = BrokerHarness()
    sub = h.connected("sub", clean_start=False, session_expiry_interval=100)
    sub.conn.subscribe(["t"])
    h.pump()
    sub.conn.disconnect()
    h.pump()
    event = accepted(sub.connect(clean_start=True))
    assert not event.session_present
    assert h.broker.subscriptions("sub") == []


def test_session_expiry_timer():
    h = BrokerHarness()
    sub = h.connected("sub", clean_start=False, session_expiry_interval=10)
    sub.conn.subscribe(["t"])
    h.pump()
    sub.conn.disconnect()
    h.pump()
    h.advance(9)
    assert [s.client_id for s in h.broker.sessions()] == ["sub"]
    h.advance(2)
    assert h.broker.sessions() == []
    assert h.broker.subscribers("t") == []


def test_v311_persistent_session_survives():
    h = BrokerHarness()
    sub = h.connected("sub", V311, clean_start=False)
    sub.conn.subscribe([Subscription("t", QoS.AT_LEAST_ONCE)])
    h.pump()
    sub.drop()
    h.advance(10_000)
    assert h.broker.subscribers("t") == [("sub", QoS.AT_LEAST_ONCE)]


def test_connect_timeout_closes_silent_socket():
    h = BrokerHarness(BrokerConfig(connect_timeout=5))
    conn = h.open_raw()
    h.advance(4)
    assert conn not in h.raw_closed
    h.advance(2)
    assert conn in h.raw_closed
    assert h.raw[conn] == b""


def test_keep_alive_timeout_v5_disconnect_and_will():
    h = BrokerHarness()
    watcher = h.connected("watcher")
    watcher.conn.subscribe(["will/#"])
    h.pump()
    conn = h.open_raw()
    h.send_raw(conn, PacketFactory.connect("dead", keep_alive=10, will=Will("will/dead", b"bye")))
    h.advance(14)
    assert conn not in h.raw_closed
    h.advance(2)  # 1.5 x 10 s of silence [MQTT-3.1.2-22]
    assert conn in h.raw_closed
    assert h.raw[conn] == b"\xe0\x01\x8d"  # DISCONNECT 0x8D
    assert [m.payload for m in watcher.take_messages()] == [b"bye"]


def test_keep_alive_reset_by_traffic():
    h = BrokerHarness()
    client = h.connected("c", keep_alive=10)
    for _ in range(5):
        h.advance(9)  # the client pings every 10 s by itself
    assert not client.closed


def test_server_keep_alive():
    h = BrokerHarness(BrokerConfig(server_keep_alive=30))
    client = h.client("c")
    event = accepted(client.connect(keep_alive=0))
    assert event.keep_alive == 30  # [MQTT-3.2.2-21]


@pytest.mark.parametrize("version", [V5, V311])
def test_max_keep_alive_zero_lets_a_client_go_without_keep_alive(version):
    h = BrokerHarness(BrokerConfig(max_keep_alive=0))
    client = h.client("c", version)
    event = accepted(client.connect(keep_alive=0))
    assert event.keep_alive == 0  # no Server Keep Alive in the CONNACK
    h.advance(3 * 65535)
    assert not client.closed
    # Any keep-alive is taken as asked.
    assert accepted(h.client("d", version).connect(keep_alive=65535)).keep_alive == 65535


def test_default_max_keep_alive_holds_a_client_asking_none():
    h = BrokerHarness()
    # MQTT 5 is told 65535 and must use it [MQTT-3.2.2-21]; 3.1.1 cannot be
    # told, and is held to it silently.
    assert accepted(h.client("c5", V5).connect(keep_alive=0)).keep_alive == 65535
    silent = h.client("c3", V311)
    assert accepted(silent.connect(keep_alive=0)).keep_alive == 0
    h.advance(65535 * 1.5 + 1)
    assert silent.conn.closed
    assert not h.clients["c5"].conn.closed  # it pinged


def test_will_not_sent_on_normal_disconnect():
    h = BrokerHarness()
    watcher = h.connected("watcher")
    watcher.conn.subscribe(["w"])
    h.pump()
    client = h.connected("c", will=Will("w", b"gone"))
    client.conn.disconnect()
    h.pump()
    assert watcher.take_messages() == []  # [MQTT-3.1.2-10]


def test_will_sent_with_disconnect_0x04():
    h = BrokerHarness()
    watcher = h.connected("watcher")
    watcher.conn.subscribe(["w"])
    h.pump()
    client = h.connected("c", will=Will("w", b"gone"))
    client.conn.disconnect(ReasonCode.DISCONNECT_WITH_WILL_MESSAGE)
    h.pump()
    assert [m.payload for m in watcher.take_messages()] == [b"gone"]


def test_will_sent_on_abrupt_close_and_retained():
    h = BrokerHarness()
    client = h.connected("c", V311, will=Will("w", b"gone", QoS.AT_LEAST_ONCE, retain=True))
    client.drop()
    assert [m.payload for m in h.broker.retained("w")] == [b"gone"]


def test_will_delay_interval():
    h = BrokerHarness()
    watcher = h.connected("watcher")
    watcher.conn.subscribe(["w"])
    h.pump()
    will = Will("w", b"late", will_delay_interval=5)
    client = h.connected("c", will=will, clean_start=False, session_expiry_interval=60)
    client.drop()
    h.advance(4)
    assert watcher.take_messages() == []
    h.advance(2)
    assert [m.payload for m in watcher.take_messages()] == [b"late"]


def test_will_delay_cancelled_by_reconnect():
    h = BrokerHarness()
    watcher = h.connected("watcher")
    watcher.conn.subscribe(["w"])
    h.pump()
    will = Will("w", b"late", will_delay_interval=5)
    client = h.connected("c", will=will, clean_start=False, session_expiry_interval=60)
    client.drop()
    h.advance(2)
    client.connect(clean_start=False, session_expiry_interval=60)
    h.advance(10)
    assert watcher.take_messages() == []


def test_will_sent_when_session_ends_before_will_delay():
    h = BrokerHarness()
    watcher = h.connected("watcher")
    watcher.conn.subscribe(["w"])
    h.pump()
    client = h.connected("c", will=Will("w", b"x", will_delay_interval=100))
    client.drop()  # session expiry 0: the session ends now, and the will goes
    assert [m.payload for m in watcher.take_messages()] == [b"x"]


def test_takeover_v5():
    h = BrokerHarness()
    watcher = h.connected("watcher")
    watcher.conn.subscribe(["w"])
    h.pump()
    first = h.connected("dup", will=Will("w", b"first will"))
    second = h.client("dup2")
    accepted(second.connect(client_id="dup"))
    disconnects = [e for e in first.events if isinstance(e, Disconnected)]
    assert disconnects and disconnects[0].reason_code == ReasonCode.SESSION_TAKEN_OVER
    assert first.closed
    assert [m.payload for m in watcher.take_messages()] == [b"first will"]
    info = [s for s in h.broker.sessions() if s.client_id == "dup"]
    assert len(info) == 1 and info[0].connected


def test_takeover_keeps_persistent_session():
    h = BrokerHarness()
    first = h.connected("dup", V311, clean_start=False)
    first.conn.subscribe(["t"])
    h.pump()
    second = h.client("dup2", V311)
    event = accepted(second.connect(client_id="dup", clean_start=False))
    assert event.session_present
    assert first.closed


def test_store_restores_sessions_and_retained():
    store = MemoryStore()
    h = BrokerHarness(store=store)
    sub = h.connected("sub", clean_start=False, session_expiry_interval=100)
    sub.conn.subscribe([Subscription("t", QoS.AT_LEAST_ONCE)])
    h.pump()
    sub.drop()
    pub = h.connected("pub")
    pub.conn.publish("t", b"queued", qos=1)
    pub.conn.publish("r", b"kept", retain=True)
    h.pump()
    # A new broker over the same store: sessions, queues and retained come back.
    h2 = BrokerHarness(store=store)
    sub2 = h2.client("sub")
    event = accepted(sub2.connect(clean_start=False, session_expiry_interval=100))
    assert event.session_present
    h2.pump()
    assert [m.payload for m in sub2.take_messages()] == [b"queued"]
    assert [m.payload for m in h2.broker.retained("r")] == [b"kept"]


def test_a_fan_out_to_offline_sessions_stores_one_record_per_delivery_kind():
    """Queued for many offline sessions, a message is stored once per granted
    QoS (not once per session), and each session gets it back as granted."""
    store = MemoryStore()
    h = BrokerHarness(store=store)
    for name, qos in [("a", QoS.AT_LEAST_ONCE), ("b", QoS.AT_LEAST_ONCE), ("c", QoS.AT_MOST_ONCE)]:
        client = h.connected(name, clean_start=False, session_expiry_interval=100)
        client.conn.subscribe([Subscription("t", qos)])
        h.pump()
        client.drop()
    pub = h.connected("pub")
    pub.conn.publish("t", b"m", qos=1)
    h.pump()
    [for_a], [for_b], [for_c] = store.queued["a"], store.queued["b"], store.queued["c"]
    assert for_a is for_b and for_a.packet.qos == QoS.AT_LEAST_ONCE
    assert for_c.packet.qos == QoS.AT_MOST_ONCE  # granted QoS 0: a record of its own
    h2 = BrokerHarness(store=store)
    for name in ("a", "b"):
        client = h2.client(name)
        assert accepted(
            client.connect(clean_start=False, session_expiry_interval=100)
        ).session_present
        h2.pump()
        [message] = client.take_messages()
        assert (message.payload, message.qos) == (b"m", QoS.AT_LEAST_ONCE)


def test_inflight_resent_with_dup_on_resume():
    h = BrokerHarness()
    sub = h.connected("sub", clean_start=False, session_expiry_interval=100)
    sub.conn.subscribe([Subscription("t", QoS.AT_LEAST_ONCE)])
    h.pump()
    pub = h.connected("pub")
    # The subscriber's network dies before its PUBACK reaches the broker.
    sub_conn = sub.conn_id
    pub.conn.publish("t", b"m", qos=1)
    pub_bytes = pub.conn.data_to_send(h.now)
    h.broker.receive_data(pub.conn_id, pub_bytes, h.now)
    h.broker.flush(h.now)
    h.broker.connection_lost(sub_conn, h.now)
    sub.conn.receive_eof(h.now)
    sub.closed = True
    sub.conn_id = None
    h.pump()
    sub.connect(clean_start=False, session_expiry_interval=100)
    h.pump()
    [message] = sub.take_messages()
    assert message.duplicate and message.payload == b"m"  # [MQTT-4.4.0-1]


def test_refused_connect_v311_bad_credentials():
    class Deny:
        def authenticate(self, info):
            from mqttproto.auth import AuthResult

            return AuthResult.reject(ReasonCode.BAD_USER_NAME_OR_PASSWORD)

        def continue_authentication(self, info, data):
            raise AssertionError("not used")

    h = BrokerHarness(authenticator=Deny())
    for version in (V311, V5):
        client = h.client(f"c{version}", version)
        events = client.connect(username="u", password=b"p")
        [refused] = [e for e in events if isinstance(e, ConnectionRefused)]
        assert refused.reason_code == ReasonCode.BAD_USER_NAME_OR_PASSWORD
        assert client.closed
    assert h.broker.sessions() == []


def test_mqtt31_persistent_session_resumes():
    """A regression found by fuzz_broker: resuming a 3.1 client's session made
    the broker encode a CONNACK with session present, which 3.1 cannot carry,
    and the exception escaped receive_data."""
    from mqttproto import ProtocolVersion

    v31 = ProtocolVersion.MQTT_3_1
    h = BrokerHarness()
    sub = h.connected("old", v31, clean_start=False)
    sub.conn.subscribe([Subscription("t", QoS.AT_LEAST_ONCE)])
    h.pump()
    sub.conn.disconnect()
    h.pump()
    pub = h.connected("pub")
    pub.conn.publish("t", b"queued", qos=1)
    h.pump()
    event = accepted(sub.connect(clean_start=False))
    assert event.session_present is False  # 3.1 has no flag to say so
    h.pump()
    assert [m.payload for m in sub.take_messages()] == [b"queued"]
