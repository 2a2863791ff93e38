"""``mqttproto pub``, ``sub`` and ``rr`` as subprocesses, against our broker and
mosquitto, compared byte for byte with mosquitto_sub / mosquitto_rr.

Every process is started without a shell, bounded by a timeout (``-W`` and
``-C`` on the subscribers too) and, if still running, killed by its handle.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from certs import make_pki
from cli_tools import MOSQUITTO_RR, TIMEOUT, Background, at, cli, mosquitto, ours
from interop import (
    HOST,
    MOSQUITTO_PUB,
    MOSQUITTO_SUB,
    MosquittoBroker,
    free_port,
    import_paho,
    require_peer,
)
from test_interop_broker import ThreadedBroker

from mqttproto.adapters.asyncio import Listener, server_ssl_context
from mqttproto.auth import AclAuthorizer, AclFile, PasswordAuthenticator, PasswordFile


@pytest.fixture(params=["mqttproto", "mosquitto"])
def any_broker(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Our broker (in-process) or a mosquitto process."""
    if request.param == "mqttproto":
        with ThreadedBroker() as broker:
            yield broker
    else:
        with MosquittoBroker() as broker:
            yield broker


# -- output compared with mosquitto_sub ------------------------------------------------


@pytest.mark.parametrize(
    "flags",
    [
        [],
        ["-v"],
        ["-N"],
        ["-v", "-N"],
        ["-V", "5", "-v"],
        ["-V", "31", "-q", "1"],
        ["-R", "-W", "1"],
        ["-C", "1", "-v"],
    ],
    ids=lambda flags: " ".join(flags) or "default",
)
def test_retained_messages_print_as_mosquitto_sub(any_broker: Any, flags: list[str]) -> None:
    for topic, payload in (("r/a", "retained one"), ("r/b/c", "two words"), ("r/d", "x")):
        assert cli("pub", *at(any_broker), "-t", topic, "-m", payload, "-r").returncode == 0
    bounded = [] if "-C" in flags or "-W" in flags else ["-C", "3", "-W", "5"]
    args = [*at(any_broker), "-t", "r/#", *bounded, *flags]
    mine, theirs = cli("sub", *args), mosquitto(MOSQUITTO_SUB, *args)
    assert (mine.returncode, mine.stdout, mine.stderr) == (
        theirs.returncode,
        theirs.stdout,
        theirs.stderr,
    )
    if "-R" in flags:
        assert (mine.returncode, mine.stderr) == (27, b"Timed out\n")
    else:
        assert mine.returncode == 0 and mine.stdout


@pytest.mark.parametrize("flags", [["-v"], [], ["-N", "-v"]], ids=["-v", "default", "-N -v"])
def test_live_messages_from_every_pub_mode_print_as_mosquitto_sub(
    any_broker: Any, flags: list[str], tmp_path: Path
) -> None:
    """Two subscribers, ours and mosquitto_sub, see the same messages from
    ``mqttproto pub`` -m, -n, -f, -s and -l (empty lines, binary bytes)."""
    # A retained marker: a subscriber that printed it is subscribed.
    assert cli("pub", *at(any_broker), "-t", "live/ready", "-m", "ready", "-r").returncode == 0
    args = [*at(any_broker), "-t", "live/#", "-C", "8", "-W", "15", "-q", "2", *flags]
    subscribers = [Background(ours("sub", *args)), Background([MOSQUITTO_SUB, *args])]
    require_peer("mosquitto_sub", MOSQUITTO_SUB)
    try:
        for subscriber in subscribers:
            subscriber.wait_for(b"ready")
        payload_file = tmp_path / "payload.bin"
        payload_file.write_bytes(b"\x00\x01binary\xff")
        publishes = [
            (["-t", "live/m", "-m", "hello world", "-q", "1"], None),
            (["-t", "live/n", "-n"], None),
            (["-t", "live/f", "-f", str(payload_file), "-q", "2"], None),
            (["-t", "live/s", "-s"], b"from stdin\nsecond line"),
            (["-t", "live/l", "-l", "-q", "1"], b"one\n\nthree"),
        ]
        for publish, stdin in publishes:
            result = cli("pub", *at(any_broker), *publish, input=stdin)
            assert result.returncode == 0, result.stderr
        mine, theirs = (subscriber.finish() for subscriber in subscribers)
    finally:
        for subscriber in subscribers:
            if subscriber.process.poll() is None:
                subscriber.process.kill()
                subscriber.process.wait(timeout=5)
    assert mine == theirs
    assert mine[0] == 0
    if flags == ["-v"]:
        assert mine[1] == (
            b"live/ready ready\nlive/m hello world\nlive/n (null)\n"
            b"live/f \x00\x01binary\xff\nlive/s from stdin\nsecond line\n"
            b"live/l one\nlive/l (null)\nlive/l three\n"
        )


def test_v5_properties_from_d_reach_mosquitto_sub(any_broker: Any) -> None:
    args = [*at(any_broker), "-V", "5", "-t", "p/x", "-C", "1", "-W", "10"]
    subscriber = Background([MOSQUITTO_SUB, *args, "-F", "%t|%p|%C|%E|%P|%R|%D"])
    require_peer("mosquitto_sub", MOSQUITTO_SUB)
    try:
        # Until the subscription is in place, the publishes go nowhere.
        for _ in range(50):
            result = cli(
                "pub",
                *at(any_broker),
                *("-V", "5", "-t", "p/x", "-m", "hey", "-q", "1"),
                *("-D", "publish", "user-property", "k", "v"),
                *("-D", "publish", "user-property", "k", "v2"),
                *("-D", "publish", "message-expiry-interval", "60"),
                *("-D", "publish", "content-type", "text/plain"),
                *("-D", "publish", "response-topic", "answers"),
                *("-D", "publish", "correlation-data", "c-1"),
                *("-D", "connect", "session-expiry-interval", "0"),
            )
            assert result.returncode == 0, result.stderr
            if subscriber.process.poll() is not None:
                break
            try:
                subscriber.wait_for(b"\n")
                break
            except (AssertionError, queue.Empty):
                continue
        status, output, _ = subscriber.finish()
    finally:
        if subscriber.process.poll() is None:
            subscriber.process.kill()
            subscriber.process.wait(timeout=5)
    assert status == 0
    assert output.splitlines()[0] == b"p/x|hey|text/plain|60|k:v k:v2|answers|c-1"


def test_rr_prints_the_response_as_mosquitto_rr(any_broker: Any) -> None:
    """A paho responder answers on the Response Topic; ours and mosquitto_rr print alike."""
    paho = import_paho()
    require_peer("mosquitto_rr", MOSQUITTO_RR)
    responder = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id="responder", protocol=paho.MQTTv5
    )
    ready: queue.Queue[int] = queue.Queue()

    def answer(client: Any, userdata: Any, message: Any) -> None:
        topic = getattr(message.properties, "ResponseTopic", None)
        if topic:
            client.publish(topic, b"answer to " + message.payload)

    responder.on_message = answer
    responder.on_subscribe = lambda c, u, mid, codes, props: ready.put(mid)
    responder.connect(HOST, any_broker.port, keepalive=30)
    responder.loop_start()
    try:
        responder.subscribe("service/req")
        ready.get(timeout=10)
        for flags in (["-v"], []):
            args = [*at(any_broker), "-t", "service/req", "-e", "service/resp", "-W", "10"]
            mine = cli("rr", *args, "-m", "question", *flags)
            theirs = mosquitto(MOSQUITTO_RR, *args, "-m", "question", *flags)
            assert (mine.returncode, mine.stdout) == (theirs.returncode, theirs.stdout)
            assert mine.returncode == 0
        assert mine.stdout == b"answer to question\n"
        # Nobody answers on another topic: "Timed out", status 27.
        args = [*at(any_broker), "-t", "nobody", "-e", "service/resp2", "-m", "q", "-W", "1"]
        mine, theirs = cli("rr", *args), mosquitto(MOSQUITTO_RR, *args)
        assert (
            (mine.returncode, mine.stderr)
            == (theirs.returncode, theirs.stderr)
            == (
                27,
                b"Timed out\n",
            )
        )
        missing = cli("rr", *at(any_broker), "-t", "x", "-m", "q")
        assert missing.returncode == 1
        assert missing.stderr == (
            b"Error: All of topic, message, and response topic must be supplied.\n"
        )
    finally:
        responder.disconnect()
        responder.loop_stop()


# -- errors -------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["311", "5", "31"])
def test_refused_connection_status_and_message_as_mosquitto(version: str) -> None:
    with MosquittoBroker(allow_anonymous=False) as broker:
        for tool, mqttproto_command in ((MOSQUITTO_SUB, "sub"), (MOSQUITTO_PUB, "pub")):
            args = [*at(broker), "-V", version, "-t", "x"]
            extra = ["-m", "y"] if mqttproto_command == "pub" else ["-W", "5"]
            mine = cli(mqttproto_command, *args, *extra)
            theirs = mosquitto(tool, *args, *extra)
            assert mine.returncode == theirs.returncode
            # mosquitto_pub adds a second line; the first is the same.
            first_line = theirs.stderr.splitlines()[0] + b"\n"
            assert mine.stderr == first_line
    assert mine.returncode == (135 if version == "5" else 5)


def test_refused_by_our_broker() -> None:
    nobody = PasswordAuthenticator(PasswordFile(), allow_anonymous=False)
    with ThreadedBroker(authenticator=nobody) as broker:
        v5 = cli("pub", *at(broker), "-V", "5", "-t", "x", "-m", "y")
        assert (v5.returncode, v5.stderr) == (135, b"Connection error: Not authorized\n")
        v311 = cli("sub", *at(broker), "-t", "x", "-u", "alice", "-P", "wrong")
        assert (v311.returncode, v311.stderr) == (
            4,
            b"Connection error: Connection Refused: bad user name or password.\n",
        )


def test_unreachable_host_and_refused_port_are_one_line() -> None:
    port = free_port()
    extra = {"pub": ["-m", "y"], "sub": [], "rr": ["-m", "y", "-e", "r"]}
    for command, more in extra.items():
        result = cli(command, "-h", HOST, "-p", str(port), "-t", "x", *more)
        assert (result.returncode, result.stdout, result.stderr) == (
            1,
            b"",
            b"Error: Connection refused\n",
        )
    theirs = mosquitto(MOSQUITTO_SUB, "-h", HOST, "-p", str(port), "-t", "x")
    assert theirs.stderr == b"Error: Connection refused\n"
    lookup = cli("pub", "-h", "no-such-host.invalid", "-t", "x", "-m", "y")
    assert lookup.returncode == 1
    assert lookup.stderr.startswith(b"Error: Unable to connect to no-such-host.invalid:1883")
    assert lookup.stderr.count(b"\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pub", "-Z"], b"mqttproto pub: error: unrecognized arguments: -Z"),
        (["sub", "-q", "3", "-t", "x"], b"QoS must be 0, 1 or 2"),
        (["pub", "-V", "4", "-t", "x", "-m", "y"], b"unknown protocol version '4'"),
        (["pub", "-t", "x"], b"Error: Both topic and message must be supplied."),
        (["pub", "-t", "x", "-m", "y", "-n"], b"Error: Only one type of message"),
        (["sub"], b"Error: You must specify a topic to subscribe to."),
        (["pub", "-t", "x", "-m", "y", "-D", "publish", "user-property", "k", "v"], b"need MQTT 5"),
        (["pub", "-V", "5", "-t", "x", "-m", "y", "-D", "publish", "colour", "red"], b"Invalid"),
        (["pub", "-L", "http://h/t", "-m", "y"], b"Unsupported URL scheme"),
        (["pub", "-t", "x", "-m", "y", "--cafile", "/nonexistent/ca.pem"], b"TLS"),
    ],
)
def test_bad_flags_are_one_line_and_status_1(argv: list[str], message: bytes) -> None:
    result = cli(*argv)
    assert result.returncode == 1
    assert message in result.stderr
    assert result.stderr.count(b"\n") == 1, result.stderr
    assert b"Traceback" not in result.stderr


# -- transports, URLs, wills, signals ---------------------------------------------------


def test_url_tls_client_certificate_websocket_and_unix(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    context = server_ssl_context(
        str(pki.server_cert), str(pki.server_key), cafile=str(pki.ca), require_certificate=True
    )
    unix = str(tmp_path / "mqtt.sock")
    listeners = [
        Listener(port=0),
        Listener(port=0, ssl=context, use_identity_as_username=True),
        Listener(transport="websocket", port=0),
        Listener(transport="unix", path=unix),
    ]
    acl = AclFile.parse("topic read #\ntopic write open/#\nuser device-7\ntopic write #\n")
    with ThreadedBroker(listeners=listeners, authorizer=AclAuthorizer(acl)) as broker:
        server = broker.server
        assert server is not None
        tls_port, ws_port = server.port_of(1), server.port_of(2)
        sub = Background(
            ours("sub", "--ws", "-h", HOST, "-p", str(ws_port), "-t", "#", "-v", "-C", "4")
        )
        try:
            for _ in range(50):
                cli("pub", "--unix", unix, "-t", "open/ready", "-m", "ready", "-r")
                try:
                    sub.wait_for(b"open/ready ready\n")
                    break
                except (AssertionError, queue.Empty):
                    continue
            tls = ["-h", HOST, "-p", str(tls_port), "--cafile", str(pki.ca)]
            identity = ["--cert", str(pki.client_cert), "--key", str(pki.client_key)]
            assert (
                cli("pub", *tls, *identity, "-t", "dev/7", "-m", "tls", "-q", "1").returncode == 0
            )
            url = f"mqtt://{HOST}:{server.port_of(0)}/open/url"
            assert cli("pub", "-L", url, "-m", "via url").returncode == 0
            assert cli("pub", "--unix", unix, "-t", "open/unix", "-m", "unix").returncode == 0
            status, output, stderr = sub.finish()
        finally:
            if sub.process.poll() is None:
                sub.process.kill()
                sub.process.wait(timeout=5)
        assert status == 0, stderr
        assert output == (b"open/ready ready\ndev/7 tls\nopen/url via url\nopen/unix unix\n")
        # No client certificate: the TLS handshake fails; one line, status 8
        # (MOSQ_ERR_TLS, as mosquitto_pub). With TLS 1.3 the client learns it
        # only when the server hangs up, so the line suggests --cert/--key.
        refused = cli("pub", *tls, "-t", "dev/7", "-m", "no")
        assert refused.returncode == 8
        assert refused.stderr.startswith(b"Error: A TLS error occurred connecting to 127.0.0.1:")
        assert b"--cert/--key" in refused.stderr
        assert refused.stderr.count(b"\n") == 1
        # A server certificate nobody vouches for (an empty CA directory).
        empty = tmp_path / "no-cas"
        empty.mkdir()
        untrusted = cli(
            "pub", "-h", HOST, "-p", str(tls_port), "--capath", str(empty), "-t", "x", "-m", "y"
        )
        assert untrusted.returncode == 8
        assert untrusted.stderr.startswith(
            b"Error: A TLS error occurred connecting to 127.0.0.1:%d: the server's certificate "
            b"was not accepted (" % tls_port
        )
        assert untrusted.stderr.count(b"\n") == 1


def test_will_is_published_when_sub_dies_and_sigint_exits_0() -> None:
    with MosquittoBroker() as broker:
        watcher = Background([MOSQUITTO_SUB, *at(broker), "-t", "wills/#", "-v", "-C", "1"])
        require_peer("mosquitto_sub", MOSQUITTO_SUB)
        dying = Background(
            ours(
                "sub",
                *at(broker),
                *("-t", "nothing", "-k", "5", "--will-topic", "wills/dying"),
                *("--will-payload", "gone", "--will-qos", "1"),
            )
        )
        calm = Background(ours("sub", *at(broker), "-t", "nothing"))
        try:
            # Connected once the broker logs both; then kill one, interrupt the other.
            for _ in range(200):
                log = broker.log()
                if log.count("New client connected") >= 3:
                    break
                threading.Event().wait(0.05)
            dying.process.kill()
            calm.process.send_signal(signal.SIGINT)
            status, output, _ = watcher.finish()
            assert (status, output) == (0, b"wills/dying gone\n")
            assert calm.finish()[0] == 0
        finally:
            for process in (watcher.process, dying.process, calm.process):
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=5)
            dying.finish()


def test_console_script_is_installed() -> None:
    # pip install -e '.[dev]' puts it next to this Python.
    script = Path(sys.executable).parent / "mqttproto"
    assert script.exists(), f"no console script at {script}"
    result = subprocess.run(
        [str(script), "pub", "--help"], capture_output=True, timeout=TIMEOUT, check=False
    )
    assert result.returncode == 0
    assert b"-t" in result.stdout and b"--will-topic" in result.stdout
