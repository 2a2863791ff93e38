"""The bridge on asyncio: :class:`AsyncioBridge`, run by the asyncio ``BrokerServer``.

A bridge is two MQTT client connections built on the project's client
role, :class:`~mqttproto.client.ClientConnection`:

- the *remote link*, over TCP (or TLS) to the other broker: it subscribes
  to the ``in`` and ``both`` patterns there (MQTT 5: with No Local; MQTT
  3.1.1: the bridge flag tells mosquitto not to send its own messages back)
  and publishes what comes out of this broker;
- the *local link*, an in-process connection to this broker
  (:class:`._bridge_local.LocalLink`), an MQTT 5 session that persists
  (``clean_start`` false, the longest expiry) and subscribes, with No
  Local, to the ``out`` and ``both`` patterns: what the bridge publishes
  here never comes back to it, so ``both`` makes no loop.

The local link is open only while the remote one is: during an outage
the broker holds the QoS 1/2 messages for the bridge in its session
queue, which has the bounds of every session (``max_queued_messages``,
``max_queued_bytes``; a QoS 1/2 message past them is refused, 0x97 to an
MQTT 5 publisher, and counted in ``$SYS/broker/publish/messages/dropped``)
and is durable with ``--persist``; the broker delivers them, in order,
when the link returns. Each QoS 1/2 message is acknowledged on the side it
came from only once the other side has acknowledged it
(:class:`._bridge_state.Forwarding`), so a link that drops halfway loses
nothing. QoS 0 messages are forwarded while both links are up, and
dropped (counted) otherwise.

After a failure the bridge waits (``restart_timeout``, doubling with
jitter, :class:`._bridge_state.Backoff`), trying its addresses in turn. The
state is in the log (``mqttproto.bridge``), in :meth:`AsyncioBridge.status`
and, with ``notifications``, retained on the notification topic on both
brokers (``1``/``0``; the remote ``0`` is the bridge's will).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as _ssl
from collections.abc import Callable

from .._bridge_core import CONNECTED, BridgeCore
from .._bridge_state import Backoff
from ..bridge import BridgeConfig
from ..broker import Broker
from ..errors import LocalProtocolError, RemoteProtocolError
from ._bridge_local import LocalLink
from ._driver import Driver

__all__ = ["AsyncioBridge", "bridge_ssl_context"]

logger = logging.getLogger("mqttproto.bridge")

#: Seconds :meth:`AsyncioBridge.stop` waits for the remote connection to close.
_GOODBYE_TIMEOUT = 2.0


def bridge_ssl_context(config: BridgeConfig) -> _ssl.SSLContext | None:
    """The TLS context of the remote link (None: plain TCP).

    :raises OSError, ssl.SSLError: a certificate file cannot be read or used.
    """
    if not config.uses_tls:
        return None
    context = _ssl.create_default_context(cafile=config.cafile)
    if config.certfile is not None:
        context.load_cert_chain(config.certfile, config.keyfile)
    if config.insecure:
        # mosquitto's bridge_insecure: the chain is checked, the host name is not.
        context.check_hostname = False
    return context


class _RemoteProtocol(asyncio.Protocol):
    def __init__(self, bridge: AsyncioBridge) -> None:
        self._bridge = bridge
        #: Set once the transport is gone.
        self.lost = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self._bridge._remote_data(self, data)

    def eof_received(self) -> bool:
        self._bridge._remote_gone(self, "the remote broker closed the connection")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()
        why = f"connection lost: {exc}" if exc else "the remote broker closed the connection"
        self._bridge._remote_gone(self, why)


class AsyncioBridge(BridgeCore):
    """One bridge of an asyncio broker server: see the module's documentation.

    :param config: the bridge.
    :param broker: the local broker (for :meth:`Broker.publish` of the
        notifications and :meth:`Broker.subscriptions`).
    :param driver: the server's driver, which serves the local link.
    :param pump_soon: have the server pump (after a notification).
    :param peer_gone: tell the server a connection of its driver is gone.

    :raises OSError, ssl.SSLError: the TLS files cannot be used.
    """

    def __init__(
        self,
        config: BridgeConfig,
        *,
        broker: Broker,
        driver: Driver,
        pump_soon: Callable[[], None],
        peer_gone: Callable[[], None],
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(config, broker)
        self._driver = driver
        self._pump_soon = pump_soon
        self._peer_gone = peer_gone
        self._ssl = bridge_ssl_context(config)
        self._backoff = backoff or Backoff(config.restart_timeout, config.restart_timeout_max)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._protocol: _RemoteProtocol | None = None
        self._transport: asyncio.Transport | None = None
        self._link: LocalLink | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._ended: asyncio.Future[str] | None = None
        self._ready: asyncio.Future[None] | None = None

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        """Start connecting (in a task of the running loop)."""
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name=f"bridge {self.config.name}")

    async def stop(self) -> None:
        """Say goodbye on both links (``0`` on the notification topic), stop."""
        self._stopping = True
        protocol = self._protocol
        if self.state == CONNECTED and self.config.notifications:
            with contextlib.suppress(LocalProtocolError):
                self._remote.publish(self.config.notification_topic, b"0", qos=1, retain=True)
        if self._remote.state.value in ("connecting", "connected"):
            with contextlib.suppress(LocalProtocolError):
                self._remote.disconnect()
            self._remote_flush()
        if self._transport is not None:
            # Closed after its last bytes (the DISCONNECT), not aborted.
            self._transport.close()
            self._transport = self._protocol = None
        self._teardown("the broker is shutting down")
        self.state = "stopped"
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if protocol is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(protocol.lost.wait(), _GOODBYE_TIMEOUT)

    async def _run(self) -> None:
        config = self.config
        self.notify_local(b"0")
        await self._prepare_session()
        index = 0
        while not self._stopping:
            host, port = config.addresses[index]
            self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            self.state = "connecting"
            connected = False
            try:
                connected = await self._attempt(host, port)
                reason = self.last_error or "closed"
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, _ssl.SSLError) as exc:
                reason = self.last_error = f"cannot connect to {self.address}: {exc or 'timed out'}"
            except Exception as exc:  # a bug: logged, and the bridge carries on
                logger.exception("bridge %s: unexpected error", config.name)
                reason = self.last_error = f"internal error: {exc!r}"
            self._teardown(reason)
            if self._stopping:
                return
            self.state = "down"
            if connected:
                self._backoff.reset()
                logger.warning("bridge %s: link to %s down: %s", config.name, self.address, reason)
            else:
                logger.warning("bridge %s: %s", config.name, reason)
                index = (index + 1) % len(config.addresses)
                if index and not connected:
                    continue  # the next address at once; the back-off after a full round
            self._check_outage_queue()
            delay = self._backoff.next_delay()
            logger.info("bridge %s: next attempt in %.1f s", config.name, delay)
            await asyncio.sleep(delay)

    async def _attempt(self, host: str, port: int) -> bool:
        """Connect both links and wait until one ends; whether the remote accepted."""
        loop = self._loop
        assert loop is not None
        config = self.config
        self.last_error = None
        self._ended = loop.create_future()
        protocol = _RemoteProtocol(self)
        async with asyncio.timeout(config.connect_timeout):
            transport, _ = await loop.create_connection(
                lambda: protocol,
                host,
                port,
                ssl=self._ssl,
                server_hostname=host if self._ssl is not None else None,
            )
        assert isinstance(transport, asyncio.Transport)
        self._protocol, self._transport = protocol, transport
        if self._ended.done():
            return False
        self.connect_remote()
        self._remote_flush()
        if not await self._open_local():
            return False
        reason = await self._ended
        self.last_error = self.last_error or reason
        return self._accepted_this_time

    async def _prepare_session(self) -> None:
        """Make sure the bridge's session exists here, subscribed, before the
        remote broker was ever reached: from the start, what is published
        for it waits in that session's queue."""
        loop = self._loop
        assert loop is not None
        self._ended = loop.create_future()
        try:
            if not await self._open_local():
                logger.warning("bridge %s: %s", self.config.name, self.last_error)
        finally:
            self._teardown("session prepared")
            self.last_error = None

    async def _open_local(self) -> bool:
        loop = self._loop
        assert loop is not None
        link = LocalLink(
            self._driver,
            loop,
            self._local,
            self.config.name,
            on_input=self._local_input,
            on_gone=self._peer_gone,
        )
        self._link = link
        if not link.open(self.config.local_username):
            self.last_error = "the local broker did not open the bridge's connection"
            return False
        self._ready = ready = loop.create_future()
        self.connect_local()
        link.send()
        ended = self._ended
        assert ended is not None
        done, _ = await asyncio.wait(
            {ready, ended}, timeout=self.config.connect_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if not done:
            self.last_error = "the local broker did not answer the bridge's CONNECT in time"
            return False
        if ready not in done or ready.exception() is not None:
            if ready.done() and ready.exception() is not None:
                self.last_error = str(ready.exception())
            return False
        return True

    def _teardown(self, reason: str) -> None:
        """Both links closed; the notification says ``0``."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport, self._transport, self._protocol = self._transport, None, None
        if transport is not None:
            transport.abort()
        now = self._now()
        if not self._remote.closed and self._remote.state.value != "idle":
            self._remote.receive_eof(now)
        self.remote_events()
        link, self._link = self._link, None
        if link is not None:
            self.close_local()
            link.close()
        if self.state == CONNECTED:
            self.notify_local(b"0")
        ready = self._ready
        if ready is not None and not ready.done():
            ready.set_exception(ConnectionError(reason))
            ready.exception()  # retrieved: nobody else may wait for it

    def _end(self, reason: str) -> None:
        ended = self._ended
        if ended is not None and not ended.done():
            ended.set_result(reason)

    def _now(self) -> float:
        loop = self._loop
        return loop.time() if loop is not None else 0.0

    # -- notifications and the outage queue -----------------------------------------

    def _published_locally(self) -> None:
        self._pump_soon()

    def _local_ready(self) -> None:
        ready = self._ready
        if ready is not None and not ready.done():
            ready.set_result(None)

    def _local_failed(self, why: str) -> None:
        ready = self._ready
        if ready is not None and not ready.done():
            ready.set_exception(ConnectionError(why))

    def _check_outage_queue(self) -> None:
        """Log once per outage when the broker's queue for the bridge is full."""
        client_id = self.config.local_client_id
        limit = self._broker.config.max_queued_messages
        for session in self._broker.sessions():
            if session.client_id == client_id and session.queued >= limit:
                if not self._queue_full_logged:
                    self._queue_full_logged = True
                    logger.warning(
                        "bridge %s: %d messages wait for the remote broker, the limit "
                        "(max_queued_messages): newer QoS 1/2 messages are refused and "
                        "counted in $SYS/broker/publish/messages/dropped",
                        self.config.name,
                        session.queued,
                    )
                return
        self._queue_full_logged = False

    # -- the remote link --------------------------------------------------------------

    def _remote_data(self, protocol: _RemoteProtocol, data: bytes) -> None:
        if protocol is not self._protocol:
            return
        try:
            self._remote.receive_data(data, self._now())
        except RemoteProtocolError as exc:
            self.last_error = f"protocol error from the remote broker: {exc}"
        self.remote_events()
        self._remote_flush()
        self._local_flush()

    def _remote_gone(self, protocol: _RemoteProtocol, why: str) -> None:
        if protocol is not self._protocol:
            return
        if self.last_error is None:
            self.last_error = why
        self._remote.receive_eof(self._now())
        self.remote_events()
        self._end(why)

    def _remote_flush(self) -> None:
        data = self._remote.data_to_send(self._now())
        transport = self._transport
        if transport is not None:
            if data:
                transport.write(data)
            if self._remote.closed:
                transport.close()
        self._arm_timer()

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self._remote.get_timer()
        loop = self._loop
        if deadline is not None and loop is not None and self._transport is not None:
            self._timer = loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._remote.handle_timer(self._now())
        self.remote_events()
        self._remote_flush()
        self._local_flush()

    # -- the local link ---------------------------------------------------------------

    def _local_input(self) -> None:
        self.local_events()
        self._local_flush()
        self._remote_flush()

    def _local_flush(self) -> None:
        link = self._link
        if link is not None:
            link.send()
