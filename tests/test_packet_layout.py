"""What a decoded packet costs does not depend on what the process decoded before.

CPython (3.11+) shares the keys of the instance dicts of a class, but lets
fewer new names join them as more instances are created; an instance given a
name that could not join gets a dict of its own, bigger and several times
slower to fill. ``packets`` puts every field name of every packet class into
those keys at import, so that the first packets a program makes do not
decide: before, a process that decoded many QoS 0 PUBLISH packets (topic and
payload only) gave every later QoS 1 packet its own dict, and decoded it in
about three times the time (issue 16's "QoS 1 costs 3.4 times QoS 0").

Measured in fresh interpreters, with each available codec: the memory that
1,000 decoded MQTT 3.1.1 QoS 1 PUBLISH packets hold, in a process that
decoded nothing before and in one that decoded 10,000 QoS 0 packets first.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

# Each codec this installation has: the pure one always, the compiled one when built.
CODECS = ["python"] + (["cython"] if importlib.util.find_spec("mqttproto._codec_c") else [])

SCRIPT = r"""
import sys, tracemalloc
from mqttproto import PacketReader, ProtocolVersion, codec_implementation

V311 = ProtocolVersion.MQTT_3_1_1

def publish(qos, packet_id):
    body = b"\x00\x03t/1" + (packet_id.to_bytes(2, "big") if qos else b"") + b"p"
    return bytes([0x30 | (qos << 1), len(body)]) + body

if sys.argv[1] == "after-qos0":
    PacketReader(version=V311).feed(b"".join(publish(0, 0) for _ in range(10_000)))
stream = b"".join(publish(1, i) for i in range(300, 1300))
tracemalloc.start()
kept = PacketReader(version=V311).feed(stream)
assert len(kept) == 1000
print(codec_implementation(), tracemalloc.get_traced_memory()[0])
"""


def held(codec: str, history: str) -> int:
    env = dict(os.environ)
    env.pop("MQTTPROTO_PURE_PYTHON", None)
    env["MQTTPROTO_PURE_PYTHON" if codec == "python" else "MQTTPROTO_REQUIRE_EXTENSIONS"] = "1"
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, history],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    implementation, size = result.stdout.split()
    assert implementation == codec
    return int(size)


@pytest.mark.parametrize("codec", CODECS)
def test_decoded_qos1_packets_cost_the_same_after_many_qos0(codec: str) -> None:
    fresh = held(codec, "fresh")
    after = held(codec, "after-qos0")
    # Equal but for a few allocator blocks; an own dict per packet is about
    # 120 bytes more per packet.
    assert after <= fresh * 1.05, (fresh, after)
