"""What the fuzz-corpus replays share: loading a harness and listing its corpus.

A harness (``fuzz/<name>.py``) is imported from its file, without atheris;
its corpus is the committed seeds (``fuzz/corpus/<name>/``, with the
``regress-*`` crash reproducers) plus what campaigns found that the seeds do
not cover (``fuzz/grown/<name>/``, see ``fuzz/merge_grown.py``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"


def load_harness(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, FUZZ / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def seeds(name: str) -> Path:
    return FUZZ / "corpus" / name


def grown(name: str) -> Path:
    return FUZZ / "grown" / name


def corpus_params(name: str) -> list[Any]:
    """One pytest parameter per corpus file (seeds, then grown), by path."""
    paths = sorted(seeds(name).iterdir())
    if grown(name).is_dir():
        paths += sorted(grown(name).iterdir())
    return [pytest.param(path, id=str(path.relative_to(FUZZ))) for path in paths]
