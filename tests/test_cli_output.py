"""``sub -F``, ``-d``, ``-T``, ``-E`` and ``pub --repeat`` print what
mosquitto_sub and mosquitto_pub print on the same messages, byte for byte
(time stamps aside), against our broker and against mosquitto.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cli_tools import Background, at, cli, mosquitto, ours
from interop import MOSQUITTO_PUB, MOSQUITTO_SUB, MosquittoBroker, require_peer
from test_interop_broker import ThreadedBroker

#: Retained messages both subscribers see: (topic, pub flags).
MESSAGES = [
    (
        "f/props",
        [
            *("-m", "hello world", "-q", "1"),
            *("-D", "publish", "content-type", "text/plain"),
            *("-D", "publish", "user-property", "k", "v"),
            *("-D", "publish", "user-property", "k2", "v 2"),
            *("-D", "publish", "response-topic", "resp"),
            *("-D", "publish", "correlation-data", "cd1"),
            *("-D", "publish", "payload-format-indicator", "1"),
        ],
    ),
    ("f/json", ["-m", '{"a": 1.50, "b": [1, 2e3, true, null, "x\\u00e9\\n"], "c": {}}']),
    ("f/bin", ["-f", "PAYLOAD"]),
    ("f/long/topic/name", ["-m", "abcdefghijkl", "-q", "2"]),
]
BINARY = b'bin\x01\x02"\\q\xff\x00end'


@pytest.fixture(scope="module", params=["mqttproto", "mosquitto"])
def broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """A broker holding :data:`MESSAGES` as retained messages (published by mosquitto_pub)."""
    payload = tmp_path_factory.mktemp("payload") / "payload.bin"
    payload.write_bytes(BINARY)
    with ThreadedBroker() if request.param == "mqttproto" else MosquittoBroker() as server:
        for topic, flags in MESSAGES:
            flags = [str(payload) if flag == "PAYLOAD" else flag for flag in flags]
            result = mosquitto(MOSQUITTO_PUB, *at(server), "-V", "5", "-r", "-t", topic, *flags)
            assert result.returncode == 0, result.stderr
        yield server


def same_output(mine: Any, theirs: Any) -> None:
    """Status, stdout and stderr alike, but for the clock in %j/%J's "tst"."""

    def clockless(output: bytes) -> bytes:
        return re.sub(rb'"tst":"[^"]*"', b'"tst":"T"', output)

    assert (mine.returncode, clockless(mine.stdout), mine.stderr) == (
        theirs.returncode,
        clockless(theirs.stdout),
        theirs.stderr,
    )


def both(broker: Any, *args: str) -> tuple[Any, Any]:
    """The same sub command, ours and mosquitto_sub's, on the retained messages."""
    argv = [*at(broker), "-t", "f/#", "-C", str(len(MESSAGES)), "-W", "10", *args]
    return cli("sub", *argv), mosquitto(MOSQUITTO_SUB, *argv)


@pytest.mark.parametrize(
    ("fmt", "version"),
    [
        ("%t %p %q %r %m %l", "5"),
        # MQTT 3.1.1: no properties, so the property fields are all blank.
        ("%t %p %q %r %m %l|%C|%10C|%D|%5E|%05F|%P|%R|%S|%A", "311"),
        ("%x|%X|%10x|%-10x|%010x|%X", "5"),
        ("%-20t|%20t|%.3t|%10.3t|%-10.3t|", "5"),
        ("%5p|%-5p|%05p|%-p|%.2p", "5"),
        ("%C|%10C|%-10C|%.3C|%D|%F|%5F|%05F|%-5F|%P|%R|%20R|%S|%A|%5A|%03S|%-3E|", "5"),
        ("%%\\t\\\\@@\\e\\a\\v\\r\\0x %5l %-5l| %05m|%-05l|%09q", "5"),
        ("%J", "5"),
        ("%J", "311"),
        ("plain text, no fields", "311"),
    ],
)
def test_format_prints_as_mosquitto_sub(broker: Any, fmt: str, version: str) -> None:
    mine, theirs = both(broker, "-V", version, "-F", fmt)
    same_output(mine, theirs)
    assert mine.returncode == 0 and mine.stdout.count(b"\n") >= len(MESSAGES)


def test_format_json_and_time_fields(broker: Any) -> None:
    """%j, %I, %U and @ fields: the same, but for the clock."""
    fmt = "%j|%I|%U|@Y-@m-@d @H @z @@ @N"
    mine, theirs = both(broker, "-V", "5", "-F", fmt, "-N")
    assert (mine.returncode, mine.stderr) == (theirs.returncode, theirs.stderr) == (0, b"")

    def parts(output: bytes) -> list[tuple[Any, ...]]:
        found = re.findall(
            rb'(\{"tst":"[^"]*",.*?\})\|(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4})\|(\d+)\.(\d{9})\|'
            rb"(\d{4}-\d\d-\d\d \d\d [+-]\d{4} @ )(\d{9})",
            output,
        )
        assert len(found) == len(MESSAGES), output
        rows = []
        for message, iso, seconds, _ns, date, _nanoseconds in found:
            # The JSON's properties are in the specification's order (the
            # broker's order is not kept by the client): compare as objects.
            parsed = json.loads(message.decode("utf-8", "surrogateescape"))
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z[+-]\d{4}", parsed["tst"])
            del parsed["tst"]
            rows.append((parsed, iso[:10], date[:10]))
            assert abs(int(seconds) - time.time()) < 60
        return rows

    assert parts(mine.stdout) == parts(theirs.stdout)


def test_json_payload_that_is_not_json(broker: Any) -> None:
    """%J on a payload that is not JSON: mosquitto's error line, the rest printed."""
    mine, theirs = both(broker, "-V", "311", "-F", "%t:%J")
    same_output(mine, theirs)
    assert b"Error: Message payload is not valid JSON on topic f/props.\n" in mine.stderr


@pytest.mark.parametrize(
    "flags",
    [
        ["-v", "-T", "f/props", "-T", "f/long/#", "-C", "2"],
        ["-T", "f/+", "-v", "-C", "1"],
        ["-N", "-T", "f/json", "-C", "3"],
        # Every message is retained: -R prints none, until -W.
        ["-v", "-R", "-W", "1"],
    ],
    ids=" ".join,
)
def test_filter_out_and_retained_as_mosquitto_sub(broker: Any, flags: list[str]) -> None:
    """Filtered messages do not count for -C: it ends on the others."""
    argv = [*at(broker), "-t", "f/#", "-W", "10", *flags]
    mine, theirs = cli("sub", *argv), mosquitto(MOSQUITTO_SUB, *argv)
    assert (mine.returncode, mine.stdout, mine.stderr) == (
        theirs.returncode,
        theirs.stdout,
        theirs.stderr,
    )
    if "-R" in flags:
        assert (mine.returncode, mine.stdout, mine.stderr) == (27, b"", b"Timed out\n")
    else:
        assert (mine.returncode, mine.stderr) == (0, b"")
        assert b"f/props" not in mine.stdout and mine.stdout


@pytest.mark.parametrize("version", ["311", "5"])
@pytest.mark.parametrize("qos", ["0", "1", "2"])
def test_debug_output_as_mosquitto(broker: Any, version: str, qos: str) -> None:
    """-d: the same packet lines from pub (with --repeat) and from sub."""
    flags = ["-V", version, "-q", qos, "-d"]
    pub = [*at(broker), *flags, "-i", "debug-pub", "-t", "d/x", "-m", "hi", "--repeat", "2"]
    mine, theirs = cli("pub", *pub), mosquitto(MOSQUITTO_PUB, *pub)
    assert (mine.returncode, mine.stdout, mine.stderr) == (
        theirs.returncode,
        theirs.stdout,
        theirs.stderr,
    )
    assert mine.stdout.startswith(b"Client debug-pub sending CONNECT\n")
    assert mine.stdout.count(b" sending PUBLISH (d0, q%s, r0, m" % qos.encode()) == 2
    sub = [*at(broker), *flags, "-i", "debug-sub", "-t", "f/long/#", "-C", "1", "-W", "10"]
    mine, theirs = cli("sub", *sub), mosquitto(MOSQUITTO_SUB, *sub)
    expected = theirs.stdout
    if qos == "2":
        # libmosquitto hands a QoS 2 message over on PUBREL, our client on
        # PUBLISH: -C 1 is reached, and the client disconnects, before the
        # broker's PUBREL comes (see docs/cli.rst).
        expected = re.sub(
            rb"Client debug-sub received PUBREL \(Mid: 1\)\n"
            rb"Client debug-sub sending PUBCOMP \(m1\)\n",
            b"",
            expected,
        )
        assert expected != theirs.stdout
    assert (mine.returncode, mine.stdout, mine.stderr) == (
        theirs.returncode,
        expected,
        theirs.stderr,
    )
    assert b"Subscribed (mid: 1): " in mine.stdout and mine.stdout.endswith(
        b"abcdefghijkl\nClient debug-sub sending DISCONNECT\n"
    )


def test_exit_after_subscribe_as_mosquitto_sub(broker: Any) -> None:
    argv = [*at(broker), "-t", "nothing/here", "-E", "-d", "-i", "exit-e", "-V", "5"]
    mine, theirs = cli("sub", *argv), mosquitto(MOSQUITTO_SUB, *argv)
    assert (mine.returncode, mine.stdout, mine.stderr) == (
        theirs.returncode,
        theirs.stdout,
        theirs.stderr,
    )
    assert mine.returncode == 0 and b"Subscribed (mid: 1): 0\n" in mine.stdout


def test_repeat_with_delay_reaches_a_subscriber(broker: Any) -> None:
    require_peer("mosquitto_sub", MOSQUITTO_SUB)
    # A retained marker: a subscriber that printed it is subscribed.
    assert cli("pub", *at(broker), "-t", "rep/ready", "-m", "r", "-r").returncode == 0
    watcher = Background([MOSQUITTO_SUB, *at(broker), "-t", "rep/#", "-v", "-C", "4", "-W", "15"])
    mine_sub = Background(ours("sub", *at(broker), "-t", "rep/#", "-C", "4", "-W", "15"))
    try:
        watcher.wait_for(b"rep/ready r\n")
        mine_sub.wait_for(b"r\n")
        started = time.monotonic()
        result = cli(
            *("pub", *at(broker), "-t", "rep/x", "-m", "again", "-q", "1"),
            *("--repeat", "3", "--repeat-delay", "0.4"),
        )
        elapsed = time.monotonic() - started
        mine, theirs = mine_sub.finish(), watcher.finish()
    finally:
        watcher.kill()
        mine_sub.kill()
    assert result.returncode == 0, result.stderr
    # Two pauses between three messages.
    assert elapsed >= 0.8
    assert theirs[:2] == (0, b"rep/ready r\n" + b"rep/x again\n" * 3)
    assert mine[:2] == (0, b"r\n" + b"again\n" * 3)


def test_closed_standard_output_ends_sub_quietly(broker: Any) -> None:
    """``sub | head -1``: no BrokenPipeError traceback, no "Exception ignored";
    mosquitto_sub dies of SIGPIPE there, we exit with the status a shell
    reports for that (128 + 13)."""
    process = subprocess.Popen(
        ours("sub", *at(broker), "-t", "f/#", "-v", "-d", "-W", "15"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        seen = b""
        for _ in range(1000):
            # Retained messages come at once; the read returns what is there.
            chunk = process.stdout.read1(65536)
            seen += chunk
            if not chunk or b"f/props hello world\n" in seen:
                break
        assert b"f/props hello world\n" in seen
        process.stdout.close()
        for _ in range(20):
            assert cli("pub", *at(broker), "-t", "f/more", "-m", "more").returncode == 0
            try:
                process.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                continue
        status = process.wait(timeout=10)
        stderr = process.stderr.read()
        process.stderr.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
    assert (status, stderr) == (141, b"")
