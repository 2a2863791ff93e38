"""Replay of fuzz/corpus/fuzz_broker through fuzz_broker.TestOneInput, plus hypothesis bytes.

The harness checks its invariants itself (see fuzz/fuzz_broker.py): nothing
escapes the Broker, every byte it sends parses, state stays bounded.
``regress-*`` files are reproducers of crashes the fuzzer found.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus" / "fuzz_broker"


def _load_harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_broker", ROOT / "fuzz" / "fuzz_broker.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fuzz_broker = _load_harness()
CORPUS_FILES = sorted(path.name for path in CORPUS.iterdir())


def test_corpus_covers_every_version_and_regressions() -> None:
    assert len(CORPUS_FILES) >= 40
    for version in (3, 4, 5):
        assert any(f"-v{version}-" in name for name in CORPUS_FILES)


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_corpus_file(name: str) -> None:
    fuzz_broker.TestOneInput((CORPUS / name).read_bytes())


@given(st.binary(min_size=1, max_size=600))
@settings(max_examples=300)
def test_arbitrary_server_bytes(data: bytes) -> None:
    fuzz_broker.TestOneInput(data)
