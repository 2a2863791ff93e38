"""Interop: other MQTT clients against OUR broker.

Peers: paho-mqtt (Python, MQTT 3.1.1 and 5.0) and mosquitto_pub/mosquitto_sub
(Debian). A missing peer skips the test with the reason, or fails it when
``MQTTPROTO_REQUIRE_INTEROP`` is set (see ``tests/interop.py``).

Our broker runs two ways: in-process (:class:`ThreadedBroker`: the asyncio
server on its own loop in a background thread) and as a separate process
(:class:`ProcessBroker`: ``python -m mqttproto broker --port 0``, stopped with
SIGTERM through its handle). Everything listens on 127.0.0.1; every wait is
bounded.
"""

from __future__ import annotations

import asyncio
import queue
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from interop import (
    HOST,
    MOSQUITTO_PUB,
    MOSQUITTO_SUB,
    finish,
    import_paho,
    mosquitto_pub,
    require_peer,
    stop_process,
)

from mqttproto.adapters.asyncio import BrokerServer, start_server

WAIT = 10.0
ROOT = Path(__file__).resolve().parent.parent


# -- our broker, two ways -------------------------------------------------------


class ThreadedBroker:
    """Our asyncio broker server on its own event loop in a background thread."""

    def __init__(self, **server_args: Any) -> None:
        self.server_args = server_args
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="mqttproto-broker", daemon=True)
        self.server: BrokerServer | None = None
        self.host = HOST
        self.port = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def __enter__(self) -> ThreadedBroker:
        self.thread.start()
        future = asyncio.run_coroutine_threadsafe(
            start_server(HOST, 0, **self.server_args), self.loop
        )
        self.server = future.result(timeout=WAIT)
        self.port = self.server.port
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self.server is not None:
                asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(
                    timeout=WAIT
                )
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=WAIT)
            if not self.thread.is_alive():
                self.loop.close()


class ProcessBroker:
    """``python -m mqttproto broker`` on a free port, stopped by its handle."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.host = HOST
        self.port = 0
        self.process: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.returncode: int | None = None
        self.stderr = ""
        #: What the broker wrote to standard error so far; read as it comes,
        #: so that a broker logging more than a pipe holds never blocks.
        self._stderr_parts: list[str] = []

    def __enter__(self) -> ProcessBroker:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mqttproto",
                "broker",
                "--host",
                HOST,
                "--port",
                "0",
                *self.args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()
        try:
            line = self.lines.get(timeout=WAIT)
        except queue.Empty:
            line = None
        if line is None or "listening on" not in line:
            self.stop()
            pytest.fail(f"the broker did not start: {line!r}; stderr:\n{self.stderr}")
        self.port = int(line.rsplit(":", 1)[1].split()[0])
        return self

    def _read_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr_parts.append(line)

    def stop(self) -> int:
        """SIGTERM, then a bounded wait (kill if it overruns); the exit status."""
        process = self.process
        if process is None:
            return -1
        stop_process(process, WAIT)
        assert process.stderr is not None
        self._stderr_reader.join(timeout=WAIT)
        self.stderr = "".join(self._stderr_parts)
        process.stderr.close()
        self.returncode = process.returncode
        self.process = None
        return process.returncode

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@pytest.fixture
def broker() -> Iterator[ThreadedBroker]:
    with ThreadedBroker() as running:
        yield running


@pytest.fixture
def process_broker() -> Iterator[ProcessBroker]:
    with ProcessBroker("-v") as running:
        yield running


# -- paho ------------------------------------------------------------------------


class Paho:
    """A paho-mqtt 2.x client with its network loop in a thread; bounded waits."""

    def __init__(self, port: int, client_id: str, *, v5: bool, **connect_args: Any) -> None:
        paho = import_paho()
        self.paho = paho
        self.v5 = v5
        self.client = paho.Client(
            callback_api_version=paho.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            **({} if v5 else {"clean_session": connect_args.pop("clean_session", True)}),
        )
        self.port = port
        self.connect_args = connect_args
        self.messages: queue.Queue[Any] = queue.Queue()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.connect_result: Any = None
        self.session_present: bool | None = None
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda client, userdata, message: self.messages.put(message)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connect_result = reason
        self.session_present = flags.session_present
        self.connected.set()

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, reasons: Any, props: Any) -> None:
        self.subscribed.set()

    def will(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.client.will_set(topic, payload, qos=qos)

    def connect(self) -> Paho:
        self.connected.clear()
        self.client.connect(HOST, self.port, keepalive=30, **self.connect_args)
        self.client.loop_start()
        assert self.connected.wait(WAIT), "no CONNACK"
        assert not self.connect_result.is_failure, self.connect_result
        return self

    def subscribe(self, topic: str, qos: int) -> None:
        self.subscribed.clear()
        result, _ = self.client.subscribe(topic, qos=qos)
        assert result == 0
        assert self.subscribed.wait(WAIT), "no SUBACK"

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout=WAIT)
        assert info.is_published()

    def receive(self, timeout: float = WAIT) -> Any:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no message within {timeout} s")

    def nothing_more(self, wait: float = 0.3) -> bool:
        try:
            self.messages.get(timeout=wait)
        except queue.Empty:
            return True
        return False

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def kill_socket(self) -> None:
        """Vanish without DISCONNECT: stop the loop, then reset the TCP connection."""
        sock = self.client.socket()
        self.client.loop_stop()
        assert sock is not None
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


VERSIONS = [pytest.param(False, id="mqtt311"), pytest.param(True, id="mqtt5")]


@pytest.mark.parametrize("v5", VERSIONS)
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_paho_publish_subscribe(broker: ThreadedBroker, v5: bool, qos: int) -> None:
    subscriber = Paho(broker.port, f"sub-{qos}", v5=v5).connect()
    publisher = Paho(broker.port, f"pub-{qos}", v5=v5).connect()
    try:
        subscriber.subscribe("paho/+/data", qos)
        for n in range(3):
            publisher.publish(f"paho/{n}/data", f"message {n}".encode(), qos=qos)
        received = [subscriber.receive() for _ in range(3)]
        assert [m.topic for m in received] == [f"paho/{n}/data" for n in range(3)]
        assert [m.payload for m in received] == [f"message {n}".encode() for n in range(3)]
        assert {m.qos for m in received} == {qos}
        assert subscriber.nothing_more()
    finally:
        publisher.disconnect()
        subscriber.disconnect()


@pytest.mark.parametrize("v5", VERSIONS)
def test_paho_retained(broker: ThreadedBroker, v5: bool) -> None:
    publisher = Paho(broker.port, "retainer", v5=v5).connect()
    publisher.publish("status/door", b"open", qos=1, retain=True)
    publisher.disconnect()
    late = Paho(broker.port, "late", v5=v5).connect()
    try:
        late.subscribe("status/#", 1)
        message = late.receive()
        assert (message.topic, message.payload, message.retain) == ("status/door", b"open", True)
    finally:
        late.disconnect()


@pytest.mark.parametrize("v5", VERSIONS)
def test_paho_will_on_abrupt_loss(broker: ThreadedBroker, v5: bool) -> None:
    watcher = Paho(broker.port, "watcher", v5=v5).connect()
    doomed = Paho(broker.port, "doomed", v5=v5)
    doomed.will("clients/doomed/status", b"gone", qos=1)
    doomed.connect()
    try:
        watcher.subscribe("clients/+/status", 1)
        doomed.kill_socket()
        message = watcher.receive()
        assert (message.topic, message.payload) == ("clients/doomed/status", b"gone")
    finally:
        watcher.disconnect()


@pytest.mark.parametrize("v5", VERSIONS)
def test_paho_persistent_session_gets_offline_messages(broker: ThreadedBroker, v5: bool) -> None:
    if v5:
        import_paho()
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 300
        session_args: dict[str, Any] = {"clean_start": False, "properties": properties}
    else:
        session_args = {"clean_session": False}
    first = Paho(broker.port, "persistent", v5=v5, **dict(session_args)).connect()
    first.subscribe("inbox/persistent", 1)
    first.disconnect()

    publisher = Paho(broker.port, "sender", v5=v5).connect()
    publisher.publish("inbox/persistent", b"while you were away", qos=1)
    publisher.disconnect()

    again = Paho(broker.port, "persistent", v5=v5, **dict(session_args))
    again.connect()
    try:
        assert again.session_present is True
        message = again.receive()
        assert (message.topic, message.payload, message.qos) == (
            "inbox/persistent",
            b"while you were away",
            1,
        )
    finally:
        again.disconnect()


def test_paho_shared_subscription(broker: ThreadedBroker) -> None:
    members = [Paho(broker.port, f"member-{i}", v5=True).connect() for i in range(2)]
    publisher = Paho(broker.port, "producer", v5=True).connect()
    try:
        for member in members:
            member.subscribe("$share/g/jobs", 1)
        count = 20
        for n in range(count):
            publisher.publish("jobs", str(n).encode(), qos=1)
        deadline = time.monotonic() + WAIT
        got: list[list[bytes]] = [[], []]
        while sum(map(len, got)) < count and time.monotonic() < deadline:
            for index, member in enumerate(members):
                try:
                    got[index].append(member.messages.get(timeout=0.05).payload)
                except queue.Empty:
                    continue
        # Each message went to exactly one member of the group, and both
        # members got a share.
        assert sorted(got[0] + got[1], key=int) == [str(n).encode() for n in range(count)]
        assert got[0] and got[1]
        assert all(member.nothing_more(0.2) for member in members)
    finally:
        publisher.disconnect()
        for member in members:
            member.disconnect()


def test_paho_v5_and_v311_clients_talk_to_each_other(broker: ThreadedBroker) -> None:
    v311 = Paho(broker.port, "old", v5=False).connect()
    v5 = Paho(broker.port, "new", v5=True).connect()
    try:
        v311.subscribe("mixed", 1)
        v5.subscribe("mixed", 1)
        v5.publish("mixed", b"from five", qos=1)
        assert v311.receive().payload == b"from five"
        assert v5.receive().payload == b"from five"
    finally:
        v311.disconnect()
        v5.disconnect()


# -- mosquitto_pub / mosquitto_sub ----------------------------------------------------


STDBUF = shutil.which("stdbuf") or "/usr/bin/stdbuf"


class MosquittoSub:
    """``mosquitto_sub -d``: its output read by a thread, so waits can be bounded.

    It runs under ``stdbuf -oL`` (coreutils): into a pipe, its stdio would
    otherwise hold the debug lines (``received SUBACK``) until it exits.
    """

    FORMAT = "MSG %t|%q|%r|%p"

    def __init__(
        self, port: int, topic: str, *args: str, count: int = 1, wait: float = WAIT
    ) -> None:
        require_peer("mosquitto_sub", MOSQUITTO_SUB)
        require_peer("stdbuf", STDBUF)
        self.process = subprocess.Popen(
            [
                *(STDBUF, "-oL"),
                MOSQUITTO_SUB,
                *("-h", HOST, "-p", str(port), "-t", topic, "-d"),
                *("-C", str(count), "-W", str(int(wait))),
                *("-F", self.FORMAT),
                *args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.output.append(line)
            if text in line:
                return
        self.stop()
        pytest.fail(f"mosquitto_sub never printed {text!r}; output:\n" + "\n".join(self.output))

    def messages(self) -> list[tuple[str, int, bool, str]]:
        """Wait (bounded) for it to exit; the messages it printed."""
        self.stop(wait=True)
        while True:
            try:
                line = self.lines.get(timeout=WAIT)
            except queue.Empty:
                break
            if line is None:
                break
            self.output.append(line)
        result = []
        for line in self.output:
            if line.startswith("MSG "):
                topic, qos, retain, payload = line[4:].split("|", 3)
                result.append((topic, int(qos), retain == "1", payload))
        return result

    def stop(self, wait: bool = False) -> None:
        process = self.process
        if wait:
            try:
                process.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                process.kill()
        if process.poll() is None:
            process.kill()
        process.wait(timeout=WAIT)


MOSQUITTO_VERSIONS = [pytest.param("mqttv311", id="mqtt311"), pytest.param("mqttv5", id="mqtt5")]


@pytest.mark.parametrize("version", MOSQUITTO_VERSIONS)
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_mosquitto_clients_publish_subscribe(
    broker: ThreadedBroker, version: str, qos: int
) -> None:
    sub = MosquittoSub(broker.port, "cli/#", "-V", version, "-q", str(qos), count=2)
    sub.wait_for("received SUBACK")
    for n in range(2):
        done = mosquitto_pub(
            HOST, broker.port, f"cli/{n}", f"hello {n}", "-V", version, "-q", str(qos)
        )
        assert done.returncode == 0, done.stderr
    assert sub.messages() == [(f"cli/{n}", qos, False, f"hello {n}") for n in range(2)]


@pytest.mark.parametrize("version", MOSQUITTO_VERSIONS)
def test_mosquitto_clients_retained(broker: ThreadedBroker, version: str) -> None:
    done = mosquitto_pub(HOST, broker.port, "kept", "remember me", "-V", version, "-q", "1", "-r")
    assert done.returncode == 0, done.stderr
    sub = MosquittoSub(broker.port, "kept", "-V", version, "-q", "1")
    assert sub.messages() == [("kept", 1, True, "remember me")]
    # An empty retained message clears it.
    done = mosquitto_pub(HOST, broker.port, "kept", "", "-V", version, "-r")
    assert done.returncode == 0, done.stderr
    sub = MosquittoSub(broker.port, "kept", "-V", version, wait=1)
    assert sub.messages() == []


def test_mosquitto_clients_persistent_session(broker: ThreadedBroker) -> None:
    # -c: clean session off; -i: a fixed client id; -E: exit once subscribed.
    sub = MosquittoSub(broker.port, "offline/q", "-c", "-i", "keeper", "-q", "1", "-E")
    sub.messages()
    done = mosquitto_pub(HOST, broker.port, "offline/q", "queued", "-q", "1")
    assert done.returncode == 0, done.stderr
    sub = MosquittoSub(broker.port, "offline/q", "-c", "-i", "keeper", "-q", "1")
    assert sub.messages() == [("offline/q", 1, False, "queued")]


def test_mosquitto_and_paho_through_a_broker_process(process_broker: ProcessBroker) -> None:
    """Our broker as a separate process (``python -m mqttproto broker``)."""
    require_peer("mosquitto_pub", MOSQUITTO_PUB)
    subscriber = Paho(process_broker.port, "proc-sub", v5=True).connect()
    try:
        subscriber.subscribe("proc/test", 2)
        done = mosquitto_pub(HOST, process_broker.port, "proc/test", "via a process", "-q", "2")
        assert done.returncode == 0, done.stderr
        message = subscriber.receive()
        assert (message.topic, message.payload, message.qos) == ("proc/test", b"via a process", 2)
    finally:
        subscriber.disconnect()
    sub = MosquittoSub(process_broker.port, "proc/#", "-V", "mqttv5")
    sub.wait_for("received SUBACK")
    done = mosquitto_pub(HOST, process_broker.port, "proc/x", "second", "-V", "mqttv311")
    assert done.returncode == 0, done.stderr
    assert sub.messages() == [("proc/x", 0, False, "second")]


def test_broker_process_exits_cleanly_on_sigterm_and_disconnects_v5_clients() -> None:
    with ProcessBroker("-v") as process:
        client = Paho(process.port, "bystander", v5=True)
        reasons: queue.Queue[Any] = queue.Queue()
        client.client.on_disconnect = lambda c, u, flags, reason, props: reasons.put(reason)
        client.connect()
        try:
            assert process.stop() == 0
            reason = reasons.get(timeout=WAIT)
            assert reason.value == 0x8B, reason  # Server shutting down
        finally:
            client.client.loop_stop()
    assert process.returncode == 0
    assert "opened from 127.0.0.1" in process.stderr


def test_mosquitto_sub_finish_helper_is_bounded(broker: ThreadedBroker) -> None:
    """The shared helpers work against our broker too (``-W`` bounds the wait)."""
    from interop import start_mosquitto_sub

    sub = start_mosquitto_sub(HOST, broker.port, "never", count=1, wait=1)
    returncode, stdout, _ = finish(sub, timeout=WAIT)
    assert stdout == ""
    assert returncode in (0, 27)  # 27: mosquitto_sub's "timed out" status
