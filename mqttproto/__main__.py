"""``python -m mqttproto``: the command line (see :mod:`mqttproto.cli`)."""

from __future__ import annotations

from .cli import run

if __name__ == "__main__":
    run()
