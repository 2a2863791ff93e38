"""An MQTT server of its own, without Broker: it accepts clients (but those
whose client id starts with "bad"), acknowledges their messages, serves
subscriptions with a few lines of routing, and appends every message to a file.

Run: python own_server.py [--port 1883] [--log messages.log]
"""

import argparse
import asyncio
import contextlib
import time

from mqttproto import (
    LocalProtocolError,
    QoS,
    ReasonCode,
    RemoteProtocolError,
    ServerConnection,
    topic_matches,
)
from mqttproto.events import (
    ConnectRequested,
    Disconnected,
    MessageReceived,
    SubscribeRequested,
    UnsubscribeRequested,
)

#: Each connected client: its connection, its writer and its subscriptions.
clients: dict[ServerConnection, tuple[asyncio.StreamWriter, dict[str, QoS]]] = {}


def route(message: MessageReceived) -> None:
    for conn, (writer, filters) in clients.items():
        granted = [qos for f, qos in filters.items() if topic_matches(f, message.topic)]
        if granted and not conn.closed:
            try:
                conn.publish(message.topic, message.payload, qos=min(max(granted), message.qos))
            except LocalProtocolError:
                continue  # its queue is full, or the message too large for it
            writer.write(conn.data_to_send(time.monotonic()))


def answer(conn: ServerConnection, writer: asyncio.StreamWriter, log, event) -> None:
    if isinstance(event, ConnectRequested):
        if event.client_id.startswith("bad"):
            conn.refuse(ReasonCode.CLIENT_IDENTIFIER_NOT_VALID)
        else:
            conn.accept(assigned_client_identifier=None if event.client_id else f"c{id(conn)}")
            clients[conn] = (writer, {})
    elif isinstance(event, MessageReceived):
        log.write(f"{event.topic} {event.payload!r}\n")
        log.flush()
        if event.qos:
            conn.acknowledge(event.packet_id)  # once the message is in the file
        route(event)
    elif isinstance(event, SubscribeRequested):
        filters = clients[conn][1]
        for subscription in event.subscriptions:
            filters[subscription.topic_filter] = subscription.max_qos
        conn.suback(event.packet_id, [s.max_qos for s in event.subscriptions])
    elif isinstance(event, UnsubscribeRequested):
        for topic_filter in event.topic_filters:
            clients[conn][1].pop(topic_filter, None)
        conn.unsuback(event.packet_id)
    elif isinstance(event, Disconnected):
        clients.pop(conn, None)


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, log) -> None:
    conn = ServerConnection(now=time.monotonic())
    while not conn.closed:
        deadline = conn.get_timer()
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            data = await asyncio.wait_for(reader.read(65536), wait)
        except TimeoutError:
            conn.handle_timer(time.monotonic())  # keep-alive or connect timeout
            data = None
        except ConnectionError:
            data = b""  # a reset ends the stream as an EOF does
        if data is not None:
            with contextlib.suppress(RemoteProtocolError):  # its goodbye is queued
                if data:
                    conn.receive_data(data, time.monotonic())
                else:
                    conn.receive_eof(time.monotonic())
        for event in conn.events():  # a protocol error ends with Disconnected
            answer(conn, writer, log, event)
        try:
            writer.write(conn.data_to_send(time.monotonic()))
            await writer.drain()
        except ConnectionError:  # the client is gone
            if not conn.closed:
                conn.receive_eof(time.monotonic())
    clients.pop(conn, None)
    writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--log", default="messages.log")
    args = parser.parse_args()
    with open(args.log, "a", encoding="utf-8") as log:
        server = await asyncio.start_server(lambda r, w: serve(r, w, log), "127.0.0.1", args.port)
        print("listening on port", server.sockets[0].getsockname()[1], flush=True)
        async with server:
            await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
