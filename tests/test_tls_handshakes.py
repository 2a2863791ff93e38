"""TLS handshakes under bounds, on the asyncio, trio and threads servers alike.

A connection to a TLS listener has ``tls_handshake_timeout`` seconds to
finish its handshake; it counts toward the broker's ``max_connections``
from the accept, and takes one of ``max_tls_handshakes`` slots once its
ClientHello has arrived. Past a bound it is closed at once, having received
nothing; refusals, timeouts and failures are counted in
``server.tls_handshakes`` and logged once per burst. Each server runs in
this process (asyncio and trio on a helper thread); the peers are raw
sockets and Python's ``ssl``. The ``--tls-handshake-timeout`` and
``--max-tls-handshakes`` settings of ``mqttproto broker`` are checked here
too; ``tests/test_tls_flood.py`` floods a broker process.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from interop import import_paho
from tls_peers import (
    CONNACK_ACCEPTED,
    CONNECT,
    HOST,
    WAIT,
    Pki,
    is_open,
    mqtt_over_tls,
    silent,
    wait_closed,
)

from mqttproto import BrokerConfig
from mqttproto.adapters import asyncio as asyncio_adapter
from mqttproto.adapters import threads as threads_adapter
from mqttproto.adapters import trio as trio_adapter
from mqttproto.adapters.threads import Listener
from mqttproto.cli import broker_settings, build_parser, main

KINDS = ["asyncio", "trio", "threads"]
LOGGER = "mqttproto.broker"


class Served:
    """A server of one kind on a helper thread (threads: its own I/O thread)."""

    def __init__(self, kind: str, **args: Any) -> None:
        self.kind = kind
        self.args = args
        self.server: Any = None
        self._stop: Callable[[], None] | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def __enter__(self) -> Any:
        if self.kind == "threads":
            self.server = threads_adapter.BrokerServer(**self.args)
            self.server.start()
            return self.server
        target = self._run_trio if self.kind == "trio" else self._run_asyncio
        self._thread = threading.Thread(target=target, daemon=True)
        self._thread.start()
        assert self._ready.wait(WAIT), f"the {self.kind} server did not start"
        if self._error is not None:
            raise self._error
        return self.server

    def _run_trio(self) -> None:
        async def main() -> None:
            token = trio.lowlevel.current_trio_token()
            with trio.fail_after(120):
                async with trio.open_nursery() as nursery:
                    server = await nursery.start(partial(trio_adapter.serve, **self.args))
                    self.server = server
                    self._stop = lambda: trio.from_thread.run(server.close, trio_token=token)
                    self._ready.set()

        self._guarded(lambda: trio.run(main))

    def _run_asyncio(self) -> None:
        async def main() -> None:
            loop = asyncio.get_running_loop()
            stopped = asyncio.Event()
            async with asyncio_adapter.BrokerServer(**self.args) as server:
                self.server = server

                def stop() -> None:
                    asyncio.run_coroutine_threadsafe(server.close(), loop).result(WAIT)
                    loop.call_soon_threadsafe(stopped.set)

                self._stop = stop
                self._ready.set()
                await asyncio.wait_for(stopped.wait(), 120)

        self._guarded(lambda: asyncio.run(main()))

    def _guarded(self, run: Callable[[], object]) -> None:
        try:
            run()
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    def __exit__(self, *exc_info: object) -> None:
        if self.kind == "threads":
            self.server.close()
            return
        assert self._stop is not None and self._thread is not None
        self._stop()
        self._thread.join(WAIT)
        assert not self._thread.is_alive()
        assert self._error is None, self._error


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


def until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.01)


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and text in r.getMessage()]


# -- the handshake timeout -------------------------------------------------------------


def test_handshakes_not_done_in_time_are_closed_and_logged_once(
    kind: str, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """A silent connection, half a ClientHello and a whole one that never
    finishes are all closed after ``tls_handshake_timeout``; the three
    timeouts make one log line and a count, and the server still serves."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    hello = pki.client_hello()
    listener = Listener(port=0, ssl=pki.server)
    with Served(kind, listeners=[listener], tls_handshake_timeout=0.5) as server:
        port = server.port
        socks = [silent(port), silent(port, hello[:40]), silent(port, hello)]
        try:
            for sock in socks:
                elapsed, _ = wait_closed(sock)
                assert elapsed < 5.0
            until(lambda: server.tls_handshakes.timed_out == 3, "three timeouts counted")
            stats = server.tls_handshakes
            assert (stats.waiting, stats.handshaking, stats.completed) == (0, 0, 0)
            assert mqtt_over_tls(port, pki.client) == CONNACK_ACCEPTED
            assert server.tls_handshakes.completed == 1
        finally:
            for sock in socks:
                sock.close()
        assert len(messages(caplog, "TLS handshake timed out after 0.5 s")) == 1
    # Closing the server writes what the burst left out.
    assert messages(caplog, "2 more TLS handshakes timed out, not logged one by one")


def test_plain_mqtt_on_a_tls_listener_fails_at_once(
    kind: str, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    listener = Listener(port=0, ssl=pki.server)
    with Served(kind, listeners=[listener], tls_handshake_timeout=30.0) as server:
        with silent(server.port, bytes.fromhex("100f00044d5154540402003c0003726177")) as sock:
            elapsed, received = wait_closed(sock)
        assert received == b"" and elapsed < 5.0
        until(lambda: server.tls_handshakes.failed == 1, "the failure counted")
        assert server.tls_handshakes.pending == 0
    assert messages(caplog, "TLS handshake failed: not a TLS handshake")


# -- the bounds --------------------------------------------------------------------------


def test_pending_handshakes_count_toward_max_connections(kind: str, pki: Pki) -> None:
    """One MQTT connection and two silent TLS connections fill
    ``max_connections=3``: the next TLS connection is closed before it gets
    a byte of TLS, until a silent one leaves."""
    tcp, tls = Listener(port=0), Listener(port=0, ssl=pki.server)
    config = BrokerConfig(max_connections=3)
    hello = pki.client_hello()
    with Served(kind, listeners=[tcp, tls], config=config, tls_handshake_timeout=30.0) as server:
        plain = silent(server.port_of(tcp), bytes.fromhex("100f00044d5154540402003c0003726177"))
        waiting = [silent(server.port_of(tls)), silent(server.port_of(tls), hello[:40])]
        try:
            assert plain.recv(4) == CONNACK_ACCEPTED
            until(lambda: server.tls_handshakes.waiting == 2, "two waiting")
            assert server.broker.connection_count == 1
            with silent(server.port_of(tls), hello) as refused:
                elapsed, received = wait_closed(refused)
            assert received == b"" and elapsed < 5.0
            assert server.tls_handshakes.refused == 1
            assert all(is_open(sock) for sock in waiting)
            waiting.pop().close()
            until(lambda: server.tls_handshakes.waiting == 1, "one left")
            assert mqtt_over_tls(server.port_of(tls), pki.client) == CONNACK_ACCEPTED
            stats = server.tls_handshakes
            assert (stats.completed, stats.refused, stats.failed) == (1, 1, 1)
        finally:
            plain.close()
            for sock in waiting:
                sock.close()


def test_handshakes_past_max_tls_handshakes_are_refused_and_logged_once(
    kind: str, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """Two ClientHellos take the two handshake slots; twenty more are closed
    at once with one log line. Silent connections take no slot, and a
    client is served again once a slot is free."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    hello = pki.client_hello()
    listener = Listener(port=0, ssl=pki.server)
    args = {"listeners": [listener], "max_tls_handshakes": 2, "tls_handshake_timeout": 30.0}
    with Served(kind, **args) as server:
        port = server.port
        idle = [silent(port), silent(port, hello[:40]), silent(port, hello[:5])]
        slots = [silent(port, hello), silent(port, hello)]
        try:
            until(lambda: server.tls_handshakes.handshaking == 2, "two handshaking")
            until(lambda: server.tls_handshakes.waiting == 3, "three waiting")
            # The server answered the two ClientHellos (a ServerHello...).
            for sock in slots:
                sock.settimeout(WAIT)
                assert sock.recv(5)[:1] == b"\x16"
            for _ in range(20):
                with silent(port, hello) as refused:
                    elapsed, received = wait_closed(refused)
                assert received == b"" and elapsed < 5.0
            assert server.tls_handshakes.refused == 20
            assert len(messages(caplog, "closed before its handshake")) == 1
            assert messages(caplog, "2 TLS handshakes under way (max_tls_handshakes)")
            assert mqtt_over_tls(port, pki.client) == b""
            slots.pop().close()
            until(lambda: server.tls_handshakes.handshaking == 1, "a slot free")
            assert mqtt_over_tls(port, pki.client) == CONNACK_ACCEPTED
            assert all(is_open(sock) for sock in idle)
        finally:
            for sock in idle + slots:
                sock.close()
    assert messages(caplog, "20 more TLS connections closed before their handshake")


def test_bounds_must_be_positive() -> None:
    for bad in ({"tls_handshake_timeout": 0.0}, {"max_tls_handshakes": 0}):
        with pytest.raises(ValueError, match="must be positive"):
            threads_adapter.BrokerServer(port=0, **bad)


# -- established connections over the TLS layer --------------------------------------


def test_paho_over_websocket_over_tls(kind: str, pki: Pki) -> None:
    """``wss``: the TLS layer under the WebSocket one, a large message included."""
    paho = import_paho()
    listener = Listener(transport="websocket", port=0, ssl=pki.server)
    with Served(kind, listeners=[listener]) as server:
        received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        subscribed: queue.Queue[int] = queue.Queue()
        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id="paho-wss", transport="websockets"
        )
        client.tls_set_context(pki.client)
        client.ws_set_options(path="/mqtt")
        client.on_message = lambda c, u, m: received.put((m.topic, m.payload))
        client.on_subscribe = lambda c, u, mid, codes, props: subscribed.put(mid)
        client.connect(HOST, server.port_of(listener), keepalive=30)
        client.loop_start()
        try:
            client.subscribe("wss/#", qos=1)
            subscribed.get(timeout=WAIT)
            client.publish("wss/big", b"x" * 300_000, qos=1).wait_for_publish(timeout=WAIT)
            assert received.get(timeout=WAIT) == ("wss/big", b"x" * 300_000)
        finally:
            client.disconnect()
            client.loop_stop()
        assert server.tls_handshakes.completed == 1


def test_tls_over_a_unix_socket(kind: str, pki: Pki, tmp_path: Path) -> None:
    """A Unix socket listener with TLS (where the threads server starts the
    handshake at the accept: poll() ignores SO_RCVLOWAT there)."""
    path = str(tmp_path / "mqtt.sock")
    listener = Listener(transport="unix", path=path, ssl=pki.server)
    with Served(kind, listeners=[listener], tls_handshake_timeout=0.5) as server:
        for _ in range(2):
            with (
                socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw,
                pki.client.wrap_socket(
                    raw, server_hostname=HOST, do_handshake_on_connect=False
                ) as tls,
            ):
                tls.settimeout(WAIT)
                tls.connect(path)
                tls.do_handshake()
                tls.sendall(CONNECT)
                assert tls.recv(4) == CONNACK_ACCEPTED
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle:
            idle.connect(path)
            elapsed, _ = wait_closed(idle)
        assert elapsed < 5.0
        until(lambda: server.tls_handshakes.timed_out == 1, "the timeout counted")
        assert server.tls_handshakes.completed == 2


# -- mqttproto broker ---------------------------------------------------------------------


def settings(*argv: str) -> argparse.Namespace:
    return broker_settings(build_parser().parse_args(["broker", *argv]))


def test_cli_flags_and_config_keys(tmp_path: Path) -> None:
    assert (settings().tls_handshake_timeout, settings().max_tls_handshakes) == (None, None)
    flags = settings("--tls-handshake-timeout", "2.5", "--max-tls-handshakes", "64")
    assert (flags.tls_handshake_timeout, flags.max_tls_handshakes) == (2.5, 64)
    config = tmp_path / "broker.toml"
    config.write_text("tls-handshake-timeout = 3\nmax_tls_handshakes = 16\n", encoding="utf-8")
    from_file = settings("--config", str(config))
    assert (from_file.tls_handshake_timeout, from_file.max_tls_handshakes) == (3.0, 16)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("max-tls-handshakes = 0", "max_tls_handshakes must be positive"),
        ("tls-handshake-timeout = -1", "tls_handshake_timeout must be positive"),
        ('max-tls-handshakes = "many"', "max-tls-handshakes must be an integer"),
    ],
)
def test_cli_refuses_bad_bounds(
    tmp_path: Path, line: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "broker.toml"
    config.write_text(line + "\n", encoding="utf-8")
    assert main(["broker", "--port", "0", "--config", str(config)]) == 1
    assert message in capsys.readouterr().err


def test_a_client_leaving_without_close_notify_is_no_server_error(
    kind: str, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """Many TLS clients just close the TCP connection: that is a lost
    connection (its will is published), not an error of the server."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    listener = Listener(port=0, ssl=pki.server)
    with Served(kind, listeners=[listener]) as server:
        assert mqtt_over_tls(server.port, pki.client) == CONNACK_ACCEPTED
        until(lambda: server.connection_count == 0, "the connection gone")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert len(messages(caplog, "closed: ")) == 1
