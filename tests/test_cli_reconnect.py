"""``mqttproto sub`` reconnects as mosquitto_sub does when the connection to
the broker is lost, and says so on standard error; with ``-c`` the session
resumes and what the broker kept for it arrives.

The subscribers reach the broker through a :class:`cli_tools.Relay`, which
cuts their connections and refuses new ones until restored: the broker
itself stays up, as it would behind a network that failed.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest
from cli_tools import Background, Relay, at, cli, ours
from interop import HOST, MOSQUITTO_SUB, MosquittoBroker, require_peer
from test_interop_broker import ThreadedBroker

LOST = b"Error: The connection was lost. Reconnecting.\n"


@pytest.fixture(params=["mqttproto", "mosquitto"])
def broker(request: pytest.FixtureRequest) -> Iterator[Any]:
    with ThreadedBroker() if request.param == "mqttproto" else MosquittoBroker() as server:
        yield server


@pytest.fixture
def relay(broker: Any) -> Iterator[Relay]:
    relay = Relay(broker.port)
    try:
        yield relay
    finally:
        relay.close()


def through(relay: Relay) -> list[str]:
    return ["-h", HOST, "-p", str(relay.port)]


def stop_all(*subscribers: Background) -> None:
    for subscriber in subscribers:
        subscriber.kill()


@pytest.mark.parametrize("version", ["311", "5"])
def test_persistent_session_resumes_after_the_connection_is_lost(
    broker: Any, relay: Relay, version: str
) -> None:
    """Ours and mosquitto_sub, -c: the message published while they were cut
    off arrives when they are back, and so does the next one."""
    require_peer("mosquitto_sub", MOSQUITTO_SUB)
    assert cli("pub", *at(broker), "-t", "rc/ready", "-m", "r", "-r").returncode == 0
    common = [*through(relay), "-V", version, "-t", "rc/#", "-q", "1", "-c", "-v"]
    bounds = ["-C", "4", "-W", "20"]
    subscribers = [
        Background(ours("sub", *common, "-i", f"ours-{version}", *bounds)),
        Background([MOSQUITTO_SUB, *common, "-i", f"theirs-{version}", *bounds]),
    ]
    try:
        for subscriber in subscribers:
            subscriber.wait_for(b"rc/ready r\n")
        # Clear the marker, or every new subscription would print it again.
        assert cli("pub", *at(broker), "-t", "rc/ready", "-n", "-r").returncode == 0
        for subscriber in subscribers:
            subscriber.wait_for(b"rc/ready (null)\n")
        relay.cut()
        assert cli("pub", *at(broker), "-t", "rc/away", "-m", "a", "-q", "1").returncode == 0
        relay.restore()
        assert cli("pub", *at(broker), "-t", "rc/after", "-m", "b", "-q", "1").returncode == 0
        mine, theirs = (subscriber.finish() for subscriber in subscribers)
    finally:
        stop_all(*subscribers)
    expected = b"rc/ready r\nrc/ready (null)\nrc/away a\nrc/after b\n"
    assert theirs[:2] == (0, expected)
    assert mine[:2] == (0, expected)
    # mosquitto_sub reconnects without a word; we say it once.
    assert (theirs[2], mine[2]) == (b"", LOST)


def test_clean_session_reconnects_and_subscribes_again(broker: Any, relay: Relay) -> None:
    """No -c: what was published while away is gone, what comes after is printed."""
    require_peer("mosquitto_sub", MOSQUITTO_SUB)
    assert cli("pub", *at(broker), "-t", "cs/ready", "-m", "r", "-r").returncode == 0
    common = [*through(relay), "-t", "cs/#", "-v", "-W", "30"]
    subscribers = [Background(ours("sub", *common)), Background([MOSQUITTO_SUB, *common])]
    try:
        for subscriber in subscribers:
            subscriber.wait_for(b"cs/ready r\n")
        relay.cut()
        assert cli("pub", *at(broker), "-t", "cs/away", "-m", "lost").returncode == 0
        relay.restore()
        # Each new subscription prints the retained marker again: then it is back.
        for subscriber in subscribers:
            subscriber.wait_for(b"cs/ready r\n", count=2)
        assert cli("pub", *at(broker), "-t", "cs/after", "-m", "b").returncode == 0
        for subscriber in subscribers:
            subscriber.wait_for(b"cs/after b\n")
            subscriber.process.send_signal(signal.SIGINT)
        mine, theirs = (subscriber.finish() for subscriber in subscribers)
    finally:
        stop_all(*subscribers)
    expected = b"cs/ready r\ncs/ready r\ncs/after b\n"
    assert (mine[0], mine[1], mine[2]) == (0, expected, LOST)
    assert theirs[1] == expected
    assert b"lost" not in mine[1]


def test_timeout_ends_a_sub_that_cannot_reconnect(broker: Any, relay: Relay) -> None:
    """-W still ends the command while the broker stays out of reach."""
    require_peer("mosquitto_sub", MOSQUITTO_SUB)
    assert cli("pub", *at(broker), "-t", "to/ready", "-m", "r", "-r").returncode == 0
    common = [*through(relay), "-t", "to/#", "-W", "4"]
    subscribers = [Background(ours("sub", *common)), Background([MOSQUITTO_SUB, *common])]
    try:
        for subscriber in subscribers:
            subscriber.wait_for(b"r\n")
        relay.cut()
        mine, theirs = (subscriber.finish() for subscriber in subscribers)
    finally:
        stop_all(*subscribers)
    assert theirs == (27, b"r\n", b"Timed out\n")
    assert mine == (27, b"r\n", LOST + b"Timed out\n")


def test_a_broker_down_at_the_start_is_an_error(relay: Relay) -> None:
    """Only a connection that was up is tried again, as mosquitto_sub does."""
    relay.cut()
    result = cli("sub", *through(relay), "-t", "x", "-W", "5")
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        b"",
        b"Error: Connection refused\n",
    )
