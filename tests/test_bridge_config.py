"""The I/O-free parts of the bridge: topic lines (mosquitto's grammar and
remapping), :class:`BridgeConfig`, the back-off, the forwarding ids, the
echo filter; and ``[[bridge]]`` tables of the broker's TOML file, bad ones
refused in one line with exit status 1."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import attrs
import pytest
from bridge_tools import bridge_config
from cli_tools import assert_one_line_error, cli

from mqttproto._bridge_state import Backoff, EchoFilter, Forwarding, PendingOut
from mqttproto.bridge import BridgeConfig, Direction, TopicRule, parse_address, parse_topic_line
from mqttproto.cli import broker_settings, build_parser
from mqttproto.codec import encode_packet
from mqttproto.enums import ProtocolVersion, QoS
from mqttproto.errors import LocalProtocolError, UnsupportedProtocolVersion
from mqttproto.events import MessageReceived
from mqttproto.packets import ConnectPacket, PublishPacket

# -- topic lines -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "rule"),
    [
        ("a/#", TopicRule("a/#", Direction.OUT, QoS.AT_MOST_ONCE)),
        ("a/+/b in", TopicRule("a/+/b", Direction.IN)),
        ("# both 2", TopicRule("#", Direction.BOTH, QoS.EXACTLY_ONCE)),
        ("t out 1 edge/ site/", TopicRule("t", Direction.OUT, QoS.AT_LEAST_ONCE, "edge/", "site/")),
        ('t in 1 "" site/', TopicRule("t", Direction.IN, QoS.AT_LEAST_ONCE, "", "site/")),
        ('"" both 0 local/x remote/y', TopicRule("", Direction.BOTH, 0, "local/x", "remote/y")),
        ("  spaced   out  ", TopicRule("spaced", Direction.OUT)),
    ],
)
def test_topic_lines_as_mosquitto_reads_them(line: str, rule: TopicRule) -> None:
    assert parse_topic_line(line) == rule
    assert parse_topic_line(rule.line()) == rule


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "empty topic line"),
        ("a/# sideways", "unknown direction 'sideways'"),
        ("a/# in 3", "QoS must be 0, 1 or 2, not '3'"),
        ("a/# in one", "QoS must be 0, 1 or 2"),
        ("a/# in 1 edge/", "a local prefix needs a remote prefix"),
        ("a/# in 1 x y z", "at most 5"),
        ("a/b# out", "not a valid topic filter"),
        ("a/+b out", "'+' must occupy a whole level"),
        ('"" out 1', "an empty pattern needs both a local and a remote prefix"),
        ('"" out 1 "" remote/', "an empty pattern needs both"),
        ("a out 1 loc/# rem/", "the local prefix 'loc/#' must not contain the wildcards"),
        ("a out 1 loc/ +/", "the remote prefix '+/' must not contain the wildcards"),
        ("# out 1 loc/ rem", "the remote topic 'rem#' is not a valid topic filter"),
    ],
)
def test_bad_topic_lines_say_what_is_wrong(line: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_topic_line(line)
    assert message in str(caught.value)


def test_remapping_trades_one_prefix_for_the_other() -> None:
    rule = parse_topic_line("sensors/# both 1 edge/ site1/")
    assert (rule.local_filter, rule.remote_filter) == ("edge/sensors/#", "site1/sensors/#")
    assert rule.to_remote("edge/sensors/a/t") == "site1/sensors/a/t"
    assert rule.to_local("site1/sensors/a/t") == "edge/sensors/a/t"
    assert rule.to_remote("sensors/a") is None  # not under the local prefix
    assert rule.to_local("edge/sensors/a") is None
    single = parse_topic_line('"" in 2 local/alarm central/alarm')
    assert single.to_local("central/alarm") == "local/alarm"
    assert single.to_remote("local/alarm") is None  # an "in" line sends nothing out
    assert parse_topic_line("# out").to_remote("$SYS/x") is None  # [MQTT-4.7.2-1]


def test_the_first_matching_line_wins() -> None:
    config = BridgeConfig("b", "h", ["a/# out 0 x/ y/", "a/b out 2 x/ z/", "c in 1"])
    from mqttproto._bridge_topics import rule_for_local, rule_for_remote

    found = rule_for_local(config.outgoing, "x/a/b")
    assert found is not None and found[1] == "y/a/b"
    assert rule_for_remote(config.incoming, "c") == (config.topics[2], "c")
    assert rule_for_remote(config.incoming, "a/b") is None


# -- BridgeConfig ----------------------------------------------------------------


def test_defaults_are_mosquittos() -> None:
    config = BridgeConfig("central", "broker.example", ["a/#"])
    assert config.addresses == (("broker.example", 1883),)
    assert config.client_id.endswith(".central")
    assert config.local_client_id == f"local.{config.client_id}"
    assert config.notification_topic == f"$SYS/broker/connection/{config.client_id}/state"
    assert (config.protocol_version, config.clean_start, config.try_private) == (4, False, True)
    assert (config.notifications, config.restart_timeout, config.keep_alive) == (True, 5.0, 60)
    assert not config.uses_tls
    assert BridgeConfig("c", "h", ["a"], cafile="ca.pem").uses_tls


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("h:1884", ("h", 1884)),
        ("10.0.0.1", ("10.0.0.1", 1883)),
        ("[::1]:8883", ("::1", 8883)),
        (" h:1 ", ("h", 1)),
    ],
)
def test_addresses(text: str, address: tuple[str, int]) -> None:
    assert parse_address(text) == address


@pytest.mark.parametrize("text", ["", ":1883", "h:0", "h:65536", "h:port", "::1", "[::1", "a b:1"])
def test_bad_addresses(text: str) -> None:
    with pytest.raises(ValueError, match="address"):
        parse_address(text)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "name ''"),
        ({"name": "a b"}, "name 'a b'"),
        ({"addresses": []}, "at least one"),
        ({"topics": []}, "needs at least one topic line"),
        ({"topics": ["a in 7"]}, "topic 'a in 7': QoS must be"),
        ({"protocol_version": 3}, "protocol_version must be 4"),
        ({"keep_alive": 70000}, "keep_alive"),
        ({"restart_timeout": 0}, "restart_timeout must be a positive number"),
        ({"restart_timeout": 10, "restart_timeout_max": 5}, "below restart_timeout"),
        ({"keyfile": "k.pem"}, "keyfile needs certfile"),
        ({"client_id": "x", "local_client_id": "x"}, "must differ"),
        ({"notification_topic": "a/#"}, "notification_topic"),
        ({"password": "p"}, "password needs username"),
    ],
)
def test_bad_bridge_configs(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"name": "b", "addresses": "h:1", "topics": ["a/#"]}
    arguments.update(kwargs)
    with pytest.raises(ValueError) as caught:
        BridgeConfig(**arguments)  # type: ignore[arg-type]
    assert message in str(caught.value)


# -- back-off, forwarding, echoes -------------------------------------------------


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff(1.0, 8.0, random.Random(7))
    delays = [backoff.next_delay() for _ in range(12)]
    assert delays[0] == 1.0
    for attempt, delay in enumerate(delays[1:], 1):
        assert 1.0 <= delay <= min(8.0, 2.0**attempt)
    assert len(set(delays[3:])) > 1  # jitter
    backoff.reset()
    assert backoff.next_delay() == 1.0


def _message(packet_id: int) -> MessageReceived:
    return MessageReceived(PublishPacket("t", b"p", QoS.AT_LEAST_ONCE, packet_id=packet_id))


def test_forwarding_passes_acknowledgements_back_by_id() -> None:
    forwarding = Forwarding()
    pending = PendingOut(7, _message(7), "t", 1)
    forwarding.sent_out(pending, 300)
    assert forwarding.holds_local(7) and len(forwarding) == 1
    assert forwarding.remote_acknowledged(999) is None
    assert forwarding.remote_acknowledged(300) == 7
    assert len(forwarding) == 0
    forwarding.sent_out(pending, 301)
    assert forwarding.remote_discarded(301) == pending  # to publish again
    forwarding.sent_in(5, 40)
    assert forwarding.local_acknowledged(5) == 40
    assert forwarding.local_acknowledged(5) is None
    forwarding.sent_out(pending, 302)
    forwarding.local_session_lost()
    assert forwarding.remote_acknowledged(302) is None


def test_echo_filter_drops_one_copy_per_message_sent_and_is_bounded() -> None:
    echoes = EchoFilter(limit=3)
    echoes.sent("a", b"1")
    echoes.sent("a", b"1")
    assert echoes.is_echo("a", b"1") and echoes.is_echo("a", b"1")
    assert not echoes.is_echo("a", b"1")
    for number in range(5):
        echoes.sent("b", str(number).encode())
    assert len(echoes) == 3
    assert not echoes.is_echo("b", b"0")  # forgotten, oldest first
    assert echoes.is_echo("b", b"4")


# -- [[bridge]] in the TOML file ----------------------------------------------------


def test_bridge_tables_are_read_with_files_relative_to_the_config(tmp_path: Path) -> None:
    path = bridge_config(
        tmp_path / "broker.toml",
        {
            "name": "central",
            "address": ["a.example:1883", "b.example:1884"],
            "topics": ["sensors/# out 1 edge/ site1/", "commands/# in 2"],
            "cafile": "certs/ca.pem",
            "keepalive_interval": 30,  # mosquitto's name
            "restart-timeout": 2,
        },
        {
            "name": "backup",
            "address": "c.example",
            "topics": ["#"],
            "protocol_version": 5,
            "restart_timeout": [1, 60],
        },
        port=1884,
    )
    settings = broker_settings(build_parser().parse_args(["broker", "--config", str(path)]))
    central, backup = settings.bridge
    assert central.addresses == (("a.example", 1883), ("b.example", 1884))
    assert central.cafile == str(tmp_path / "certs" / "ca.pem")
    assert (central.keep_alive, central.restart_timeout) == (30, 2.0)
    assert central.topics[0] == TopicRule("sensors/#", "out", 1, "edge/", "site1/")
    assert (backup.name, backup.protocol_version) == ("backup", 5)
    assert (backup.restart_timeout, backup.restart_timeout_max) == (1.0, 60.0)


@pytest.mark.parametrize(
    ("bridge", "message"),
    [
        (
            {"name": "central", "address": "h:1", "topics": ["a/# sideways 1"]},
            "bridge central: topic 'a/# sideways 1': unknown direction 'sideways'",
        ),
        (
            {"name": "central", "address": "h:1", "topics": ["a/# in 1 x/#  y/"]},
            "bridge central: topic 'a/# in 1 x/#  y/': the local prefix",
        ),
        (
            {"name": "central", "address": "h:99999", "topics": ["a"]},
            "bridge central: address 'h:99999': the port must be 1..65535",
        ),
        ({"name": "central", "topics": ["a"]}, "bridge central: address is missing"),
        ({"address": "h", "topics": ["a"]}, "bridge #1: name is missing"),
        ({"name": "c", "address": "h", "topics": "a/#"}, "bridge c: topics must be a list"),
        ({"name": "c", "address": "h", "topics": ["a"], "colour": 1}, "unknown setting 'colour'"),
        ({"name": "c", "address": "h", "topics": ["a"], "keep_alive": "x"}, "keep_alive must be"),
        (
            {"name": "c", "address": "h", "topics": ["a"], "restart_timeout": [1, 2, 3]},
            "bridge c: restart_timeout must be a number, or [first, longest] in seconds",
        ),
        (
            {"name": "c", "address": "h", "topics": ["a"], "protocol_version": 3},
            "bridge c: protocol_version must be 4",
        ),
        (
            {"name": "c", "address": "h", "topics": ["a"], "cafile": "missing.pem"},
            "bridge c: TLS:",
        ),
    ],
)
def test_bad_bridge_tables_are_one_line_and_exit_1(
    tmp_path: Path, bridge: dict[str, object], message: str
) -> None:
    path = bridge_config(tmp_path / "broker.toml", bridge, port=0)
    result = cli("broker", "--config", str(path))
    assert_one_line_error(result, 1, b"mqttproto broker: ")
    assert message.encode() in result.stderr, result.stderr


def test_two_bridges_with_one_name_are_refused(tmp_path: Path) -> None:
    table = {"name": "c", "address": "h", "topics": ["a"]}
    path = bridge_config(tmp_path / "broker.toml", table, {**table, "client_id": "x"}, port=0)
    result = cli("broker", "--config", str(path))
    assert_one_line_error(result, 1, b"mqttproto broker: ")
    assert b"bridge c: another bridge has that name" in result.stderr


def test_bridge_must_be_an_array_of_tables(tmp_path: Path) -> None:
    path = tmp_path / "broker.toml"
    path.write_text('bridge = "central"\n', encoding="utf-8")
    result = cli("broker", "--config", str(path))
    assert_one_line_error(result, 1, b"mqttproto broker: ")
    assert b"bridge must be an array of tables" in result.stderr


# -- the bridge flag on the wire ----------------------------------------------------


def test_the_bridge_flag_sets_the_top_bit_of_the_protocol_level(codec: Any) -> None:
    packet = ConnectPacket("edge", ProtocolVersion.MQTT_3_1_1, bridge=True)
    data = encode_packet(packet, version=ProtocolVersion.MQTT_3_1_1)
    assert data == bytes.fromhex("1010 0004 4d515454 84 02 003c 0004 65646765")
    plain = encode_packet(attrs.evolve(packet, bridge=False), version=ProtocolVersion.MQTT_3_1_1)
    assert plain[8] == 0x04 and plain[:8] + plain[9:] == data[:8] + data[9:]
    # Not MQTT: a server built on this library refuses it as an unknown level.
    with pytest.raises(UnsupportedProtocolVersion):
        codec.PacketReader(version=None).feed(data)
    with pytest.raises(LocalProtocolError, match="bridge flag"):
        encode_packet(
            ConnectPacket("edge", ProtocolVersion.MQTT_5_0, bridge=True),
            version=ProtocolVersion.MQTT_5_0,
        )
