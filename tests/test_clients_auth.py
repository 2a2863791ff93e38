"""MQTT 5 enhanced authentication in the asyncio, trio and threads clients.

Against our broker (in a thread, tests/clients.py) with
:class:`~mqttproto.auth.ChallengeResponseAuthenticator`: a real multi-step
AUTH exchange (CONNECT with the method, AUTH 0x18 with a nonce from the
server, AUTH 0x18 with HMAC-SHA256(secret, nonce) from the client, CONNACK).
Each scenario runs on every adapter, each wait bounded; the broker's delay
after failed authentications is off, so that refusals come at once.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest
import sniffio
import trio
from clients import CutProxy, ThreadedBroker
from interop import HOST

import mqttproto.adapters.asyncio as asyncio_adapter
import mqttproto.adapters.threads as threads_adapter
import mqttproto.adapters.trio as trio_adapter
from mqttproto import ProtocolVersion, ReasonCode
from mqttproto.adapters.asyncio import (
    AuthenticationError,
    ClientError,
    ConnectError,
    ConnectionLostError,
    ReconnectPolicy,
)
from mqttproto.auth import (
    HMAC_SHA256_METHOD,
    ChallengeResponseAuthenticator,
    hmac_sha256_response,
)
from mqttproto.config import BrokerConfig
from mqttproto.events import AuthChallenged, ConnectionAccepted, Reauthenticated

T = TypeVar("T")
SECRET = b"correct horse battery staple"
#: Seconds any scenario may take; each refusal must come much sooner.
TIMEOUT = 20.0
#: A connect timeout far beyond the test's bound: a hang would not end in it.
SLOW_CONNECT = 60.0
PROMPT = 5.0
ASYNC_LIBS = pytest.mark.parametrize("lib", ["asyncio", "trio"])


class Nonces:
    """The broker's nonce source: 16 distinct bytes per call, all remembered."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self.issued: list[bytes] = []
        self._lock = threading.Lock()

    def __call__(self) -> bytes:
        with self._lock:
            nonce = next(self._counter).to_bytes(16, "big")
            self.issued.append(nonce)
            return nonce


@pytest.fixture
def nonces() -> Nonces:
    return Nonces()


@pytest.fixture
def broker(nonces: Nonces) -> Iterator[ThreadedBroker]:
    authenticator = ChallengeResponseAuthenticator({"alice": SECRET}, nonces)
    with ThreadedBroker(
        authenticator=authenticator, config=BrokerConfig(auth_failure_delay=None)
    ) as running:
        yield running


class Answers:
    """A sync authenticator that records the challenges it answered; the
    secret it answers with can be changed (``secret``)."""

    def __init__(self, secret: bytes = SECRET) -> None:
        self.secret = secret
        self.challenges: list[bytes] = []

    def __call__(self, challenge: AuthChallenged) -> bytes:
        assert challenge.authentication_method == HMAC_SHA256_METHOD
        assert challenge.authentication_data is not None
        self.challenges.append(challenge.authentication_data)
        return hmac_sha256_response(self.secret, challenge.authentication_data)


class AsyncAnswers(Answers):
    """The same as a coroutine function, which yields to the loop first."""

    async def __call__(self, challenge: AuthChallenged) -> bytes:  # type: ignore[override]
        await sleep(0.01)
        return Answers.__call__(self, challenge)


async def sleep(seconds: float) -> None:
    if sniffio.current_async_library() == "trio":
        await trio.sleep(seconds)
    else:
        await asyncio.sleep(seconds)


def new_event() -> Any:
    return trio.Event() if sniffio.current_async_library() == "trio" else asyncio.Event()


@asynccontextmanager
async def task_group() -> AsyncIterator[Callable[[Callable[[], Awaitable[Any]]], None]]:
    """Run tasks alongside the block; the block's end waits for them."""
    if sniffio.current_async_library() == "trio":
        async with trio.open_nursery() as nursery:
            yield lambda function: nursery.start_soon(function)
    else:
        async with asyncio.TaskGroup() as group:
            yield lambda function: group.create_task(function())  # type: ignore[arg-type]


def client_class(lib: str) -> Any:
    return {
        "asyncio": asyncio_adapter.Client,
        "trio": trio_adapter.Client,
        "threads": threads_adapter.Client,
    }[lib]


def run(lib: str, function: Callable[..., Awaitable[T]], *args: Any) -> T:
    if lib == "asyncio":

        async def bounded_asyncio() -> T:
            return await asyncio.wait_for(function(*args), TIMEOUT)

        return asyncio.run(bounded_asyncio())

    async def bounded_trio() -> T:
        with trio.fail_after(TIMEOUT):
            return await function(*args)

    return trio.run(bounded_trio)


def auth_options(authenticator: Any, **more: Any) -> dict[str, Any]:
    return dict(
        username="alice",
        authentication_method=HMAC_SHA256_METHOD,
        authenticator=authenticator,
        connect_timeout=SLOW_CONNECT,
        **more,
    )


# -- asyncio and trio -----------------------------------------------------------------


@ASYNC_LIBS
@pytest.mark.parametrize("kind", [Answers, AsyncAnswers], ids=["sync", "async"])
def test_connect_and_reauthenticate(
    broker: ThreadedBroker, nonces: Nonces, lib: str, kind: type[Answers]
) -> None:
    """The exchange of CONNECT answers the server's nonce; reauthenticate()
    runs it again on the live connection, which stays usable."""
    answers = kind()

    async def main() -> Reauthenticated:
        async with client_class(lib)(HOST, broker.port, **auth_options(answers)) as client:
            assert client.connected
            assert answers.challenges == nonces.issued[:1]
            result = await client.reauthenticate()
            assert answers.challenges == nonces.issued[:2]
            # The same connection carries on.
            await client.subscribe("auth/ok", qos=1)
            await client.publish("auth/ok", b"still here", qos=1)
            async for message in client.messages():
                assert message.payload == b"still here"
                break
            return result

    result = run(lib, main)
    assert isinstance(result, Reauthenticated)
    assert result.authentication_method == HMAC_SHA256_METHOD
    assert len(nonces.issued) == 2 and nonces.issued[0] != nonces.issued[1]


@ASYNC_LIBS
def test_wrong_secret_is_refused_at_once(broker: ThreadedBroker, lib: str) -> None:
    answers = Answers(b"wrong secret")

    async def main() -> float:
        started = time.monotonic()
        with pytest.raises(ConnectError) as error:
            async with client_class(lib)(HOST, broker.port, **auth_options(answers)):
                pass
        assert error.value.reason_code == ReasonCode.NOT_AUTHORIZED
        assert HMAC_SHA256_METHOD in str(error.value)
        return time.monotonic() - started

    assert run(lib, main) < PROMPT
    assert len(answers.challenges) == 1


@ASYNC_LIBS
def test_failed_reauthentication_raises_and_ends_the_connection(
    broker: ThreadedBroker, lib: str
) -> None:
    """The secret changed on the client's side: the server refuses the
    re-authentication with DISCONNECT 0x87 [MQTT-4.12.1-2]."""
    answers = Answers()

    async def main() -> None:
        async with client_class(lib)(HOST, broker.port, **auth_options(answers)) as client:
            answers.secret = b"rotated away"
            with pytest.raises(AuthenticationError) as error:
                await client.reauthenticate()
            assert error.value.reason_code == ReasonCode.NOT_AUTHORIZED
            assert "re-authentication failed" in str(error.value)
            assert not client.connected
            with pytest.raises(ConnectionLostError):
                await client.publish("auth/after", b"", qos=1)

    run(lib, main)
    assert len(answers.challenges) == 2


@ASYNC_LIBS
def test_refused_reauthentication_with_a_reconnect_policy(
    broker: ThreadedBroker, nonces: Nonces, lib: str
) -> None:
    """The refusal ends the connection; the client reconnects through the
    exchange of CONNECT, with what its authenticator answers by then. One
    re-authentication at a time."""
    answers = Answers()
    policy = ReconnectPolicy(initial=0.02, maximum=0.1)

    async def main() -> None:
        challenged, go = new_event(), new_event()

        async def held(challenge: AuthChallenged) -> bytes:
            if len(answers.challenges) == 1:  # the first re-authentication's
                challenged.set()
                await go.wait()
            return answers(challenge)

        options = auth_options(held, reconnect=policy, rng=random.Random(7))
        async with client_class(lib)(HOST, broker.port, **options) as client:
            async with task_group() as spawn:
                spawn(client.reauthenticate)
                await challenged.wait()  # under way
                with pytest.raises(ClientError, match="already under way"):
                    await client.reauthenticate()
                go.set()
            answers.secret = b"rotated away"
            with pytest.raises(AuthenticationError):
                await client.reauthenticate()
            answers.secret = SECRET
            # Held while offline, sent once the CONNECT exchange succeeded.
            ack = await client.publish("auth/again", b"", qos=1)
            assert ack is not None and client.connected

    run(lib, main)
    # CONNECT, two re-authentications, the reconnect's CONNECT (and any
    # attempt the reconnect made before the secret was put back).
    assert answers.challenges == nonces.issued and len(nonces.issued) >= 4


@ASYNC_LIBS
def test_reconnect_runs_the_exchange_again(
    broker: ThreadedBroker, nonces: Nonces, lib: str
) -> None:
    """A cut connection comes back through a fresh exchange (a new nonce,
    answered by the same authenticator)."""
    answers = Answers()
    policy = ReconnectPolicy(initial=0.02, maximum=0.1)

    async def main(proxy: CutProxy) -> list[ConnectionAccepted]:
        connects: list[ConnectionAccepted] = []
        cls = client_class(lib)
        options = auth_options(answers, reconnect=policy, rng=random.Random(5))
        async with cls(HOST, proxy.port, **options) as client:
            reconnected = new_event()

            def connected(event: ConnectionAccepted) -> None:
                connects.append(event)
                reconnected.set()

            client.core.on_connect.append(connected)
            proxy.cut()
            await reconnected.wait()
            ack = await client.publish("auth/reconnected", b"back", qos=1)
            assert ack is not None and ack.reason_code < 0x80
            assert client.connected
        return connects

    with CutProxy(broker.port) as proxy:
        connects = run(lib, main, proxy)
    assert len(connects) == 1
    assert answers.challenges == nonces.issued and len(nonces.issued) == 2


@ASYNC_LIBS
def test_local_failures_are_clear(broker: ThreadedBroker, lib: str) -> None:
    """No authenticator for a challenge, an authenticator that raises or
    answers nonsense: AuthenticationError at once, not a connect timeout."""
    cls = client_class(lib)

    def raises(challenge: AuthChallenged) -> bytes:
        raise KeyError("no key for alice")

    def nonsense(challenge: AuthChallenged) -> Any:
        return "not bytes"

    async def main() -> None:
        started = time.monotonic()
        with pytest.raises(AuthenticationError, match="no authenticator"):
            async with cls(HOST, broker.port, **auth_options(None)):
                pass
        with pytest.raises(AuthenticationError, match="authenticator failed") as error:
            async with cls(HOST, broker.port, **auth_options(raises)):
                pass
        assert isinstance(error.value.__cause__, KeyError)
        with pytest.raises(AuthenticationError, match="returned str"):
            async with cls(HOST, broker.port, **auth_options(nonsense)):
                pass
        assert time.monotonic() - started < PROMPT

    run(lib, main)


@ASYNC_LIBS
def test_an_answer_outlived_by_its_connection_is_cancelled(
    broker: ThreadedBroker, lib: str
) -> None:
    """The connection breaks while an async authenticator works: connect()
    fails at once and the authenticator's task is cancelled."""
    events: list[str] = []

    async def main(proxy: CutProxy) -> None:
        async def stuck(challenge: AuthChallenged) -> bytes:
            events.append("challenged")
            proxy.cut()
            try:
                if sniffio.current_async_library() == "trio":
                    await trio.sleep_forever()
                await asyncio.Event().wait()
            except BaseException:
                events.append("cancelled")
                raise
            return b""

        with pytest.raises(ConnectionLostError):
            async with client_class(lib)(HOST, proxy.port, **auth_options(stuck)):
                pass
        # Cancelled by the client, not by the end of the event loop.
        await sleep(0.05)
        assert events == ["challenged", "cancelled"]

    with CutProxy(broker.port) as proxy:
        run(lib, main, proxy)


@pytest.mark.parametrize("lib", ["asyncio", "trio", "threads"])
def test_arguments_are_checked(lib: str) -> None:
    cls = client_class(lib)
    with pytest.raises(ValueError, match="MQTT 5"):
        cls(HOST, authentication_method="X", version=ProtocolVersion.MQTT_3_1_1)
    with pytest.raises(ValueError, match="need an authentication_method"):
        cls(HOST, authenticator=Answers())
    with pytest.raises(ValueError, match="as arguments"):
        cls(
            HOST,
            authentication_method="X",
            connect_properties={"authentication_data": b"d"},
        )


@ASYNC_LIBS
def test_reauthenticate_needs_a_method(lib: str) -> None:
    async def main(port: int) -> None:
        async with client_class(lib)(HOST, port, connect_timeout=PROMPT) as client:
            with pytest.raises(ClientError, match="authentication_method"):
                await client.reauthenticate()

    with ThreadedBroker() as plain:
        run(lib, main, plain.port)


# -- threads --------------------------------------------------------------------------


def test_threads_connect_and_reauthenticate(broker: ThreadedBroker, nonces: Nonces) -> None:
    answers = Answers()
    with threads_adapter.Client(HOST, broker.port, **auth_options(answers)) as client:
        assert client.connected
        result = client.reauthenticate(timeout=PROMPT)
        assert result.authentication_method == HMAC_SHA256_METHOD
        ack = client.publish("auth/threads", b"ok", qos=1, timeout=PROMPT)
        assert ack is not None and ack.reason_code < 0x80
    assert answers.challenges == nonces.issued and len(nonces.issued) == 2


def test_threads_authenticator_runs_off_the_io_thread(broker: ThreadedBroker) -> None:
    """A blocking authenticator runs on a worker thread, not the I/O thread."""
    threads: list[threading.Thread] = []
    answers = Answers()

    def slow(challenge: AuthChallenged) -> bytes:
        threads.append(threading.current_thread())
        time.sleep(0.05)
        return answers(challenge)

    client = threads_adapter.Client(HOST, broker.port, **auth_options(slow))
    with client:
        assert client._thread is not None
        io_thread = client._thread
    assert len(threads) == 1 and threads[0] is not io_thread
    assert threads[0] is not threading.current_thread()


def test_threads_wrong_secret_and_failed_reauthentication(broker: ThreadedBroker) -> None:
    started = time.monotonic()
    with pytest.raises(threads_adapter.ConnectError) as refused:
        threads_adapter.Client(HOST, broker.port, **auth_options(Answers(b"wrong"))).connect(
            timeout=TIMEOUT
        )
    assert refused.value.reason_code == ReasonCode.NOT_AUTHORIZED
    assert time.monotonic() - started < PROMPT

    answers = Answers()
    with threads_adapter.Client(HOST, broker.port, **auth_options(answers)) as client:
        answers.secret = b"rotated away"
        with pytest.raises(threads_adapter.AuthenticationError) as failed:
            client.reauthenticate(timeout=PROMPT)
        assert failed.value.reason_code == ReasonCode.NOT_AUTHORIZED
        assert not client.connected


def test_threads_reconnect_runs_the_exchange_again(broker: ThreadedBroker, nonces: Nonces) -> None:
    answers = Answers()
    reconnected = threading.Event()
    policy = ReconnectPolicy(initial=0.02, maximum=0.1)
    with CutProxy(broker.port) as proxy:
        client = threads_adapter.Client(
            HOST, proxy.port, **auth_options(answers, reconnect=policy, rng=random.Random(6))
        )
        client.on_connect = lambda client, connack: reconnected.set()
        with client:
            reconnected.clear()
            proxy.cut()
            assert reconnected.wait(PROMPT)
            ack = client.publish("auth/threads/back", b"", qos=1, timeout=PROMPT)
            assert ack is not None
    assert answers.challenges == nonces.issued and len(nonces.issued) == 2


def test_threads_authenticator_is_not_async() -> None:
    async def answer(challenge: AuthChallenged) -> bytes:
        return b""

    with pytest.raises(TypeError, match="plain function"):
        threads_adapter.Client(HOST, authentication_method="X", authenticator=answer)
