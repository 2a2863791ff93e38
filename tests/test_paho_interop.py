"""The Eclipse Paho interoperability suites against ``python -m mqttproto broker``.

The suites (``client_test.py`` for MQTT 3.1.1, ``client_test5.py`` for MQTT 5)
are vendored under ``tests/paho_interop`` (see its README). The broker runs as
the suites' README asks of a broker under test, and as mosquitto is run for
them: a Maximum Keep Alive of 60 s (sent as Server Keep Alive,
``test_server_keep_alive``) and an ACL that lets anonymous clients do anything
except subscribe to ``test/nosubscribe`` (``test_subscribe_failure``).

Each suite runs once, in a subprocess, in upstream's order (unittest sorts the
methods by name) against a broker of its own on a port chosen at run time on
127.0.0.1; every test of it is a pytest item here that asserts the test passed
and shows upstream's traceback if not. The subprocess is killed after
:data:`SUITE_TIMEOUT`.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
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
#: The broker's arguments (besides --host and --port).
# ``--max-keep-alive`` is the name on this branch; ``--max-keepalive`` is
# mosquitto's spelling, an alias that issue 15 adds on another branch.
BROKER_ARGS = ("--max-keep-alive", "60")


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


#: Tests known to fail, and why. Strict: once one passes, its entry must go.
KNOWN_FAILURES = {
    # Server-to-client Topic Aliases are another item of issue 15 (the broker
    # assigns none yet), on another branch.
    ("client_test5", "test_server_topic_alias"): "the broker assigns no topic aliases yet",
    # The suite wants SUBACK 0x80 Unspecified error for a subscription the
    # ACL refuses (its own broker hard-codes that answer for this filter);
    # ours sends 0x87 Not authorized, the code section 3.9.3 defines for
    # exactly this, as mosquitto 2 does.
    ("client_test5", "test_subscribe_failure"): "SUBACK 0x87 Not authorized, not 0x80",
}

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
    """A function ``suite -> (outcomes, output)``; each suite runs once, on first use."""
    cache: dict[str, tuple[dict[str, dict[str, str]], str]] = {}
    directory = tmp_path_factory.mktemp("paho")
    acl = directory / "acl"
    acl.write_text(ACL)

    def results(suite: str) -> tuple[dict[str, dict[str, str]], str]:
        if suite not in cache:
            output = directory / f"{suite}.json"
            with ProcessBroker("--acl-file", str(acl), *BROKER_ARGS) as broker:
                try:
                    run = subprocess.run(
                        [sys.executable, str(PAHO / "run_suite.py"), suite, HOST,
                         str(broker.port), str(output)],
                        stdin=subprocess.DEVNULL,
                        capture_output=True,
                        text=True,
                        timeout=SUITE_TIMEOUT,
                        check=False,
                        cwd=PAHO,
                    )
                    log = run.stdout + run.stderr
                except subprocess.TimeoutExpired as expired:
                    log = f"the suite did not finish in {SUITE_TIMEOUT} s: {expired}"
                broker.stop()
            outcomes = json.loads(output.read_text()) if output.exists() else {}
            cache[suite] = (outcomes, log + "\nbroker stderr:\n" + broker.stderr[-4000:])
        return cache[suite]

    yield results


@pytest.mark.parametrize(("suite", "name"), CASES)
def test_paho_interoperability(suite_results: Any, suite: str, name: str) -> None:
    outcomes, log = suite_results(suite)
    result = outcomes.get(name)
    assert result is not None, f"{name} did not run; the suite's output:\n{log[-6000:]}"
    assert result["outcome"] == "passed", result["detail"]
