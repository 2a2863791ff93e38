"""Fuzz harness for ClientConnection: whatever a server sends, the client copes.

Run a campaign (see fuzz/README.md)::

    .venv/bin/python fuzz/fuzz_client.py CORPUS_DIR -max_total_time=3600

``TestOneInput`` is importable without atheris; tests/test_fuzz_corpus.py
replays the corpus through it on every test run.

Input layout
------------

``data[0:2]`` is the selector, the rest (at most ``MAX_PAYLOAD`` bytes) is
what the server sends after the client's CONNECT.

- ``data[0]`` bits 0-1: protocol version: 0 = 3.1, 1 = 3.1.1, 2 or 3 = 5.0.
- ``data[0]`` bit 2: manual acknowledgement (``auto_acknowledge=False``).
- ``data[0]`` bit 3: persistent session (``clean_start=False``, a session
  expiry in 5.0) and an enhanced-authentication method in 5.0.
- ``data[0]`` bit 4: the client publishes a QoS 1 and a QoS 2 message and
  subscribes before the stream (once connected).
- ``data[0]`` bits 5-7: small limits: receive maximum ``2 ** bits``
  (1 to 128), topic alias maximum ``bits``.
- ``data[1]``: the stream is fed in pieces of ``data[1] % 64 + 1`` bytes,
  with a timer tick of ``data[1] / 8`` seconds between pieces.

Invariants (any violation raises, which the fuzzer reports as a crash)
------------------------------------------------------------------------

1. Only ``RemoteProtocolError`` escapes ``receive_data``; after it the client
   is closed, a ``Disconnected`` event carries the error's reason code, and in
   5.0 the queued goodbye is a DISCONNECT with that code (when one was sent).
2. Calls the application makes in reaction to events either work or raise
   ``LocalProtocolError``; nothing else.
3. Bounded: the QoS trackers never hold more than their limits (our receive
   maximum for inbound messages, 65,535 packet identifiers), topic aliases
   never exceed our maximum, and the reader never buffers more than the
   maximum packet size.
4. Timers are sane: ``get_timer()`` is None or a finite number.
5. Chunking does not matter. For streams of up to ``BYTEWISE_LIMIT`` bytes,
   a second and third client (same version and settings, no reactions, no
   timer) get the stream whole and one byte at a time. Without an error both
   give the same events and the same bytes to send. With an error, both fail
   with the same reason code; the whole feed's events (the reader drops the
   packets of a failing read) are a prefix of the byte-by-byte ones.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
from pathlib import Path

if __name__ == "__main__":
    import atheris

    with atheris.instrument_imports():
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from mqttproto import LocalProtocolError, ProtocolVersion, RemoteProtocolError
        from mqttproto.client import ClientConnection
        from mqttproto.config import ClientConfig
        from mqttproto.events import AuthChallenged, Disconnected, MessageReceived
        from mqttproto.packets import DisconnectPacket
else:
    from mqttproto import LocalProtocolError, ProtocolVersion, RemoteProtocolError
    from mqttproto.client import ClientConnection
    from mqttproto.config import ClientConfig
    from mqttproto.events import AuthChallenged, Disconnected, MessageReceived
    from mqttproto.packets import DisconnectPacket

from mqttproto import PacketReader

MAX_PAYLOAD = 4096
BYTEWISE_LIMIT = 512
MAX_PACKET_SIZE = 2048
_VERSIONS = (
    ProtocolVersion.MQTT_3_1,
    ProtocolVersion.MQTT_3_1_1,
    ProtocolVersion.MQTT_5_0,
    ProtocolVersion.MQTT_5_0,
)


def _react(client: ClientConnection, manual: bool) -> None:
    """What an application does with events: ack, answer challenges."""
    for event in client.events():
        try:
            if manual and isinstance(event, MessageReceived) and event.packet_id is not None:
                client.acknowledge(event.packet_id)
            elif isinstance(event, AuthChallenged):
                client.auth(b"answer")
        except LocalProtocolError:
            # The connection may have closed in the same read: refusal is fine.
            continue


def _check_bounds(client: ClientConnection) -> None:
    inbound = client._inbound
    v5 = client.version == ProtocolVersion.MQTT_5_0
    assert inbound.in_use() <= (inbound.receive_maximum if v5 else 65535)
    assert len(client._aliases_in or ()) <= client._inbound_alias_max
    assert len(client._packet_ids) <= 65535
    assert client._reader.buffered < MAX_PACKET_SIZE
    timer = client.get_timer()
    assert timer is None or math.isfinite(timer)


def _passive_run(
    version: ProtocolVersion, config: ClientConfig, connect: dict[str, object], pieces: list[bytes]
) -> tuple[list[object], bytes, int | None]:
    """Feed ``pieces`` to a fresh client that only listens: (events, output, error code)."""
    client = ClientConnection(version, config=config)
    client.connect(**connect)  # type: ignore[arg-type]
    client.data_to_send(0.0)
    events: list[object] = []
    output = b""
    code = None
    for piece in pieces:
        try:
            client.receive_data(piece, 1.0)
        except RemoteProtocolError as exc:
            code = int(exc.reason_code)
            break
        finally:
            events.extend(client.events())
            output += client.data_to_send(1.0)
    return events, output, code


def _check_chunking(
    version: ProtocolVersion, config: ClientConfig, connect: dict[str, object], stream: bytes
) -> None:
    whole = _passive_run(version, config, connect, [stream])
    bytewise = _passive_run(
        version, config, connect, [stream[i : i + 1] for i in range(len(stream))]
    )
    assert whole[2] == bytewise[2], (whole[2], bytewise[2])
    if whole[2] is None:
        assert whole[0] == bytewise[0]
        assert whole[1] == bytewise[1]
    else:
        # The last event of each is the Disconnected for the error.
        assert whole[0][-1] == bytewise[0][-1]
        assert whole[0][:-1] == bytewise[0][: len(whole[0]) - 1]


def TestOneInput(data: bytes) -> None:
    if len(data) < 2:
        return
    selector, chunking = data[0], data[1]
    stream = data[2 : 2 + MAX_PAYLOAD]
    version = _VERSIONS[selector & 3]
    v5 = version == ProtocolVersion.MQTT_5_0
    manual = bool(selector & 4)
    persistent = bool(selector & 8)
    act_first = bool(selector & 16)
    small = selector >> 5
    config = ClientConfig(
        auto_acknowledge=not manual,
        receive_maximum=2**small,
        topic_alias_maximum=small if v5 else 0,
        maximum_packet_size=MAX_PACKET_SIZE,
    )
    client = ClientConnection(version, config=config)
    connect: dict[str, object] = {"client_id": "fuzz", "keep_alive": 5}
    if persistent:
        connect["clean_start"] = False
        if v5:
            connect["session_expiry_interval"] = 60
            connect["authentication_method"] = "M"
    if len(stream) <= BYTEWISE_LIMIT:
        _check_chunking(version, config, connect, stream)
    client.connect(**connect)  # type: ignore[arg-type]
    now = 0.0
    client.data_to_send(now)
    if act_first:
        for qos in (1, 2):
            try:
                client.publish("f/t", b"p", qos=qos)
            except LocalProtocolError:
                continue
    step = chunking % 64 + 1
    for start in range(0, len(stream), step):
        now += chunking / 8
        try:
            client.receive_data(stream[start : start + step], now)
        except RemoteProtocolError as exc:
            assert client.closed
            events = list(client.events())
            assert events and events[-1] == Disconnected(exc.reason_code), events
            goodbye = client.data_to_send(now)
            if v5 and goodbye:
                packets = PacketReader(version=version).feed(goodbye)
                last = packets[-1]
                assert isinstance(last, DisconnectPacket) and last.reason_code == exc.reason_code
            break
        if act_first and client.state.value == "connected" and not client._pending_subscribes:
            try:
                client.subscribe(["f/#", "$share/g/f"])
            except LocalProtocolError:
                act_first = False
        _react(client, manual)
        client.handle_timer(now)
        _check_bounds(client)
        client.data_to_send(now)
    _check_bounds(client)


def main() -> None:
    # libFuzzer re-runs argv[0] through the shell for -merge, -jobs, -fork and
    # -minimize_crash: make it a command that runs this script with this Python.
    command = f"{shlex.quote(sys.executable)} {shlex.quote(os.path.abspath(__file__))}"
    atheris.Setup([command, *sys.argv[1:]], TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
