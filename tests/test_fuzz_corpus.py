"""Replay of the fuzz corpus: every seed and crash reproducer, on every test run.

``fuzz/fuzz_codec.py`` checks its invariants (see its docstring) in
``TestOneInput``, which needs no atheris; here each file of
``fuzz/corpus/fuzz_codec/`` goes through it, and so do arbitrary bytes from
hypothesis. Crashes the fuzzer found are also pinned below as regression
tests with their expected outcome.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fuzzing import corpus_params, grown, load_harness, seeds
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
CORPUS = seeds("fuzz_codec")


fuzz_codec = load_harness("fuzz_codec")
CORPUS_FILES = sorted(path.name for path in CORPUS.iterdir())


def test_corpus_is_there_and_small() -> None:
    assert 300 <= len(CORPUS_FILES) < 500
    assert sum((CORPUS / name).stat().st_size for name in CORPUS_FILES) < 1_000_000


@pytest.mark.parametrize("harness", ["fuzz_codec", "fuzz_client", "fuzz_broker"])
def test_grown_corpus_is_small_and_apart_from_the_seeds(harness: str) -> None:
    """What campaigns found (fuzz/merge_grown.py) stays minimal and small."""
    found = list(grown(harness).iterdir()) if grown(harness).is_dir() else []
    assert sum(path.stat().st_size for path in found) < 1_000_000
    assert not {path.name for path in found} & {path.name for path in seeds(harness).iterdir()}


def test_harness_imports_without_atheris() -> None:
    """With atheris made unimportable, the harness still imports and runs."""
    code = (
        "import sys; sys.modules['atheris'] = None; sys.path.insert(0, sys.argv[1]); "
        "import fuzz_codec; fuzz_codec.TestOneInput(b'\\x02\\x00\\x00\\xc0\\x00')"
    )
    subprocess.run([sys.executable, "-c", code, str(ROOT / "fuzz")], check=True, timeout=60)


@pytest.mark.parametrize("path", corpus_params("fuzz_codec"))
def test_corpus_file(path: Path) -> None:
    fuzz_codec.TestOneInput(path.read_bytes())


@given(data=st.binary(max_size=300))
def test_arbitrary_input(data: bytes) -> None:
    fuzz_codec.TestOneInput(data)


@given(
    head=st.sampled_from([fuzz_codec.selector(v) for v in (3, 4, 5, None)]),
    data=st.binary(max_size=300),
)
def test_arbitrary_stream_per_version(head: bytes, data: bytes) -> None:
    fuzz_codec.TestOneInput(head + data)


def test_input_is_cut_at_the_payload_limit() -> None:
    """More than MAX_PAYLOAD bytes: only the first MAX_PAYLOAD are fed."""
    ping = bytes.fromhex("c0 00")
    fuzz_codec.TestOneInput(fuzz_codec.selector(5) + ping * (fuzz_codec.MAX_PAYLOAD // 2 + 10))


# ---------------------------------------------------------------------------
# Regressions: inputs the fuzzer found, with the outcome now expected.
