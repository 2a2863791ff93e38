"""How long a broker takes to start on a big store file.

Writes a SQLiteStore with ``--sessions`` persistent sessions (one
subscription and one queued QoS 1 message each) and ``--retained`` retained
messages, then measures, as a restart would do it: opening the file, making
a :class:`~mqttproto.broker.Broker` on it and its first call with the time
(which restores every session into the subscription trie).

Run: ``python benchmarks/store_restart.py`` (``--sessions 10000 --retained 100000``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mqttproto import PublishPacket, QoS  # noqa: E402
from mqttproto.broker import Broker  # noqa: E402
from mqttproto.store import (  # noqa: E402
    RetainedMessage,
    SQLiteStore,
    StoredMessage,
    StoredSession,
    StoredSubscription,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--retained", type=int, default=100_000)
    parser.add_argument("--payload", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mqttproto-restart-") as tmp:
        path = Path(tmp) / "broker.db"
        store = SQLiteStore(path)
        payload = bytes(args.payload)
        for n in range(args.sessions):
            queued = StoredMessage(PublishPacket(f"devices/{n}/cmd", payload, QoS.AT_LEAST_ONCE))
            store.save_session(
                StoredSession(
                    f"device-{n}",
                    86_400,
                    subscriptions=(StoredSubscription(f"devices/{n}/#", QoS.AT_LEAST_ONCE),),
                    queued=(queued,),
                )
            )
        for n in range(args.retained):
            topic = f"status/{n % 1000}/{n}"
            store.set_retained(topic, RetainedMessage(PublishPacket(topic, payload, retain=True)))
        start = time.perf_counter()
        store.commit()
        written = time.perf_counter() - start
        store.close()
        size = path.stat().st_size  # the WAL was checkpointed on close
        start = time.perf_counter()
        store = SQLiteStore(path)
        broker = Broker(store=store)
        broker.handle_timer(time.monotonic())
        elapsed = time.perf_counter() - start
        assert len(broker.sessions()) == args.sessions
        assert len(broker.retained("#")) == args.retained
        store.close()
    print(
        f"{args.sessions:,} persistent sessions + {args.retained:,} retained messages "
        f"({size / 1e6:.1f} MB): written in one commit in {written:.2f} s; "
        f"restart (open, load, restore) {elapsed:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
