"""Helpers for tests against other MQTT implementations (mosquitto, paho-mqtt).

Import with ``from interop import ...`` (pytest puts ``tests/`` on ``sys.path``).

A missing peer skips the test with the reason, unless the environment variable
``MQTTPROTO_REQUIRE_INTEROP`` is set (CI sets it after installing the peers), in
which case the test fails: a silently skipped interop suite proves nothing.

Everything here listens on and connects to 127.0.0.1 only, and every wait is
bounded in both time and number of attempts.
"""

from __future__ import annotations

import importlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import types
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

HOST = "127.0.0.1"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
MOSQUITTO_SUB = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"

#: How long a broker may take to accept connections, and how often to look.
START_TIMEOUT = 10.0
POLL_INTERVAL = 0.05


def interop_required() -> bool:
    """Whether missing peers fail the tests instead of skipping them."""
    return bool(os.environ.get("MQTTPROTO_REQUIRE_INTEROP"))


def require_peer(name: str, path_or_module: str) -> None:
    """Skip (or, with ``MQTTPROTO_REQUIRE_INTEROP`` set, fail) if a peer is missing.

    :param name: the peer's name for the message, e.g. ``"mosquitto"``.
    :param path_or_module: an executable's path (contains ``/``) or an importable
        module name (``"paho.mqtt.client"``).
    """
    if "/" in path_or_module:
        present = os.path.isfile(path_or_module) and os.access(path_or_module, os.X_OK)
        what = f"executable {path_or_module}"
    else:
        try:
            importlib.import_module(path_or_module)
        except ImportError:
            present = False
        else:
            present = True
        what = f"Python module {path_or_module}"
    if present:
        return
    reason = f"interop peer {name} is not available ({what} not found)"
    if interop_required():
        pytest.fail(f"{reason}, and MQTTPROTO_REQUIRE_INTEROP is set")
    pytest.skip(reason)


def import_paho() -> types.ModuleType:
    """``paho.mqtt.client``, or skip/fail as :func:`require_peer` does."""
    require_peer("paho-mqtt", "paho.mqtt.client")
    return importlib.import_module("paho.mqtt.client")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(process: subprocess.Popen[Any], timeout: float = 5.0) -> int:
    """SIGTERM, a bounded wait, SIGKILL if it overruns; the exit status."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
    return process.returncode


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=POLL_INTERVAL * 4):
            return True
    except OSError:
        return False


class MosquittoBroker:
    """A mosquitto process on 127.0.0.1 for the duration of a ``with`` block.

    ::

        with MosquittoBroker(extra_config=["password_file /path/pw"]) as broker:
            connect_to(broker.host, broker.port)

    The configuration file, the log and anything in *files* live in a temporary
    directory (or *directory*). The process is started without a shell, and on
    exit terminated through its own handle (terminate, bounded wait, kill).

    :param extra_config: extra ``mosquitto.conf`` lines after the listener.
    :param allow_anonymous: the ``allow_anonymous`` setting.
    :param directory: where to write files; a fresh temporary directory if None.
    :param port: the port to listen on (a restart keeps it); None: a free one.
    """

    def __init__(
        self,
        extra_config: Iterable[str] = (),
        *,
        allow_anonymous: bool = True,
        directory: Path | None = None,
        port: int | None = None,
    ) -> None:
        self.extra_config = list(extra_config)
        self.allow_anonymous = allow_anonymous
        self.host = HOST
        #: The port asked for (None: a free one at each start).
        self._fixed_port = port
        self.port = 0
        self._directory = directory
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self._saved_log = ""

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def log(self) -> str:
        """Everything mosquitto has logged so far."""
        if self.log_path is None or not self.log_path.exists():
            return self._saved_log
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def __enter__(self) -> MosquittoBroker:
        require_peer("mosquitto", MOSQUITTO)
        if self._directory is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="mqttproto-mosquitto-")
            directory = Path(self._tempdir.name)
        else:
            directory = self._directory
        self.port = free_port() if self._fixed_port is None else self._fixed_port
        config = [
            f"listener {self.port} {HOST}",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            "persistence false",
            "log_dest stderr",
            "log_type all",
        ]
        if os.getuid() == 0:
            # As root, mosquitto drops to the "mosquitto" user, which could not
            # read files in our private temporary directory; stay as we are.
            config.append(f"user {pwd.getpwuid(os.getuid()).pw_name}")
        config_path = directory / "mosquitto.conf"
        config_path.write_text("\n".join([*config, *self.extra_config, ""]), encoding="utf-8")
        self.log_path = directory / "mosquitto.log"
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [MOSQUITTO, "-c", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_until_ready()
        except BaseException:
            self._stop()
            raise
        return self

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        for _ in range(int(START_TIMEOUT / POLL_INTERVAL) + 1):
            if self._process.poll() is not None:
                pytest.fail(
                    f"mosquitto exited with status {self._process.returncode} "
                    f"before accepting connections; its log:\n{self.log()}"
                )
            if _accepts_connections(self.port):
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_INTERVAL)
        pytest.fail(
            f"mosquitto did not accept connections on {HOST}:{self.port} within "
            f"{START_TIMEOUT} s; its log:\n{self.log()}"
        )

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process)
        if self._tempdir is not None:
            # Keep the log readable after its directory is gone.
            self._saved_log = self.log()
            self._tempdir.cleanup()
            self._tempdir = None

    def __exit__(self, *exc_info: object) -> None:
        self._stop()


def run_mosquitto_client(
    executable: str, args: Sequence[str], *, timeout: float = 10.0
) -> subprocess.CompletedProcess[str]:
    """Run ``mosquitto_pub``/``mosquitto_sub`` to completion, at most *timeout* s.

    :raises subprocess.TimeoutExpired: if it runs longer (the process is killed).
    """
    require_peer(os.path.basename(executable), executable)
    return subprocess.run(
        [executable, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def mosquitto_pub(
    host: str, port: int, topic: str, message: str, *extra: str, timeout: float = 10.0
) -> subprocess.CompletedProcess[str]:
    """Publish one message with ``mosquitto_pub`` (add ``-r``, ``-q 1`` … in *extra*)."""
    return run_mosquitto_client(
        MOSQUITTO_PUB,
        ["-h", host, "-p", str(port), "-t", topic, "-m", message, *extra],
        timeout=timeout,
    )


def start_mosquitto_sub(
    host: str, port: int, topic: str, *extra: str, count: int = 1, wait: int = 5
) -> subprocess.Popen[str]:
    """Start ``mosquitto_sub`` in the background; it exits after *count* messages
    or *wait* idle seconds (``-C``/``-W``), so it cannot outlive a test for long.
    Collect it with :func:`finish`.
    """
    require_peer("mosquitto_sub", MOSQUITTO_SUB)
    return subprocess.Popen(
        [
            MOSQUITTO_SUB,
            *("-h", host, "-p", str(port), "-t", topic),
            *("-C", str(count), "-W", str(wait)),
            *extra,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 10.0) -> tuple[int, str, str]:
    """Wait (bounded) for a background client; kill it if it overruns.

    Returns ``(returncode, stdout, stderr)``.
    """
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate(timeout=5)
    return process.returncode, stdout, stderr
