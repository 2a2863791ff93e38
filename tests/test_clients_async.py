"""The asyncio and trio clients (mqttproto.adapters.asyncio/trio.Client) on real sockets.

Each scenario is written once against the common client API and run on both
adapters (``lib`` parameter), each under ``asyncio.run``/``trio.run`` with a
global timeout. Servers: our broker (in a thread, see tests/clients.py) and
mosquitto, with TLS, WebSocket and Unix socket listeners where named.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sniffio
import trio
from clients import CutProxy, DenyTopic, ThreadedBroker, certificates, mosquitto_with
from interop import HOST, MosquittoBroker

import mqttproto.adapters.asyncio as asyncio_adapter
import mqttproto.adapters.trio as trio_adapter
from mqttproto import LocalProtocolError, ProtocolVersion, QoS, ReasonCode
from mqttproto.adapters.asyncio import (
    ConnectError,
    PublishError,
    ReconnectPolicy,
    SubscribeError,
)
from mqttproto.auth import PasswordAuthenticator

T = TypeVar("T")
TIMEOUT = 20.0
V311 = ProtocolVersion.MQTT_3_1_1
V5 = ProtocolVersion.MQTT_5_0
VERSIONS = pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
LIBS = pytest.mark.parametrize("lib", ["asyncio", "trio"])
Spawn = Callable[[Callable[[], Awaitable[Any]]], None]


def client_class(lib: str) -> Any:
    return asyncio_adapter.Client if lib == "asyncio" else trio_adapter.Client


def run(lib: str, function: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    if lib == "asyncio":

        async def bounded_asyncio() -> T:
            return await asyncio.wait_for(function(*args, **kwargs), TIMEOUT)

        return asyncio.run(bounded_asyncio())

    async def bounded_trio() -> T:
        with trio.fail_after(TIMEOUT):
            return await function(*args, **kwargs)

    return trio.run(bounded_trio)


async def sleep(seconds: float) -> None:
    if sniffio.current_async_library() == "trio":
        await trio.sleep(seconds)
    else:
        await asyncio.sleep(seconds)


@asynccontextmanager
async def task_group() -> AsyncIterator[Spawn]:
    """Run tasks alongside the block; the block's end waits for them."""
    if sniffio.current_async_library() == "trio":
        async with trio.open_nursery() as nursery:
            yield lambda function: nursery.start_soon(function)
    else:
        async with asyncio.TaskGroup() as group:
            yield lambda function: group.create_task(function())  # type: ignore[arg-type]


# -- scenarios ------------------------------------------------------------------------


async def roundtrip(client_cls: Any, host: str, port: int | None, **options: Any) -> None:
    """Subscribe, publish at QoS 0/1/2, read back from messages() and a subscription."""
    async with client_cls(host, port, **options) as client:
        assert client.connected
        assert await client.subscribe("rt/all/#", qos=2) == (QoS.EXACTLY_ONCE,)
        assert await client.publish("rt/all/0", b"zero", qos=0) is None
        ack1 = await client.publish("rt/all/1", b"one", qos=1)
        ack2 = await client.publish("rt/all/2", "two", qos=2)
        assert ack1 is not None and ack1.reason_code < 0x80
        assert ack2 is not None and ack2.reason_code < 0x80
        received = []
        async for message in client.messages():
            received.append((message.topic, message.payload, int(message.qos), message.retain))
            if len(received) == 3:
                break
        assert sorted(received) == [
            ("rt/all/0", b"zero", 0, False),
            ("rt/all/1", b"one", 1, False),
            ("rt/all/2", b"two", 2, False),
        ]
        # A per-subscription iterator claims its messages; messages() gets the rest.
        async with client.subscription("rt/one/+", qos=1) as messages:
            await client.publish("rt/one/a", b"A", qos=1)
            await client.publish("rt/all/x", b"X", qos=1)
            async for message in messages:
                assert (message.topic, message.payload, message.qos) == ("rt/one/a", b"A", 1)
                break
            async for message in client.messages():
                assert (message.topic, message.payload) == ("rt/all/x", b"X")
                break
        assert await client.unsubscribe("rt/all/#") == (
            (ReasonCode.SUCCESS,) if client.core.version == V5 else ()
        )


async def request_response(client_cls: Any, host: str, port: int) -> None:
    """A responder answers three requests; a request nobody answers times out."""
    async with (
        client_cls(host, port, client_id="requester") as requester,
        client_cls(host, port, client_id="responder") as responder,
    ):

        async def serve() -> None:
            async with responder.subscription("svc/upper", qos=1) as requests:
                ready.append(True)
                answered = 0
                async for request in requests:
                    await responder.publish(
                        request.response_topic,
                        request.payload.upper(),
                        qos=1,
                        correlation_data=request.correlation_data,
                    )
                    answered += 1
                    if answered == 3:
                        return

        ready: list[bool] = []
        async with task_group() as spawn:
            spawn(serve)
            for _ in range(100):
                if ready:
                    break
                await sleep(0.01)
            for word in (b"alpha", b"beta", b"gamma"):
                response = await requester.request("svc/upper", word, timeout=5)
                assert response.payload == word.upper()
                assert response.topic == requester.core.response_topic
        with pytest.raises(TimeoutError):
            await requester.request("svc/nobody", b"?", timeout=0.2)


# -- our broker -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def broker() -> Any:
    with ThreadedBroker() as running:
        yield running


@LIBS
@VERSIONS
def test_roundtrip_our_broker(broker: ThreadedBroker, lib: str, version: ProtocolVersion) -> None:
    run(
        lib, roundtrip, client_class(lib), HOST, broker.port, version=version, client_id=f"{lib}-rt"
    )


@LIBS
@VERSIONS
def test_roundtrip_mosquitto(
    mosquitto: tuple[str, int], lib: str, version: ProtocolVersion
) -> None:
    run(lib, roundtrip, client_class(lib), *mosquitto, version=version, client_id=f"{lib}-rt")


@LIBS
def test_request_response_our_broker(broker: ThreadedBroker, lib: str) -> None:
    run(lib, request_response, client_class(lib), HOST, broker.port)


@LIBS
def test_request_response_mosquitto(mosquitto: tuple[str, int], lib: str) -> None:
    run(lib, request_response, client_class(lib), *mosquitto)


@LIBS
def test_tls_our_broker(tmp_path: Path, lib: str) -> None:
    certs = certificates(tmp_path)
    with ThreadedBroker(ssl=certs.server_context) as tls_broker:
        run(lib, roundtrip, client_class(lib), HOST, tls_broker.port, tls=certs.client_context)


@LIBS
def test_tls_websocket_unix_mosquitto(tmp_path: Path, lib: str) -> None:
    """mosquitto 2.0.11 (Debian) offers TLS, WebSocket and Unix socket listeners."""
    certs = certificates(tmp_path)
    cls = client_class(lib)
    with mosquitto_with(tmp_path, tls=certs, websocket=True, unix=True) as listeners:
        run(lib, roundtrip, cls, HOST, listeners.tls_port, tls=certs.client_context)
        run(lib, roundtrip, cls, HOST, listeners.ws_port, transport="websocket")
        run(lib, roundtrip, cls, listeners.unix_path, None, transport="unix", version=V311)


@LIBS
def test_default_ports(lib: str) -> None:
    cls = client_class(lib)
    assert cls("h").port == 1883
    context = ssl.create_default_context()
    assert cls("h", tls=context).port == 8883
    assert cls("h", transport="websocket").port == 80
    assert cls("h", transport="websocket", tls=context).port == 443
    assert cls("h", 1234).port == 1234


@LIBS
def test_failures_carry_reason_codes(lib: str) -> None:
    cls = client_class(lib)

    async def main(port: int) -> None:
        async with cls(HOST, port, client_id="fails") as client:
            with pytest.raises(PublishError) as publish_error:
                await client.publish("denied/x", b"no", qos=1)
            assert publish_error.value.reason_code == ReasonCode.NOT_AUTHORIZED
            with pytest.raises(SubscribeError) as subscribe_error:
                await client.subscribe("denied/#", qos=1)
            assert subscribe_error.value.reason_codes == (ReasonCode.NOT_AUTHORIZED,)
            # A partial refusal returns the codes.
            assert await client.subscribe(["ok/#", "denied/y"], qos=1) == (
                ReasonCode.GRANTED_QOS_1,
                ReasonCode.NOT_AUTHORIZED,
            )

    with ThreadedBroker(authorizer=DenyTopic()) as deny:
        run(lib, main, deny.port)

    async def refused(port: int) -> None:
        with pytest.raises(ConnectError) as error:
            async with cls(HOST, port, username="nobody", password="wrong"):
                pass
        assert error.value.reason_code == ReasonCode.BAD_USER_NAME_OR_PASSWORD

    with ThreadedBroker(authenticator=PasswordAuthenticator({}, allow_anonymous=False)) as auth:
        run(lib, refused, auth.port)


@LIBS
def test_a_connect_the_protocol_forbids_fails_at_once(broker: ThreadedBroker, lib: str) -> None:
    """An MQTT 5 property with 3.1.1: connect() raises the reason instead of
    waiting for a CONNACK until its connect timeout (longer than the test's
    bound, so a wait would fail the test)."""
    cls = client_class(lib)

    async def main() -> None:
        client = cls(
            HOST,
            broker.port,
            version=V311,
            connect_timeout=10 * TIMEOUT,
            connect_properties={"user_properties": [("a", "b")]},
        )
        with pytest.raises(LocalProtocolError, match="user_properties is an MQTT 5 property"):
            async with client:
                pass
        assert not client.connected

    run(lib, main)


@LIBS
def test_back_pressure_bounds_the_queue(broker: ThreadedBroker, lib: str) -> None:
    """A consumer that does not read: the client stops reading at the bound,
    nothing is dropped, and everything arrives once it reads."""
    cls = client_class(lib)
    count = 200

    async def main() -> None:
        async with (
            cls(HOST, broker.port, client_id=f"{lib}-slow", max_queued_messages=5) as slow,
            cls(HOST, broker.port, client_id=f"{lib}-fast") as fast,
        ):
            await slow.subscribe("bp/#", qos=1)
            for i in range(count):
                await fast.publish("bp/x", str(i).encode(), qos=1)
            for _ in range(200):
                if slow.core.reading_paused:
                    break
                await sleep(0.01)
            assert slow.core.reading_paused
            queued = len(slow.messages())
            assert 5 <= queued < count
            payloads = []
            async for message in slow.messages():
                payloads.append(int(message.payload))
                if len(payloads) == count:
                    break
            assert payloads == list(range(count))

    run(lib, main)


@LIBS
@VERSIONS
def test_reconnect_loses_no_qos12_message(
    broker: ThreadedBroker, lib: str, version: ProtocolVersion
) -> None:
    """Both clients' connections are cut twice mid-stream; every QoS 1/2
    message published arrives, and every publish() call completes."""
    cls = client_class(lib)
    count = 120
    policy = ReconnectPolicy(initial=0.02, maximum=0.1, jitter=0.5)
    session: dict[str, Any] = (
        {"session_expiry_interval": 600} if version == V5 else {"clean_start": False}
    )

    connects: list[Any] = []

    async def main(proxy: CutProxy) -> dict[bytes, int]:
        got: dict[bytes, int] = {}
        async with (
            cls(
                HOST,
                proxy.port,
                client_id=f"{lib}-{int(version)}-sub",
                version=version,
                reconnect=policy,
                rng=random.Random(1),
                **session,
            ) as sub,
            cls(
                HOST,
                proxy.port,
                client_id=f"{lib}-{int(version)}-pub",
                version=version,
                reconnect=policy,
                rng=random.Random(2),
            ) as pub,
        ):
            for client in (sub, pub):
                client.core.on_connect.append(lambda event: connects.append(event))
            await sub.subscribe("rc/#", qos=2)

            async def consume() -> None:
                async for message in sub.messages():
                    got[message.payload] = got.get(message.payload, 0) + 1
                    if len(got) == count:
                        return

            async with task_group() as spawn:
                spawn(consume)
                for i in range(count):
                    ack = await pub.publish(f"rc/{i % 2}", str(i).encode(), qos=1 + i % 2)
                    assert ack is not None
                    if i in (30, 80):
                        proxy.cut()
        return got

    with CutProxy(broker.port) as proxy:
        got = run(lib, main, proxy)
        assert proxy.cuts == 2
    # Each cut made both clients connect again.
    assert len(connects) == 4
    assert set(got) == {str(i).encode() for i in range(count)}


def test_reconnect_policy_backoff_and_jitter() -> None:
    policy = ReconnectPolicy(initial=1.0, maximum=8.0, factor=2.0, jitter=0.5)
    rng = random.Random(7)
    delays = [policy.delay(n, rng) for n in range(6)]
    bases = [1, 2, 4, 8, 8, 8]
    for delay, base in zip(delays, bases, strict=True):
        assert base * 0.5 <= delay <= base
    # The same seed gives the same delays: the jitter comes from the injected rng.
    again = random.Random(7)
    assert delays == [policy.delay(n, again) for n in range(6)]
    assert ReconnectPolicy(jitter=0).delay(3, rng) == 4.0
    with pytest.raises(ValueError):
        ReconnectPolicy(jitter=2)


def test_mosquitto_refuses_anonymous(tmp_path: Path) -> None:
    async def main(port: int) -> None:
        with pytest.raises(ConnectError) as error:
            async with asyncio_adapter.Client(HOST, port):
                pass
        assert error.value.reason_code == ReasonCode.NOT_AUTHORIZED

    with MosquittoBroker(allow_anonymous=False, directory=tmp_path) as mosq:
        run("asyncio", main, mosq.port)


@LIBS
def test_body_exception_propagates_unwrapped(broker: ThreadedBroker, lib: str) -> None:
    """An exception in the ``async with`` body comes out as it is, and the
    client is closed (trio: not wrapped in an ExceptionGroup by its nursery)."""
    cls = client_class(lib)

    async def main() -> Any:
        client = cls(HOST, broker.port, client_id=f"{lib}-body")
        with pytest.raises(KeyError):
            async with client:
                raise KeyError("body")
        return client

    client = run(lib, main)
    assert client.core.finished and not client.connected
