"""The broker command's garbage-collector settings (``--gc-threshold``,
TOML ``gc_threshold``) and what :func:`tune_collector` does to the process."""

from __future__ import annotations

import gc
import socket
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqttproto._cli_run import GC_THRESHOLD, tune_collector
from mqttproto.cli import main


@pytest.fixture
def collector_restored() -> Iterator[None]:
    """Put the collector back as the test runner had it."""
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_tune_collector_freezes_start_up_and_sets_the_threshold(
    collector_restored: None,
) -> None:
    _, second, third = gc.get_threshold()
    tune_collector(5_000)
    assert gc.get_threshold() == (5_000, second, third)
    assert gc.get_freeze_count() > 0
    # Cycles made after start-up are still found and freed.
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    alive = weakref.ref(a)
    del a, b
    gc.collect()
    assert alive() is None


def test_the_flag_reaches_the_collector(collector_restored: None) -> None:
    # A port in use ends the command after the collector is set up.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status = main(["broker", "--port", str(port), "--gc-threshold", "12345"])
    assert status == 1
    assert gc.get_threshold()[0] == 12_345


def test_the_default_threshold(collector_restored: None) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["broker", "--port", str(taken.getsockname()[1])]) == 1
    assert gc.get_threshold()[0] == GC_THRESHOLD == 10_000


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("gc_threshold = 0", "gc_threshold must be at least 1, not 0"),
        ("gc-threshold = -5", "gc_threshold must be at least 1, not -5"),
        ('gc_threshold = "many"', "gc_threshold"),
    ],
)
def test_a_bad_threshold_in_the_config_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    collector_restored: None,
    line: str,
    message: str,
) -> None:
    before = gc.get_threshold()
    config = tmp_path / "broker.toml"
    config.write_text(line + "\n", encoding="utf-8")
    assert main(["broker", "--port", "0", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert gc.get_threshold() == before  # refused before anything changed


def test_a_bad_threshold_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["broker", "--port", "0", "--gc-threshold", "0"]) == 1
    err = capsys.readouterr().err
    assert "argument --gc-threshold: must be positive, not 0" in err
    assert "Traceback" not in err


def test_help_names_the_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["broker", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--gc-threshold" in out
    assert "Python's own default is 700" in " ".join(out.split())
