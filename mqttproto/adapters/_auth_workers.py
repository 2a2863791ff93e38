"""Deferred authentications on worker threads, for the three broker servers.

A password hash takes tens of milliseconds (scrypt at ``mqttproto passwd``'s
cost); computed on the event loop, a burst of CONNECTs would stall every
connected client. So each server sets ``Broker.inline_authentication`` to
False, and after each flush hands :meth:`Broker.authentication_jobs
<mqttproto.broker.Broker.authentication_jobs>` to a small
:class:`~concurrent.futures.ThreadPoolExecutor`; a worker runs the job and
passes the result back to the loop's thread (``call_soon_threadsafe`` or the
server's equivalent), where :meth:`Broker.finish_authentication
<mqttproto.broker.Broker.finish_authentication>` takes it and the server
flushes.

The pool is small and bounded: :func:`default_auth_workers` threads, and
never more queued work than the broker's ``max_pending_authentications``.
hashlib's scrypt and PBKDF2 release the GIL while they compute, so a worker
uses a core of its own; one core is left to the event loop.

Each failure the broker counts is logged here, on the ``mqttproto.auth``
logger, with its address, the number of failures and the delay.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import os
from collections.abc import Callable

from ..auth import AuthResult
from ..broker import AuthenticationJob, Broker
from ..enums import ReasonCode

__all__ = ["AuthWorkers", "default_auth_workers"]

logger = logging.getLogger("mqttproto.auth")

#: At most this many workers by default, however many cores there are:
#: authentication is bounded work, and the loop needs the rest.
MAX_DEFAULT_WORKERS = 4


def default_auth_workers() -> int:
    """Worker threads for authentication by default: the CPUs this process
    may use, less one for the event loop; at least 1 and at most
    :data:`MAX_DEFAULT_WORKERS` (a 2-core machine gets 1)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_WORKERS, cpus - 1))


def check_auth_workers(workers: int | None) -> int:
    """The number of workers to use for ``auth_workers`` (None: the default).

    :raises ValueError: not positive.
    """
    if workers is None:
        return default_auth_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"auth_workers must be a positive integer, not {workers!r}")
    return workers


class AuthWorkers:
    """Runs one broker's authentication jobs on a pool of worker threads.

    :param broker: the core; :meth:`start` makes it hand its jobs out.
    :param workers: the pool's size.
    :param call_soon_threadsafe: schedules a callable on the loop's thread,
        from any thread; may raise :class:`RuntimeError` once the loop is gone.
    :param clock: the loop's clock (the ``now`` of every broker call).
    :param answered: called on the loop's thread after each answer, to flush.
    """

    def __init__(
        self,
        broker: Broker,
        workers: int,
        *,
        call_soon_threadsafe: Callable[[Callable[[], None]], object],
        clock: Callable[[], float],
        answered: Callable[[], None],
    ) -> None:
        self.broker = broker
        self.workers = workers
        self._call_soon = call_soon_threadsafe
        self._clock = clock
        self._answered = answered
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = False

    def start(self) -> None:
        """From now on the broker hands deferred authentications to us."""
        self.broker.inline_authentication = False
        self._pool = concurrent.futures.ThreadPoolExecutor(
            self.workers, thread_name_prefix="mqttproto-auth"
        )

    def pump(self) -> None:
        """Log the failures counted and start the jobs handed out (loop thread)."""
        broker = self.broker
        for failure in broker.failed_authentications():
            logger.warning(
                "authentication failed from %s: %d failure%s, next authentication from "
                "there delayed %.1f s",
                failure.address,
                failure.failures,
                "" if failure.failures == 1 else "s",
                failure.delay,
            )
        jobs = broker.authentication_jobs()
        pool = self._pool
        if not jobs or pool is None:
            return
        for job in jobs:
            try:
                pool.submit(self._run, job)
            except RuntimeError:
                # The pool was shut down (the server is closing): its
                # connection goes with it.
                return

    def close(self) -> None:
        """Stop taking jobs; a job already running finishes on its own thread,
        and its answer is dropped."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    # -- a worker thread ----------------------------------------------------------

    def _run(self, job: AuthenticationJob) -> None:
        result: AuthResult | None = None
        # A connection gone meanwhile (a timeout, the client hung up) is not
        # worth a hash: its answer would be dropped.
        if not job.abandoned:
            try:
                result = job.run()
            except Exception:
                logger.exception("the authenticator raised for connection %d", job.conn)
                result = AuthResult.reject(ReasonCode.UNSPECIFIED_ERROR)
        try:
            self._call_soon(functools.partial(self._finish, job, result))
        except RuntimeError:
            # The loop is gone: so is the connection.
            return

    # -- back on the loop's thread ---------------------------------------------------

    def _finish(self, job: AuthenticationJob, result: AuthResult | None) -> None:
        if self._closed:
            # The server has shut the broker down: nobody waits any more.
            return
        if result is None:
            # Not run (abandoned): any answer releases it, and is dropped.
            result = AuthResult.reject(ReasonCode.UNSPECIFIED_ERROR)
        try:
            self.broker.finish_authentication(job, result, self._clock())
        except Exception:
            logger.exception(
                "the broker core raised in finish_authentication() for connection %d", job.conn
            )
        self._answered()
