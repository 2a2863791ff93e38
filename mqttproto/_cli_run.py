"""Running the coroutine of ``mqttproto pub``, ``sub`` or ``rr``: its exit
status, SIGINT/SIGTERM, and the last guards of "never a traceback".

- A :class:`~._cli_errors.CommandError` is printed (one line) and its status
  returned.
- An exception inside an asyncio callback (a protocol's, say) would be
  logged by asyncio with its traceback; it is kept instead, and names the
  cause if connecting then times out.
- Standard output closed by its reader (``mqttproto sub ... | head -1``):
  the command ends quietly, as mosquitto_sub, which SIGPIPE ends.
- Anything else is a bug: still one line, that says so.

And how a long-running command (the broker) sets up the garbage collector:
:func:`tune_collector`.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
from collections.abc import Coroutine
from typing import Any

from ._cli_errors import CommandError

__all__ = ["GC_THRESHOLD", "run_client_command", "tune_collector"]

#: The broker's first collector threshold: Python's 700 runs the youngest
#: generation every few messages of a QoS 1 stream (docs/performance.rst).
GC_THRESHOLD = 10_000


def tune_collector(threshold: int) -> None:
    """Freeze what start-up made (modules, classes, the configuration), so that
    full collections no longer walk it, and run the youngest generation every
    ``threshold`` allocations of objects the collector tracks.

    Only the reference cycles the collector finds are affected: objects
    without cycles are freed as soon as they are dropped, frozen or not.
    """
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(threshold, second, third)


def _quiet_stdout() -> None:
    """Point standard output at /dev/null: the interpreter's last flush of a
    closed pipe would print "Exception ignored" otherwise."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def run_client_command(main: Coroutine[Any, Any, int]) -> int:
    """Run a command's coroutine; SIGINT/SIGTERM end it cleanly with status 0."""
    problems: list[BaseException] = []

    def keep(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, BaseException):
            problems.append(exc)

    async def guarded() -> int:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(keep)
        task = asyncio.current_task()
        assert task is not None
        stopped = []

        def stop() -> None:
            stopped.append(True)
            task.cancel()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop)
        try:
            return await main
        except asyncio.CancelledError:
            if stopped:
                return 0
            raise
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    try:
        return asyncio.run(guarded())
    except CommandError as exc:
        if exc.timed_out and problems:
            exc = CommandError(f"Error: {problems[0]}")
        print(exc, file=sys.stderr)
        return exc.status
    except BrokenPipeError:
        _quiet_stdout()
        return 128 + signal.SIGPIPE
    except Exception as exc:
        print(
            f"Error: unexpected {type(exc).__name__}: {exc} (a bug in mqttproto; please report it)",
            file=sys.stderr,
        )
        return 1
