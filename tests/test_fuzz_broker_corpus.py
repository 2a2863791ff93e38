"""Replay of fuzz/corpus/fuzz_broker through fuzz_broker.TestOneInput, plus hypothesis bytes.

The harness checks its invariants itself (see fuzz/fuzz_broker.py): nothing
escapes the Broker, every byte it sends parses, state stays bounded.
``regress-*`` files are reproducers of crashes the fuzzer found.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzzing import corpus_params, load_harness, seeds
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
CORPUS = seeds("fuzz_broker")


fuzz_broker = load_harness("fuzz_broker")
CORPUS_FILES = sorted(path.name for path in CORPUS.iterdir())


def test_corpus_covers_every_version_and_regressions() -> None:
    assert len(CORPUS_FILES) >= 40
    for version in (3, 4, 5):
        assert any(f"-v{version}-" in name for name in CORPUS_FILES)


@pytest.mark.parametrize("path", corpus_params("fuzz_broker"))
def test_corpus_file(path: Path) -> None:
    fuzz_broker.TestOneInput(path.read_bytes())


@given(st.binary(min_size=1, max_size=600))
@settings(max_examples=300)
def test_arbitrary_server_bytes(data: bytes) -> None:
    fuzz_broker.TestOneInput(data)
