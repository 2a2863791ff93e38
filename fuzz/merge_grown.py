"""Keep what a campaign found: merge its corpus into ``fuzz/grown/<harness>/``.

Usage (from the project root, with atheris installed)::

    .venv/bin/python fuzz/merge_grown.py fuzz_broker /tmp/campaign/corpus [more dirs]

libFuzzer's ``-merge=1`` starts from the committed seeds
(``fuzz/corpus/<harness>/``) and keeps, from the directories given and the
current ``fuzz/grown/<harness>/``, the smallest set of inputs that adds
coverage the seeds do not have. That set replaces ``fuzz/grown/<harness>/``
(files named by the SHA-1 of their content), so the directory stays
minimal however many campaigns went into it. The test suite replays it on
every run and CI's short campaigns start from it.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
HARNESSES = ("fuzz_codec", "fuzz_client", "fuzz_broker")


def merge(harness: str, campaigns: list[Path]) -> tuple[int, int]:
    """Rewrite ``fuzz/grown/<harness>/``; returns (files before, files after)."""
    seeds = FUZZ / "corpus" / harness
    grown = FUZZ / "grown" / harness
    grown.mkdir(parents=True, exist_ok=True)
    before = len(list(grown.iterdir()))
    with tempfile.TemporaryDirectory(prefix=f"merge-{harness}-") as scratch:
        base = Path(scratch) / "corpus"
        shutil.copytree(seeds, base)
        # Snapshots: a campaign still running deletes inputs it reduces,
        # which would make libFuzzer's merge fail on a missing file.
        inputs = []
        for number, directory in enumerate([grown, *campaigns]):
            snapshot = Path(scratch) / f"input-{number}"
            snapshot.mkdir()
            for path in list(directory.iterdir()):
                with contextlib.suppress(FileNotFoundError):
                    shutil.copy2(path, snapshot / path.name)
            inputs.append(str(snapshot))
        command = [
            sys.executable,
            str(FUZZ / f"{harness}.py"),
            "-merge=1",
            "-rss_limit_mb=2048",
            "-timeout=60",
            str(base),
            *inputs,
        ]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seed_names = {path.name for path in seeds.iterdir()}
        found = [path for path in base.iterdir() if path.name not in seed_names]
        for path in grown.iterdir():
            path.unlink()
        for path in found:
            shutil.copy2(path, grown / path.name)
    return before, len(found)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in HARNESSES:
        print(__doc__, file=sys.stderr)
        return 2
    before, after = merge(argv[0], [Path(arg) for arg in argv[1:]])
    print(f"fuzz/grown/{argv[0]}: {before} -> {after} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
