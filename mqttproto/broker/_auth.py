"""Authentication for the :class:`~mqttproto.broker.Broker`: deferred answers,
the bound on pending ones and the delay after failures, without I/O.

An authenticator may answer a CONNECT or an AUTH packet with a
:class:`~mqttproto.auth.DeferredAuthResult`: a function that computes the
answer and takes time (a password hash). The broker then holds the
connection and turns the function into an :class:`AuthenticationJob`. A
driver that runs jobs itself (the broker servers, on a worker thread) sets
``Broker.inline_authentication`` to False, takes them with
:meth:`Authentication.authentication_jobs` and answers each with
:meth:`Authentication.finish_authentication`; any other driver gets them
computed at once, where they arise, as before.

Two limits keep a flood of CONNECTs cheap for the broker:

- ``max_pending_authentications``: past it a CONNECT whose answer would be
  deferred is refused at once with 0x89 *Server busy* (MQTT 3.x: return code
  3 *Server unavailable*), before any hash is computed.
- A delay after failures, per source address (``Broker.open_connection(
  address=...)``): each refused authentication raises the address's failure
  score by one (the score falls by one every ``auth_failure_decay``
  seconds); an authentication from an address with a score *s* starts no
  sooner than ``auth_failure_delay * (2**s - 1)`` seconds (at most
  ``auth_failure_max_delay``) after the previous start or failure there.
  Connections that must wait queue per address, in order; the table of
  addresses holds at most ``auth_failure_addresses`` entries.

Nothing here reads a clock or logs: time comes in as ``now``, and each
counted failure is reported as a :class:`FailedAuthentication` for the
driver to log.
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import itertools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from ..auth import AuthResult, DeferredAuthResult
from ..config import BrokerConfig
from ..errors import RemoteProtocolError

__all__ = [
    "AuthenticatingConnection",
    "Authentication",
    "AuthenticationJob",
    "FailedAuthentication",
    "FailureDelays",
]

#: How many :class:`FailedAuthentication` reports wait for a driver that
#: does not collect them (the oldest go first).
MAX_FAILURE_REPORTS = 1024

#: An authenticator call still to make: returns an AuthResult or a DeferredAuthResult.
Ask = Callable[[], Any]


class AuthenticatingConnection(Protocol):
    """What the bookkeeping here needs of a broker connection."""

    id: int
    #: The source address (see ``Broker.open_connection``), or None.
    address: str | None
    #: The connection's end was handled (closed, lost, taken over).
    finished: bool
    #: The job the connection waits for, if any.
    auth_job: AuthenticationJob | None


class AuthenticationJob:
    """A deferred authentication the broker is waiting for.

    Got from :meth:`Broker.authentication_jobs
    <mqttproto.broker.Broker.authentication_jobs>`. Call :meth:`run` on any
    thread, then give its result to :meth:`Broker.finish_authentication
    <mqttproto.broker.Broker.finish_authentication>` on the thread that
    drives the broker.

    :ivar conn: the id of the connection that waits (from ``open_connection``).
    :ivar address: that connection's source address, or None.
    """

    __slots__ = ("_connection", "_deferred", "address", "conn")

    def __init__(self, connection: AuthenticatingConnection, deferred: DeferredAuthResult) -> None:
        self._connection = connection
        self._deferred = deferred
        self.conn = connection.id
        self.address = connection.address

    def run(self) -> AuthResult:
        """Compute the answer: the authenticator's deferred function.

        Safe on any thread, and meant for a worker thread: it may take tens
        of milliseconds (hashlib's scrypt and PBKDF2 release the GIL while
        they work). Raises whatever the function raises.
        """
        return self._deferred.compute()

    @property
    def abandoned(self) -> bool:
        """Whether the broker no longer waits for the answer (the connection
        ended, by a timeout, a close or a shutdown). Such a job need not run;
        :meth:`Broker.finish_authentication
        <mqttproto.broker.Broker.finish_authentication>` drops its answer.
        Safe to read on any thread."""
        connection = self._connection
        return connection.finished or connection.auth_job is not self

    def __repr__(self) -> str:
        return f"AuthenticationJob(conn={self.conn}, address={self.address!r})"


@attrs.frozen
class FailedAuthentication:
    """A refused authentication, as the failure delay counted it (for the log).

    :ivar address: what the failure was counted against: the connection's
        address, an IPv6 address as its /64 network.
    :ivar failures: the failures counted there since it was last clear of
        them (this one included).
    :ivar delay: seconds the next authentication from there waits, from now.
    """

    address: str
    failures: int
    delay: float


class _Record:
    """One address's failures: the decaying score and when the next start may be."""

    __slots__ = ("failures", "next_start", "score", "updated")

    def __init__(self) -> None:
        self.score = 0.0
        self.updated = 0.0
        self.failures = 0
        self.next_start = -math.inf


class FailureDelays:
    """The per-address delay after failed authentications, in bounded memory.

    :param delay: seconds after one failure (score 1); each further failure
        doubles the delay plus the first one (``delay * (2**score - 1)``).
    :param max_delay: the longest delay; the score stops growing there, so
        an address is clear again ``decay`` times that score after its last
        failure.
    :param decay: seconds for the score to fall by one.
    :param capacity: the most addresses remembered; when full, the one whose
        last failure is oldest is forgotten first.
    """

    def __init__(self, delay: float, max_delay: float, decay: float, capacity: int) -> None:
        self.delay = delay
        self.max_delay = max_delay
        self.decay = decay
        self.capacity = capacity
        self._max_score = math.log2(max_delay / delay + 1)
        # Oldest failure first: a failure moves its address to the end.
        self._table: dict[str, _Record] = {}

    def __len__(self) -> int:
        return len(self._table)

    @staticmethod
    def key(address: str) -> str:
        """What failures are counted against: an IPv6 address's /64 network
        (one host usually has a whole /64), any other address as it is."""
        with contextlib.suppress(ValueError):
            ip = ipaddress.ip_address(address)
            if isinstance(ip, ipaddress.IPv6Address):
                if ip.ipv4_mapped is not None:
                    return str(ip.ipv4_mapped)
                return str(ipaddress.IPv6Network((ip, 64), strict=False))
        return address

    def _score(self, record: _Record, now: float) -> float:
        return max(0.0, record.score - (now - record.updated) / self.decay)

    def _delay_for(self, score: float) -> float:
        if score >= self._max_score:
            return self.max_delay
        return min(self.max_delay, self.delay * (math.pow(2.0, score) - 1.0))

    def _current(self, key: str, now: float) -> _Record | None:
        """The record of ``key``, dropped (None) if it has nothing left to say."""
        record = self._table.get(key)
        if record is not None and record.next_start <= now and self._score(record, now) == 0.0:
            del self._table[key]
            return None
        return record

    def next_start(self, key: str, now: float) -> float:
        """The earliest time an authentication from ``key`` may start."""
        record = self._current(key, now)
        return now if record is None else max(now, record.next_start)

    def started(self, key: str, now: float) -> None:
        """An authentication from ``key`` starts: the next one waits its delay."""
        record = self._current(key, now)
        if record is not None:
            record.next_start = max(
                record.next_start, now + self._delay_for(self._score(record, now))
            )

    def failed(self, key: str, now: float) -> FailedAuthentication:
        """An authentication from ``key`` was refused: count it."""
        record = self._current(key, now)
        if record is None:
            self._make_room(now)
            record = _Record()
        else:
            del self._table[key]
        record.score = min(self._max_score, self._score(record, now) + 1.0)
        record.updated = now
        record.failures += 1
        delay = self._delay_for(record.score)
        record.next_start = max(record.next_start, now + delay)
        self._table[key] = record
        return FailedAuthentication(key, record.failures, delay)

    def _make_room(self, now: float) -> None:
        table = self._table
        # The front holds the oldest failures: the likeliest to be over.
        for key in list(itertools.islice(table, 8)):
            self._current(key, now)
        while len(table) >= self.capacity:
            del table[next(iter(table))]


class Authentication:
    """The authentication half of :class:`~mqttproto.broker.Broker`: asking
    the authenticator, deferred jobs, the pending bound and failure delays."""

    config: BrokerConfig
    authenticator: Any
    _dirty: dict[int, None]

    #: Whether a deferred authentication is computed at once, where it
    #: arises (True, the default), or handed out by
    #: :meth:`authentication_jobs` for the driver to run (False).
    inline_authentication: bool = True

    if TYPE_CHECKING:

        def _tick(self, now: float) -> None: ...

        def _push_timer(self, when: float, kind: str, key: Any) -> None: ...

        def _authenticated(self, conn: Any, result: Any, now: float) -> None:
            """Act on the authenticator's answer for ``conn``."""

        def _refuse_busy(self, conn: Any, now: float) -> None:
            """Too many authentications are pending: refuse ``conn`` with 0x89."""

        def _process(self, conn: Any, now: float) -> None:
            """Act on what ``conn`` reports now that it was answered."""

    def _setup_authentication(self) -> None:
        config = self.config
        self.inline_authentication = True
        #: Jobs not yet handed out, oldest first.
        self._auth_queue: list[AuthenticationJob] = []
        #: Jobs not yet answered, handed out or not, by connection id.
        self._auth_pending: dict[int, AuthenticationJob] = {}
        #: Per failing address, the connections whose CONNECT waits its turn.
        self._auth_waiting: dict[str, collections.deque[tuple[AuthenticatingConnection, Ask]]] = {}
        self._auth_failures: collections.deque[FailedAuthentication] = collections.deque(
            maxlen=MAX_FAILURE_REPORTS
        )
        self._auth_delays: FailureDelays | None = None
        if config.auth_failure_delay is not None:
            self._auth_delays = FailureDelays(
                config.auth_failure_delay,
                config.auth_failure_max_delay,
                config.auth_failure_decay,
                config.auth_failure_addresses,
            )

    # -- the driver's API -----------------------------------------------------------

    def authentication_jobs(self) -> list[AuthenticationJob]:
        """The deferred authentications to run now (each is handed out once).

        Only with :attr:`inline_authentication` set to False, which a driver
        does before it feeds any data when it runs the jobs itself (the
        asyncio, trio and threads servers do, on a worker thread); otherwise
        deferred authentications are computed at once and this stays empty.
        Call it after :meth:`receive_data`, :meth:`handle_timer` and
        :meth:`finish_authentication`, as :meth:`flush`. Jobs whose
        connection has ended meanwhile are left out.

        Each job's connection waits, reading nothing more from its client
        [MQTT-3.1.4-5] (a re-authentication lets other packets flow, MQTT 5.0
        section 4.12.1), until :meth:`finish_authentication` brings the
        answer or ``connect_timeout`` runs out. At most
        ``max_pending_authentications`` jobs wait at once: past that a
        CONNECT is refused with 0x89 *Server busy* (3.x: return code 3).
        """
        queue = self._auth_queue
        if not queue:
            return []
        jobs = [job for job in queue if not job.abandoned]
        queue.clear()
        return jobs

    def finish_authentication(self, job: AuthenticationJob, result: AuthResult, now: float) -> None:
        """The answer of a job from :meth:`authentication_jobs`: what
        ``job.run()`` returned, or, if it raised, a refusal such as
        ``AuthResult.reject(ReasonCode.UNSPECIFIED_ERROR)``.

        The broker then goes on as if the authenticator had answered at once:
        CONNACK (and the input the client sent meanwhile), an AUTH
        challenge, a refusal, or DISCONNECT for a failed re-authentication
        [MQTT-4.12.1-2]. A failure counts towards the address's delay. The
        answer of an abandoned job (its connection ended) is dropped, as is
        a second answer to the same job. Collect output with :meth:`flush`.
        """
        if not isinstance(job, AuthenticationJob):
            raise TypeError(f"expected an AuthenticationJob, not {job!r}")
        connection = job._connection
        if self._auth_pending.get(connection.id) is job:
            del self._auth_pending[connection.id]
        if job.abandoned:
            return
        self._tick(now)
        self._dirty[connection.id] = None
        with contextlib.suppress(RemoteProtocolError):
            self._answered(connection, result, now)
        self._process(connection, now)

    def failed_authentications(self) -> list[FailedAuthentication]:
        """The failures counted since the last call, for the log (the broker
        itself never logs). At most 1,024 wait; older ones are dropped. Only
        connections opened with an ``address`` are counted."""
        reports = list(self._auth_failures)
        self._auth_failures.clear()
        return reports

    # -- for the broker's connection handling ----------------------------------------

    def _authenticate(
        self, conn: AuthenticatingConnection, ask: Ask, now: float, *, connect: bool
    ) -> None:
        """Ask the authenticator (``ask``) for ``conn``; the answer reaches
        ``conn._authenticated`` now or later. A CONNECT (``connect``) from an
        address with recent failures waits its turn first."""
        delays = self._auth_delays
        if connect and delays is not None and conn.address is not None:
            key = delays.key(conn.address)
            waiting = self._auth_waiting.get(key)
            start = delays.next_start(key, now)
            if waiting is not None or start > now:
                if waiting is None:
                    waiting = self._auth_waiting[key] = collections.deque()
                    self._push_timer(start, "auth", key)
                waiting.append((conn, ask))
                return
            delays.started(key, now)
        self._ask(conn, ask, now, connect=connect)

    def _authentication_timer(self, key: str, now: float) -> None:
        """The failure delay of ``key`` is over: start the next waiting CONNECT."""
        waiting = self._auth_waiting.get(key)
        delays = self._auth_delays
        if waiting is None or delays is None:
            return
        while waiting and waiting[0][0].finished:
            waiting.popleft()
        if not waiting:
            del self._auth_waiting[key]
            return
        start = delays.next_start(key, now)
        if start > now:
            self._push_timer(start, "auth", key)
            return
        conn, ask = waiting.popleft()
        delays.started(key, now)
        if waiting:
            # Armed before asking: whatever the authenticator does, the
            # queue moves on.
            self._push_timer(delays.next_start(key, now), "auth", key)
        else:
            del self._auth_waiting[key]
        self._dirty[conn.id] = None
        with contextlib.suppress(RemoteProtocolError):
            self._ask(conn, ask, now, connect=True)
        self._process(conn, now)

    # -- internals ----------------------------------------------------------------------

    def _ask(self, conn: AuthenticatingConnection, ask: Ask, now: float, *, connect: bool) -> None:
        result = ask()
        if isinstance(result, DeferredAuthResult):
            if self.inline_authentication:
                result = result.compute()
            else:
                pending = self._auth_pending
                limit = self.config.max_pending_authentications
                if len(pending) >= limit:
                    for conn_id in [i for i, job in pending.items() if job.abandoned]:
                        del pending[conn_id]
                if len(pending) >= limit:
                    # Refused before any work is done: a flood of CONNECTs
                    # costs no hashes.
                    self._refuse_busy(conn, now)
                    return
                job = AuthenticationJob(conn, result)
                pending[conn.id] = job
                self._auth_queue.append(job)
                conn.auth_job = job
                return
        self._answered(conn, result, now)

    def _answered(self, conn: AuthenticatingConnection, result: Any, now: float) -> None:
        delays = self._auth_delays
        if delays is not None and conn.address is not None and result.reason_code >= 0x80:
            self._auth_failures.append(delays.failed(delays.key(conn.address), now))
        conn.auth_job = None
        self._authenticated(conn, result, now)
