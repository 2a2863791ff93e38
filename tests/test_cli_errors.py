"""``mqttproto pub``, ``sub`` and ``rr`` never print a traceback: every
invalid argument and every failure is one line on standard error with
mosquitto's exit status, compared with mosquitto's own tools where they have
the same flag.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from certs import make_pki
from cli_tools import MOSQUITTO_RR, assert_one_line_error, at, cli, mosquitto
from cryptography.hazmat.primitives import serialization
from interop import HOST, MOSQUITTO_PUB, MOSQUITTO_SUB, MosquittoBroker, free_port
from test_interop_broker import ThreadedBroker

from mqttproto import cli as mqttproto_cli
from mqttproto.adapters.asyncio import Listener, server_ssl_context
from mqttproto.auth import AclAuthorizer, AclFile
from mqttproto.config import BrokerConfig

TOOLS = {"pub": MOSQUITTO_PUB, "sub": MOSQUITTO_SUB, "rr": MOSQUITTO_RR}


def first_line(result: subprocess.CompletedProcess[bytes]) -> bytes:
    """mosquitto's tools add "Use '... --help' to see usage." after a blank line."""
    return result.stderr.lstrip(b"\n").split(b"\n", 1)[0] + b"\n"


# -- the same flags as mosquitto's tools: same line, same status -----------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["pub", "-t", "a/+", "-m", "x"],
        ["pub", "-t", "a/#", "-m", "x"],
        ["sub", "-t", "a/#/b"],
        ["sub", "-t", "a/b+"],
        ["sub", "-t", "ok", "-T", "a/#/x"],
        ["rr", "-t", "a/+", "-e", "r", "-m", "x"],
        ["rr", "-t", "a", "-e", "r/#", "-m", "x"],
        ["pub", "-t", "a", "-m", "x", "--will-topic", "w/+"],
        ["pub", "-t", "a", "-m", "x", "--will-payload", "p"],
        ["pub", "-t", "a", "-m", "x", "--will-retain"],
        ["pub", "-p", "70000", "-t", "a", "-m", "x"],
        ["sub", "-p", "65536", "-t", "a"],
        ["pub", "-t", "a", "-m", "x", "-n"],
        ["pub", "-t", "a", "-f", "/dev/null", "-s"],
        ["pub", "-t", "a"],
        ["sub"],
        ["sub", "-t", "a", "-c"],
        ["sub", "-t", "a", "-c", "-V", "5"],
        ["pub", "-t", "a", "-m", "x", "--repeat", "0"],
        ["pub", "-t", "a", "-m", "x", "--repeat-delay", "-1"],
        ["sub", "-t", "a", "-F", "%"],
        ["sub", "-t", "a", "-F", "%-5"],
        ["sub", "-t", "a", "-F", "%i"],
        ["sub", "-t", "a", "-F", "%e"],
        ["sub", "-t", "a", "-F", "x\\"],
        ["sub", "-t", "a", "-F", "\\y"],
        ["sub", "-t", "a", "-F", "@"],
        ["pub", "-t", "a", "-m", "x", "--cafile", "/nonexistent/ca.pem"],
    ],
    ids=" ".join,
)
def test_bad_arguments_print_mosquittos_line_and_status(argv: list[str]) -> None:
    """Refused before connecting (port 1 on 127.0.0.1: nothing would answer)."""
    mine = cli(*argv, "-h", HOST)
    theirs = mosquitto(TOOLS[argv[0]], *argv[1:], "-h", HOST)
    assert theirs.returncode == 1, theirs.stderr
    theirs_line = first_line(theirs)
    if b"TLS options" in theirs_line:
        # mosquitto says "File not found."; we name the option and the file.
        theirs_line = b"Error: Problem setting TLS options: --cafile /nonexistent/ca.pem: "
    elif theirs_line.startswith(b"Error: Invalid port given: "):
        assert first_line(mine) == theirs_line
    assert_one_line_error(mine, 1, theirs_line.rstrip(b"\n"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["pub", "-t", "", "-m", "x"],
            b"Error: Invalid publish topic '': topic name must not be empty",
        ),
        (
            ["sub", "-t", ""],
            b"Error: Invalid subscription topic '': topic filter must not be empty",
        ),
        (["pub", "-p", "abc", "-t", "a", "-m", "x"], b"Error: Invalid port given: abc"),
        (
            ["pub", "-t", "a", "-m", "x", "-x", "60"],
            b"Error: -x (session expiry interval) needs MQTT 5 (-V 5).",
        ),
        # mosquitto_pub tries port 0 and says "Error: No such file or directory".
        (["pub", "-p", "0", "-t", "a", "-m", "x"], b"Error: Invalid port given: 0"),
        (
            ["pub", "-L", "mqtt://h:99999/t", "-m", "x"],
            b"Error: Invalid port given in -L URL: 99999",
        ),
        (["pub", "-L", "http://h/t", "-m", "x"], b"Error: Unsupported URL scheme"),
        (
            ["pub", "-t", "a", "-m", "x", "-k", "x"],
            b"mqttproto pub: error: argument -k/--keepalive: keepalive must be 0 or between 5 and 65535, not 'x'",
        ),
        (
            ["sub", "-t", "a", "-q", "3"],
            b"mqttproto sub: error: argument -q/--qos: QoS must be 0, 1 or 2, not '3'",
        ),
        (
            ["pub", "-t", "a", "-m", "x", "-V", "4"],
            b"mqttproto pub: error: argument -V/--protocol-version: unknown protocol version '4'",
        ),
        (
            ["pub", "-t", "a", "-m", "x", "-x", "soon"],
            b"mqttproto pub: error: argument -x: session-expiry-interval not a number: 'soon'",
        ),
        (["pub", "-Z"], b"mqttproto pub: error: unrecognized arguments: -Z"),
        (
            ["pub", "-t", "a", "-m", "x", "--unix", "/s", "--ws"],
            b"Error: --unix cannot be combined with --ws, -L or -h.",
        ),
        (
            ["pub", "-t", "a", "-m", "x", "-P", "secret"],
            b"Error: A password needs a username (-u) before MQTT 5.",
        ),
        (
            ["pub", "-t", "a", "-m", "x", "--cert", "c.pem"],
            b"Error: Both certfile and keyfile must be provided if one of them is set.",
        ),
        (
            ["pub", "-t", "a", "-f", "/nonexistent/payload"],
            b"Error: Unable to read file '/nonexistent/payload': No such file or directory.",
        ),
        (
            ["pub", "-t", "a", "-m", "x", "-V", "31", "-i", "x" * 24],
            b"Error in CONNECT: an MQTT 3.1 client identifier has 1 to 23 characters.",
        ),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_bad_arguments_of_our_own_are_one_line(argv: list[str], message: bytes) -> None:
    assert_one_line_error(cli(*argv), 1, message)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["-D", "publish", "colour", "red"],
            b"Error: Invalid property 'colour' for command 'publish'.",
        ),
        (["-D", "launch", "content-type", "x"], b"Error: Invalid command 'launch' given in -D."),
        (
            ["-D", "publish", "message-expiry-interval", "soon"],
            b"Error: Invalid value for message-expiry-interval: invalid literal",
        ),
        (
            ["-D", "publish", "message-expiry-interval", "-5"],
            b"Error in PUBLISH properties: message_expiry_interval must be between 0 and 4294967295, not -5.",
        ),
        (
            ["-D", "publish", "topic-alias", "0"],
            b"Error in PUBLISH properties: topic-alias must be between 1 and 65535, not 0.",
        ),
        (["-D", "publish", "payload-format-indicator", "7"], b"Error in PUBLISH properties: "),
        (["-D", "publish", "response-topic", "r/#"], b"Error in PUBLISH properties: "),
        (
            ["-D", "connect", "receive-maximum", "0"],
            b"Error in CONNECT properties: RECEIVE_MAXIMUM must be between 1 and 65535, not 0.",
        ),
        (
            ["-D", "connect", "request-problem-information", "2"],
            b"Error: Invalid value for request-problem-information: must be 0 or 1.",
        ),
        (
            ["-D", "will", "will-delay-interval", "-1", "--will-topic", "w"],
            b"Error in Will properties: ",
        ),
        (
            ["-D", "publish", "user-property", "k"],
            b"Error: -D ... user-property needs a key and a value.",
        ),
        (["-D", "publish"], b"Error: -D needs a command, a property and a value."),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_invalid_d_properties_are_one_line_before_connecting(
    argv: list[str], message: bytes
) -> None:
    """Before: tracebacks from the codec, or an exception inside the client's
    connection_made and a 10 s wait for a CONNACK that never came."""
    assert_one_line_error(cli("pub", "-V", "5", "-t", "a", "-m", "x", *argv), 1, message)


def test_invalid_subscribe_properties_and_v3_properties() -> None:
    assert_one_line_error(
        cli("sub", "-V", "5", "-t", "a", "-D", "subscribe", "subscription-identifier", "0"),
        1,
        b"Error in SUBSCRIBE properties: SUBSCRIPTION_IDENTIFIER must be between 1 and 268435455",
    )
    assert_one_line_error(
        cli("pub", "-t", "a", "-m", "x", "-D", "publish", "content-type", "t"),
        1,
        b"Error: -D properties need MQTT 5 (-V 5).",
    )


# -- TLS files: the error names the file and what is wrong ------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_tls_files_are_named_with_what_is_wrong(pki: Any, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not a certificate\n")
    base = ["pub", "-t", "a", "-m", "x", "-h", HOST, "-p", "1"]
    cert, key, ca = str(pki.client_cert), str(pki.client_key), str(pki.ca)
    cases = [
        (
            ["--cafile", str(tmp_path / "missing.pem")],
            f"--cafile {tmp_path}/missing.pem: no such file.",
        ),
        (["--cafile", str(tmp_path)], f"--cafile {tmp_path}: is a directory, not a file."),
        (["--cafile", str(garbage)], f"--cafile {garbage}: no PEM certificate in it"),
        (["--capath", str(tmp_path / "none")], f"--capath {tmp_path}/none: no such directory."),
        (
            ["--cafile", ca, "--cert", str(tmp_path / "c.pem"), "--key", key],
            f"--cert {tmp_path}/c.pem: no such file.",
        ),
        (
            ["--cafile", ca, "--cert", cert, "--key", str(tmp_path / "k.pem")],
            f"--key {tmp_path}/k.pem: no such file.",
        ),
        (
            ["--cafile", ca, "--cert", str(garbage), "--key", key],
            f"--cert {garbage}: no PEM certificate in it",
        ),
        (
            ["--cafile", ca, "--cert", cert, "--key", cert],
            f"--key {cert}: no PEM private key in it",
        ),
        (
            ["--cafile", ca, "--cert", cert, "--key", str(pki.server_key)],
            f"--key {pki.server_key} is not the private key of --cert {cert}.",
        ),
    ]
    # An encrypted key and no terminal to ask for its pass phrase (stdin is /dev/null).
    private = serialization.load_pem_private_key(Path(key).read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    cases.append(
        (
            ["--cafile", ca, "--cert", cert, "--key", str(encrypted)],
            f"--key {encrypted}: the key is encrypted, and there is no terminal to ask for "
            "its pass phrase.",
        )
    )
    for options, message in cases:
        result = cli(*base, *options)
        assert_one_line_error(result, 1, b"Error: Problem setting TLS options: " + message.encode())
        assert b"PEM lib" not in result.stderr and b"Errno" not in result.stderr


@pytest.mark.parametrize("broker_kind", ["mqttproto", "mosquitto"])
def test_tls_client_to_a_plain_port_says_so_with_mosquittos_status(
    pki: Any, broker_kind: str
) -> None:
    """Before: "Error: " and nothing after it, status 1."""
    with contextlib.ExitStack() as stack:
        broker: Any = stack.enter_context(
            ThreadedBroker() if broker_kind == "mqttproto" else MosquittoBroker()
        )
        args = [*at(broker), "-t", "a", "-m", "x", "--cafile", str(pki.ca)]
        mine, theirs = cli("pub", *args), mosquitto(MOSQUITTO_PUB, *args)
    # mosquitto_pub says "Error: A TLS error occurred." with status 8, or, when
    # the server hangs up while it is still connecting, "Unable to connect (A
    # TLS error occurred.)." with 1: ours is the same line and 8 each time.
    assert (theirs.returncode, theirs.stderr) in (
        (8, b"Error: A TLS error occurred.\n"),
        (1, b"Unable to connect (A TLS error occurred.).\n"),
    )
    assert_one_line_error(
        mine, 8, b"Error: A TLS error occurred connecting to 127.0.0.1:%d: " % broker.port
    )
    assert b"plain MQTT port" in mine.stderr


def test_plain_client_to_a_tls_port_and_unreachable_hosts(pki: Any) -> None:
    context = server_ssl_context(str(pki.server_cert), str(pki.server_key))
    with ThreadedBroker(listeners=[Listener(port=0, ssl=context)]) as broker:
        plain = cli("pub", *at(broker), "-t", "a", "-m", "x")
    assert_one_line_error(
        plain,
        7,
        b"Error: The connection to 127.0.0.1:%d was closed before CONNACK (is it a TLS port? "
        b"then give --cafile)." % broker.port,
    )
    port = free_port()
    for command, more in (("pub", ["-m", "y"]), ("sub", []), ("rr", ["-m", "y", "-e", "r"])):
        refused = cli(command, "-h", HOST, "-p", str(port), "-t", "x", *more)
        theirs = mosquitto(TOOLS[command], "-h", HOST, "-p", str(port), "-t", "x", *more)
        assert_one_line_error(refused, theirs.returncode, b"Error: Connection refused")
        assert refused.stderr == first_line(theirs)
        lookup = cli(command, "-h", "no-such-host.invalid", "-t", "x", *more)
        theirs = mosquitto(TOOLS[command], "-h", "no-such-host.invalid", "-t", "x", *more)
        assert_one_line_error(
            lookup,
            theirs.returncode,
            b"Error: Unable to connect to no-such-host.invalid:1883: lookup error (",
        )


def test_ws_without_wsproto_fails_at_once_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """wsproto's absence simulated in-process: its import fails."""
    monkeypatch.setitem(sys.modules, "wsproto", None)
    port = free_port()
    for argv in (
        ["pub", "--ws", "-h", HOST, "-p", str(port), "-t", "a", "-m", "x"],
        ["sub", "--ws", "-h", HOST, "-p", str(port), "-t", "a"],
        ["rr", "--ws", "-h", HOST, "-p", str(port), "-t", "a", "-e", "r", "-m", "x"],
    ):
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            status = mqttproto_cli.main(argv)
        assert (status, stdout.getvalue()) == (1, "")
        assert stderr.getvalue() == (
            "Error: --ws needs the wsproto package, which is not installed: "
            "pip install 'mqttproto[websocket]'\n"
        )


# -- what the broker's limits refuse ------------------------------------------------------


@contextlib.contextmanager
def limited_broker(kind: str) -> Iterator[Any]:
    """A broker with Maximum Packet Size 100, Maximum QoS 1 and no retain."""
    if kind == "mqttproto":
        config = BrokerConfig(max_packet_size=100, maximum_qos=1, retain_available=False)
        with ThreadedBroker(config=config) as broker:
            yield broker
    else:
        extra = ["max_packet_size 100", "max_qos 1", "retain_available false"]
        with MosquittoBroker(extra) as broker:
            yield broker


@pytest.mark.parametrize("kind", ["mqttproto", "mosquitto"])
def test_what_the_brokers_limits_refuse_is_one_line(kind: str) -> None:
    """Before: LocalProtocolError tracebacks. mosquitto_pub 2.0.11 exits 0 in
    these cases (silently, for the size and retain); we exit with the
    libmosquitto error number its manual promises."""
    big = "x" * 300
    with limited_broker(kind) as broker:
        v5 = [*at(broker), "-V", "5", "-t", "a"]
        oversize = cli("pub", *v5, "-m", big)
        qos = cli("pub", *v5, "-m", "x", "-q", "2")
        retain = cli("pub", *v5, "-m", "x", "-r")
        theirs_qos = mosquitto(MOSQUITTO_PUB, *v5, "-m", "x", "-q", "2")
        rr = cli("rr", *at(broker), "-t", "a", "-e", "r", "-m", big)
        # MQTT 3.1.1 has no CONNACK limits: the broker closes the connection.
        lost = cli("pub", *at(broker), "-t", "a", "-m", "x", "-q", "2")
        theirs_lost = mosquitto(MOSQUITTO_PUB, *at(broker), "-t", "a", "-m", "x", "-q", "2")
    assert_one_line_error(
        oversize,
        25,
        b"Error: Message too large for the broker: the PUBLISH packet is 307 bytes, its "
        b"Maximum Packet Size is 100.",
    )
    assert_one_line_error(rr, 25, b"Error: Message too large for the broker: ")
    assert theirs_qos.stderr == b"Error: Message QoS not supported on broker, try a lower QoS.\n"
    assert_one_line_error(
        qos, 24, b"Error: Message QoS not supported on broker, try a lower QoS (its maximum is 1)."
    )
    assert_one_line_error(
        retain, 28, b"Error: Retained messages are not supported on broker, publish without -r."
    )
    if kind == "mosquitto":
        assert (theirs_lost.returncode, theirs_lost.stderr) == (
            7,
            b"Error: The connection was lost.\n",
        )
        assert (lost.returncode, lost.stderr) == (7, theirs_lost.stderr)
    else:
        assert_one_line_error(lost, 7, b"Error: The connection was lost")


@pytest.mark.parametrize("kind", ["mqttproto", "mosquitto"])
def test_refused_publish_and_subscription_are_one_line(kind: str, tmp_path: Path) -> None:
    """An ACL refuses the topic. mosquitto_pub warns and exits 0; a refused
    publish is an error (status 1) here. mosquitto grants the subscription
    (and drops the messages); our broker refuses it in the SUBACK."""
    rules = "topic readwrite allowed/#\n"
    with contextlib.ExitStack() as stack:
        if kind == "mqttproto":
            authorizer = AclAuthorizer(AclFile.parse(rules))
            broker: Any = stack.enter_context(ThreadedBroker(authorizer=authorizer))
        else:
            acl = tmp_path / "acl"
            acl.write_text(rules)
            broker = stack.enter_context(MosquittoBroker([f"acl_file {acl}"]))
        denied = [*at(broker), "-V", "5", "-t", "denied"]
        mine = cli("pub", *denied, "-m", "x", "-q", "1")
        theirs = mosquitto(MOSQUITTO_PUB, *denied, "-m", "x", "-q", "1")
        subscribed = cli("sub", *denied, "-W", "1")
    assert (theirs.returncode, theirs.stderr) == (
        0,
        b"Warning: Publish 1 failed: Not authorized.\n",
    )
    assert_one_line_error(mine, 1, b"Error: Publish failed: Not authorized.")
    if kind == "mqttproto":
        assert_one_line_error(subscribed, 1, b"All subscription requests were denied.")
    else:
        assert (subscribed.returncode, subscribed.stderr) == (27, b"Timed out\n")


@pytest.mark.parametrize("kind", ["mqttproto", "mosquitto"])
def test_a_property_the_server_refuses_is_mosquittos_line(kind: str) -> None:
    """An authentication method the broker does not know: CONNACK 0x8C."""
    with ThreadedBroker() if kind == "mqttproto" else MosquittoBroker() as broker:
        args = [*at(broker), "-V", "5", "-t", "a", "-m", "x"]
        args += ["-D", "connect", "authentication-method", "no-such-method"]
        mine, theirs = cli("pub", *args), mosquitto(MOSQUITTO_PUB, *args)
    assert theirs.returncode == 140
    assert_one_line_error(mine, 140, b"Connection error: Bad authentication method")
    assert mine.stderr == first_line(theirs)
