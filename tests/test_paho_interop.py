"""The Eclipse Paho interoperability suites against ``python -m mqttproto broker``.

The suites (``client_test.py`` for MQTT 3.1.1, ``client_test5.py`` for MQTT 5)
are vendored under ``tests/paho_interop`` (see its README). The broker runs as
the suites' README asks of a broker under test, and as mosquitto is run for
them: a Maximum Keep Alive of 60 s (sent as Server Keep Alive,
``test_server_keep_alive``) and an ACL that lets anonymous clients do anything
except subscribe to ``test/nosubscribe`` (``test_subscribe_failure``), plus
two settings of ours (see :data:`BROKER_ARGS`). Every test of both suites
passes.

Both suites run once, at the same time, each in a subprocess, in upstream's order (unittest sorts the
methods by name) against a broker of its own on a port chosen at run time on
127.0.0.1; every test of it is a pytest item here that asserts the test passed
and shows upstream's traceback if not. The subprocess is killed after
:data:`SUITE_TIMEOUT`.
"""

from __future__ import annotations

import ast
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from interop import HOST
from test_interop_broker import ProcessBroker

PAHO = Path(__file__).resolve().parent / "paho_interop"
SUITES = {"3.1.1": "client_test", "5.0": "client_test5"}
#: The longest suite runs in about 90 s; keep-alive and will-delay tests sleep.
SUITE_TIMEOUT = 400.0
ACL = "topic readwrite #\ntopic deny test/nosubscribe\n"
#: The broker's arguments (besides --host and --port): mosquitto's spelling
#: of the keep-alive bound (test_server_keep_alive wants Server Keep Alive 60),
#: and 0x80 for what the ACL refuses (test_subscribe_failure wants SUBACK 0x80,
#: the code for a server that does not reveal why; 0x87 is the default), and
#: topic aliases for topics of any length (test_server_topic_alias publishes
#: on "TopicA"; by default only topics of 8 characters or more get one).
BROKER_ARGS = (
    "--max-keepalive",
    "60",
    "--deny-reason",
    "unspecified",
    "--auto-topic-alias-min-length",
    "1",
)


def _test_names(suite: str) -> list[str]:
    """The ``test*`` methods of the suite's ``Test`` class, read without importing it."""
    tree = ast.parse((PAHO / f"{suite}.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Test":
            return sorted(
                item.name
                for item in node.body
                if isinstance(item, ast.FunctionDef) and item.name.startswith("test")
            )
    raise AssertionError(f"no class Test in {suite}.py")


#: Tests known to fail, and why (strict: once one passes, its entry must go).
#: None: both suites pass in full.
KNOWN_FAILURES: dict[tuple[str, str], str] = {}

CASES = [
    pytest.param(
        suite,
        name,
        id=f"{version}-{name}",
        marks=[pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[suite, name])]
        if (suite, name) in KNOWN_FAILURES
        else [],
    )
    for version, suite in SUITES.items()
    for name in _test_names(suite)
]


@pytest.fixture(scope="module")
def suite_results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A function ``suite -> (outcomes, output)``. On first use both suites
    run at once, each against a broker of its own: they spend most of their
    time in their own sleeps, so together they take as long as the longer."""
    cache: dict[str, tuple[dict[str, dict[str, str]], str]] = {}
    directory = tmp_path_factory.mktemp("paho")
    acl = directory / "acl"
    acl.write_text(ACL)

    def run_all() -> None:
        with contextlib.ExitStack() as stack:
            running = {}
            for suite in SUITES.values():
                broker = stack.enter_context(ProcessBroker("--acl-file", str(acl), *BROKER_ARGS))
                log = stack.enter_context((directory / f"{suite}.log").open("w+"))
                process = subprocess.Popen(
                    [sys.executable, str(PAHO / "run_suite.py"), suite, HOST,
                     str(broker.port), str(directory / f"{suite}.json")],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    text=True,
                    cwd=PAHO,
                )
                running[suite] = (broker, process, log)
            deadline = time.monotonic() + SUITE_TIMEOUT
            for suite, (broker, process, log) in running.items():
                try:
                    process.wait(max(0.0, deadline - time.monotonic()))
                    note = ""
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                    note = f"\nthe suite did not finish in {SUITE_TIMEOUT} s"
                broker.stop()
                log.seek(0)
                output = directory / f"{suite}.json"
                outcomes = json.loads(output.read_text()) if output.exists() else {}
                text = log.read() + note + "\nbroker stderr:\n" + broker.stderr[-4000:]
                cache[suite] = (outcomes, text)

    def results(suite: str) -> tuple[dict[str, dict[str, str]], str]:
        if not cache:
            run_all()
        return cache[suite]

    yield results


@pytest.mark.parametrize(("suite", "name"), CASES)
def test_paho_interoperability(suite_results: Any, suite: str, name: str) -> None:
    outcomes, log = suite_results(suite)
    result = outcomes.get(name)
    assert result is not None, f"{name} did not run; the suite's output:\n{log[-6000:]}"
    assert result["outcome"] == "passed", result["detail"]
