"""What an idle connection and an offline session keep, object by object.

Issue 16 asks for 2 KiB per idle connection and 1.5 KiB per offline session:
most of what they held was empty tables made "just in case" (a dict is 64
bytes empty, a set 216, a list 56). These tests pin the layout that the
Python-heap figures of ``benchmarks/broker_memory.py`` rest on: the tables
are made by their first entry and dropped (or emptied) with their last, and
what every connection would hold the same is shared. They look at the
objects, not at timings or byte counts (``test_connection_memory`` bounds
those).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from test_connection_memory import _client

from mqttproto import ProtocolVersion, PublishPacket, QoS, encode_packet
from mqttproto._decode_fields import _skip_properties, property_limit
from mqttproto._qos import NO_PACKET_IDS
from mqttproto._reader import PacketReader as PurePacketReader
from mqttproto.broker import Broker
from mqttproto.broker._router import Sub
from mqttproto.broker._sessions import Link, Session
from mqttproto.client import ClientConnection
from mqttproto.config import ServerConfig
from mqttproto.events import ConnectionAccepted, MessageReceived
from mqttproto.server import ServerConnection, ServerSession
from mqttproto.topics import SubscriptionTree, parse_shared_subscription

V5 = ProtocolVersion.MQTT_5_0
NOW = 0.0
_CONTAINERS = (dict, list, set, frozenset, deque, OrderedDict)


def _slots(obj: object) -> dict[str, Any]:
    """Every slot of ``obj`` that is set, through its class hierarchy."""
    names = {name for cls in type(obj).__mro__ for name in getattr(cls, "__slots__", ())}
    return {name: getattr(obj, name) for name in names if hasattr(obj, name)}


def _empty_containers(obj: object) -> list[str]:
    """The slots of ``obj`` holding an empty container of their own (the
    shared empty frozenset of _qos does not count: it is one per process)."""
    return [
        name
        for name, value in _slots(obj).items()
        if isinstance(value, _CONTAINERS) and not value and value is not NO_PACKET_IDS
    ]


def _publisher(broker: Broker) -> tuple[int, ClientConnection]:
    client = ClientConnection(V5)
    conn = broker.open_connection(NOW)
    client.connect(client_id="pub", keep_alive=0)
    broker.receive_data(conn, client.data_to_send(NOW), NOW)
    client.receive_data(broker.data_to_send(conn, NOW), NOW)
    return conn, client


def _link(broker: Broker, conn: int) -> Link:
    return broker._conns[conn]


def test_an_idle_connection_holds_no_empty_table() -> None:
    broker = Broker()
    conn, _ = _client(broker, "c1", "devices/c1/cmd")
    link = _link(broker, conn)
    session = link.session
    assert session is not None
    server = link.conn
    assert _empty_containers(server) == []
    assert _empty_containers(link) == []
    assert _empty_containers(session) == []
    # Nothing waits: no output, no events, no packets, no partial packet.
    assert server.data_to_send(NOW) == b""
    assert server.next_event() is None
    assert server.incomplete_packet_size == 0
    # The one subscription is held as itself: no table (a dict of one
    # entry is 184 bytes).
    assert list(session.subscriptions) == ["devices/c1/cmd"]
    assert not any(isinstance(value, dict) for value in _slots(session).values())
    # Nothing of the CONNECT phase stays with the link or the connection.
    assert link._rare is None and link.connect is None and link.will_on_close
    assert server._rare is None and server._connect is None


def test_a_server_connection_keeps_the_connect_phase_only_while_it_lasts() -> None:
    server = ServerConnection(now=NOW)
    client = ClientConnection(V5)
    client.connect(client_id="c1", keep_alive=0)
    server.receive_data(client.data_to_send(NOW), NOW)
    assert server._rare is None  # read, not yet handled
    request = server.next_event()
    assert request is not None
    assert server._rare is not None and server._connect is not None
    server.accept()
    assert server._rare is None and server._connect is None and server._held is None


def test_the_per_connection_objects_have_no_instance_dict() -> None:
    """Every class on the way declares its slots (the server role's mixins
    an empty tuple): no ``__dict__``, no weakref slot, no values array per
    connection (40 bytes for ServerConnection when its mixins had none)."""
    broker = Broker()
    conn, _ = _client(broker, "c1", "devices/c1/cmd")
    link = _link(broker, conn)
    assert link.session is not None
    for obj in (link, link.conn, link.session, link.conn._session):
        assert not hasattr(obj, "__dict__"), type(obj).__name__
        assert type(obj).__weakrefoffset__ == 0, type(obj).__name__


def test_a_link_keeps_its_rare_fields_only_while_one_is_set() -> None:
    broker = Broker()
    conn, _ = _client(broker, "c1", "devices/c1/cmd")
    link = _link(broker, conn)
    link.assigned_id = "auto-1"
    link.will_on_close = False
    assert link._rare is not None
    assert (link.assigned_id, link.will_on_close, link.connect) == ("auto-1", False, None)
    link.assigned_id = None
    assert link._rare is not None  # will_on_close is still not its default
    link.will_on_close = True
    assert link._rare is None
    assert (link.assigned_id, link.will_on_close, link.identity) == (None, True, None)
    # What the transport established stays for the connection's life.
    other = Link(2, ServerConnection(), peer=None, identity="cn", address=None, max_unsent=1)
    assert other.identity == "cn" and other._rare is not None


_FILTERS = ["a/b", "a/+", "#", "$share/g/a/b", "$share/h/a/b", "$share/g/#"]


def _sub(session: Session, full_filter: str, qos: int) -> Sub[Session]:
    shared = parse_shared_subscription(full_filter)
    if shared is None:
        return Sub(session, full_filter, qos)
    return Sub(session, shared.topic_filter, qos, group=shared.group)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["put", "pop", "clear"]),
            st.sampled_from(_FILTERS),
            st.integers(0, 2),
        ),
        max_size=30,
    )
)
def test_a_session_keeps_its_subscriptions_as_a_dict_would(
    steps: list[tuple[str, str, int]],
) -> None:
    """One subscription is held as itself, more in a dict, and back: what the
    session answers is what a dict of full filter -> Sub answers, order included."""
    session = Session("c", max_queued=10)
    model: dict[str, Sub[Session]] = {}
    for op, full_filter, qos in steps:
        if op == "put":
            sub = _sub(session, full_filter, qos)
            assert session.put_subscription(full_filter, sub) is model.get(full_filter)
            model[full_filter] = sub
        elif op == "pop":
            assert session.pop_subscription(full_filter) is model.pop(full_filter, None)
        else:
            assert session.clear_subscriptions() == list(model.values())
            model.clear()
        assert list(session.subscriptions.items()) == list(model.items())
        assert session.subscription_count == len(model)
        for name in _FILTERS:
            assert session.subscription(name) is model.get(name)
        assert isinstance(session._subs, dict) == (len(model) > 1)


def test_a_session_makes_its_flows_on_first_qos_1_use_and_empties_them_when_drained() -> None:
    broker = Broker()
    conn, client = _client(broker, "c1", "devices/c1/cmd")
    pub, publisher = _publisher(broker)
    session = _link(broker, conn).session
    assert session is not None
    flows = session.flows
    assert flows.unused
    assert _empty_containers(flows) == []

    # QoS 0 makes nothing.
    publisher.publish("devices/c1/cmd", b"zero", qos=QoS.AT_MOST_ONCE)
    broker.receive_data(pub, publisher.data_to_send(NOW), NOW)
    client.receive_data(dict(broker.flush(NOW))[conn], NOW)
    assert [e.payload for e in client.events() if isinstance(e, MessageReceived)] == [b"zero"]
    assert flows.unused
    assert session.inflight_count == 0

    # QoS 1 makes the outgoing flow; its acknowledgement empties it.
    publisher.publish("devices/c1/cmd", b"one", qos=QoS.AT_LEAST_ONCE)
    broker.receive_data(pub, publisher.data_to_send(NOW), NOW)
    client.receive_data(dict(broker.flush(NOW))[conn], NOW)
    assert not flows.unused
    assert len(flows.inflight) == 1
    assert session.inflight_count == 1
    assert [e.payload for e in client.events() if isinstance(e, MessageReceived)] == [b"one"]
    broker.receive_data(conn, client.data_to_send(NOW), NOW)  # the PUBACK
    broker.flush(NOW)
    assert flows.inflight == ()
    assert len(flows.packet_ids) == 0
    assert session.inflight_count == 0
    assert _empty_containers(session) == []


def test_a_qos_2_identifier_table_goes_with_its_release() -> None:
    session = ServerSession()
    inbound = session.inbound
    assert inbound.awaiting_release is NO_PACKET_IDS
    session.restore_awaiting_release([7, 9])
    assert session.awaiting_release == (7, 9)
    assert inbound.release(7)
    assert inbound.release(9)
    assert not inbound.release(9)
    assert inbound.awaiting_release is NO_PACKET_IDS
    assert inbound.unacked == {}


def test_an_offline_session_keeps_no_flows_it_never_used() -> None:
    broker = Broker()
    conn, _ = _client(broker, "c1", "devices/c1/cmd")
    session = _link(broker, conn).session
    assert isinstance(session, Session)
    broker.connection_lost(conn, NOW)
    broker.flush(NOW)
    assert session.link is None
    assert session.flows_or_none is None
    assert session.feeds == ()
    assert session.pending == ()
    assert session.stored_awaiting is NO_PACKET_IDS
    assert _empty_containers(session) == []
    # It resumes as it was: present, subscribed, a message reaches it.
    client = ClientConnection(V5)
    again = broker.open_connection(NOW)
    client.connect(client_id="c1", keep_alive=60, clean_start=False, session_expiry_interval=3600)
    broker.receive_data(again, client.data_to_send(NOW), NOW)
    client.receive_data(broker.data_to_send(again, NOW), NOW)
    assert [e.session_present for e in client.events() if isinstance(e, ConnectionAccepted)] == [
        True
    ]
    pub, publisher = _publisher(broker)
    publisher.publish("devices/c1/cmd", b"back", qos=QoS.AT_LEAST_ONCE)
    broker.receive_data(pub, publisher.data_to_send(NOW), NOW)
    client.receive_data(dict(broker.flush(NOW))[again], NOW)
    assert [e.payload for e in client.events() if isinstance(e, MessageReceived)] == [b"back"]


def test_a_session_that_used_its_flows_keeps_them_offline() -> None:
    """The packet identifiers go on where they were (not reused at once)."""
    broker = Broker()
    conn, _ = _client(broker, "c1", "devices/c1/cmd")
    pub, publisher = _publisher(broker)
    publisher.publish("devices/c1/cmd", b"one", qos=QoS.AT_LEAST_ONCE)
    broker.receive_data(pub, publisher.data_to_send(NOW), NOW)
    broker.flush(NOW)
    session = _link(broker, conn).session
    assert session is not None
    broker.connection_lost(conn, NOW)
    assert session.flows_or_none is not None
    assert len(session.flows.inflight) == 1


def test_connections_of_one_config_share_what_they_would_hold_the_same() -> None:
    first, second = ServerConnection(ServerConfig()), ServerConnection(ServerConfig())
    assert first.config is not second.config
    # Values above the small-int cache, computed once for both.
    assert first._topic_chars_ok > 256
    assert first._topic_chars_ok is second._topic_chars_ok
    assert first._plain_topic_chars is second._plain_topic_chars
    # One property limit per set of values, in both twins' readers.
    skip = _skip_properties
    assert property_limit(3, 100, 0, skip) is property_limit(3, 100, 0, skip)
    assert property_limit(3, 100, 0, skip) is not property_limit(4, 100, 0, skip)
    readers = [PurePacketReader(max_user_properties=5), PurePacketReader(max_user_properties=5)]
    assert readers[0]._limit is readers[1]._limit


def test_a_reader_holds_no_list_between_packets() -> None:
    reader = PurePacketReader(version=V5)
    data = encode_packet(PublishPacket("t", b"x"), version=V5)
    assert reader._pending is None
    assert reader.feed(data[:3]) == []
    assert reader._pending is not None
    assert len(reader.feed(data[3:])) == 1
    assert reader._pending is None


def test_a_trie_level_without_children_or_entries_holds_no_table() -> None:
    tree: SubscriptionTree[str] = SubscriptionTree()
    key = "".join(["c", "1"])  # not the literal the filter's level is split from
    # A filter without wildcards is no trie level at all.
    tree.add("devices/c1/cmd", key, "exact")
    assert not isinstance(tree._root.children, dict)
    tree.add("devices/c1/+", key, "sub")
    root = tree._root
    devices = root.children["devices"]
    level = devices.children["c1"]
    leaf = level.children["+"]
    # The inner levels have children and no entries, the leaf the reverse:
    # the side that is empty is the one shared read-only mapping.
    assert len({id(devices.values), id(root.values), id(level.values), id(leaf.children)}) == 1
    assert not isinstance(leaf.children, dict)
    assert dict(leaf.values) == {"c1": "sub"}
    # A level spelling the key keeps the key's string.
    assert next(iter(devices.children)) is key
    assert sorted(tree.matches("devices/c1/cmd")) == [
        ("devices/c1/+", "c1", "sub"),
        ("devices/c1/cmd", "c1", "exact"),
    ]
    assert tree.remove("devices/c1/+", "c1")
    assert not isinstance(root.children, dict)
    assert tree.matches("devices/c1/cmd") == [("devices/c1/cmd", "c1", "exact")]
    tree.add("devices/c1/+", "c1", "again")
    assert tree.get("devices/c1/+", "c1") == "again"
