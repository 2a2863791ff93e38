"""Helpers for the documentation tests (tests/test_doc_*.py): run the
examples under ``docs/examples/`` as a reader would.

- :func:`run_example`: a script in a child process, told where the broker is
  by the environment (``MQTT_HOST``, ``MQTT_PORT``, ...); its output.
- :class:`Server`: a long-running example, or ``python -m mqttproto broker``,
  read as it prints and stopped with a signal through its handle.

Every child process has a bounded run time.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from interop import HOST

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
#: Seconds an example may run; each one takes well under one.
RUN_TIMEOUT = 60.0
#: Seconds a server example may take to listen, and to stop.
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0


def child_env(**variables: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(variables)
    return env


def run_example(name: str, cwd: Path | None = None, **variables: str) -> str:
    """Run ``docs/examples/<name>``; its standard output (it must exit 0)."""
    path = EXAMPLES / name
    command = ["/bin/sh", str(path)] if name.endswith(".sh") else [sys.executable, str(path)]
    done = subprocess.run(
        command,
        env=child_env(**variables),
        cwd=cwd or ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert done.returncode == 0, f"{name} exited {done.returncode}:\n{done.stderr}"
    return done.stdout


class Server:
    """A long-running example (or ``python -m mqttproto broker``) in a child
    process: started, read as it prints, stopped with a signal."""

    def __init__(self, command: list[str], **variables: str) -> None:
        self.command = command
        self.env = child_env(**variables)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self._stderr: list[str] = []

    @classmethod
    def example(cls, name: str, **variables: str) -> Server:
        return cls([sys.executable, str(EXAMPLES / name)], **variables)

    def __enter__(self) -> Server:
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        return self

    def _read_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line.rstrip("\n"))
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def wait_for(self, pattern: str, count: int = 1) -> list[re.Match[str]]:
        """The first *count* lines matching *pattern*, as they are printed."""
        found: list[re.Match[str]] = []
        while len(found) < count:
            try:
                line = self.lines.get(timeout=START_TIMEOUT)
            except queue.Empty:
                line = None
            if line is None:
                self.stop(expect=None)
                pytest.fail(f"{self.command} printed no {pattern!r}; stderr:\n{self.stderr}")
            match = re.search(pattern, line)
            if match:
                found.append(match)
        return found

    def port(self) -> int:
        return int(self.wait_for(r"listening on (?:port |\S+:)(\d+)")[0].group(1))

    def stop(self, signum: int = signal.SIGTERM, expect: int | None = 0) -> int | None:
        """Send *signum*, wait (bounded; kill past it); check the exit status."""
        process = self.process
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        process.send_signal(signum)
        try:
            status = process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
            pytest.fail(f"{self.command} did not stop on signal {signum}")
        if expect is not None:
            assert status == expect, f"exit status {status}; stderr:\n{self.stderr}"
        return status

    def __exit__(self, *exc_info: object) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(STOP_TIMEOUT)


def broker_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mqttproto", "broker", "--host", HOST, "--port", "0", *args]


def at(port: int) -> dict[str, str]:
    """The environment that points an example at 127.0.0.1:*port*."""
    return {"MQTT_HOST": HOST, "MQTT_PORT": str(port)}
