"""``mqttproto broker`` with a ``[[bridge]]`` table pointing at a real mosquitto,
paho-mqtt clients on both sides: each direction, remapping, ``both`` without
loops, notifications, and an outage that loses nothing.

Every broker is a process on 127.0.0.1 (mosquitto on a free port, ours with
``--port 0``), stopped by its handle.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from bridge_tools import Paho, bridge_config, state_topic
from interop import MosquittoBroker, free_port
from test_interop_broker import ProcessBroker

CLIENT_ID = "edge.test"
STATE = state_topic(CLIENT_ID)


@contextlib.contextmanager
def bridged(
    tmp_path: Path, topics: list[str], *, version: int = 4, **extra: object
) -> Iterator[tuple[MosquittoBroker, ProcessBroker]]:
    """mosquitto, and our broker bridged to it, the bridge connected."""
    with MosquittoBroker() as central:
        config = bridge_config(
            tmp_path / "edge.toml",
            {
                "name": "central",
                "address": f"127.0.0.1:{central.port}",
                "client_id": CLIENT_ID,
                "protocol_version": version,
                "topics": topics,
                "restart_timeout": 0.2,
                "restart_timeout_max": 0.5,
                **extra,
            },
        )
        with ProcessBroker("--config", str(config)) as edge:
            # Connected, and its "1" on both brokers (so that a later
            # subscriber of the central one gets it retained).
            for port in (edge.port, central.port):
                with Paho(port, "watch", subscribe=[(STATE, 1)]) as watch:
                    watch.until(STATE, b"1")
            yield central, edge


@pytest.mark.parametrize("version", [4, 5])
def test_out_and_in_with_remapping_and_qos(tmp_path: Path, version: int) -> None:
    topics = ["sensors/# out 1 edge/ site1/", "commands/# in 2 cmd/ central/", "fw/# in 0"]
    with bridged(tmp_path, topics, version=version) as (central, edge):
        with (
            Paho(central.port, "remote", subscribe=[("site1/#", 2)]) as remote,
            Paho(edge.port, "local", subscribe=[("cmd/#", 2), ("fw/#", 2)]) as local,
        ):
            # Out: the local prefix traded for the remote one, QoS min(1, 2).
            local.publish("edge/sensors/t1", b"21.5", qos=2)
            local.publish("sensors/unbridged", b"x", qos=1)  # outside the local prefix
            assert remote.expect() == [("site1/sensors/t1", b"21.5", 1, False)]
            # In: the remote prefix traded for the local one; QoS min(line, message).
            remote.publish("central/commands/reboot", b"now", qos=2)
            assert local.expect() == [("cmd/commands/reboot", b"now", 2, False)]
            remote.publish("fw/v2", b"blob", qos=1)
            assert local.expect() == [("fw/v2", b"blob", 0, False)]
            # Nothing else crossed (the unbridged topic): the next message is the marker.
            local.publish("edge/sensors/end", b"end", qos=1)
            assert remote.expect() == [("site1/sensors/end", b"end", 1, False)]
        assert edge.stop() == 0


@pytest.mark.parametrize("version", [4, 5])
def test_both_without_loops(tmp_path: Path, version: int) -> None:
    """A message published once is seen once on each side, whichever side published it."""
    with bridged(tmp_path, ["chat/# both 1"], version=version) as (central, edge):
        with (
            Paho(central.port, "remote", subscribe=[("chat/#", 1)]) as remote,
            Paho(edge.port, "local", subscribe=[("chat/#", 1)]) as local,
        ):
            local.publish("chat/from-edge", b"1", qos=1)
            remote.publish("chat/from-central", b"2", qos=1)
            # Markers from each side, after which a looped copy would have come.
            local.publish("chat/end-edge", b"e", qos=1)
            remote.publish("chat/end-central", b"c", qos=1)
            markers = {("chat/end-edge", b"e"), ("chat/end-central", b"c")}
            for client in (local, remote):
                topics = [topic for topic, *_ in client.until_all(markers)]
                assert sorted(topics) == sorted(
                    ["chat/from-edge", "chat/from-central", "chat/end-edge", "chat/end-central"]
                )
            assert local.messages.empty() and remote.messages.empty()
        assert edge.stop() == 0


@pytest.mark.parametrize("version", [4, 5])
def test_retained_messages_keep_their_flag_both_ways(tmp_path: Path, version: int) -> None:
    with bridged(tmp_path, ["status/# out 1", "config/# in 1"], version=version) as (
        central,
        edge,
    ):
        with (
            Paho(central.port, "watch-remote", subscribe=[("status/#", 1)]) as watch_remote,
            Paho(edge.port, "watch-local", subscribe=[("config/#", 1)]) as watch_local,
        ):
            with Paho(edge.port, "pub-local") as local_pub:
                local_pub.publish("status/edge", b"online", qos=1, retain=True)
            with Paho(central.port, "pub-remote") as remote_pub:
                remote_pub.publish("config/rate", b"10", qos=1, retain=True)
            # Across the bridge (live: paho asks no Retain As Published).
            assert watch_remote.expect()[0][:2] == ("status/edge", b"online")
            assert watch_local.expect()[0][:2] == ("config/rate", b"10")
        # Retained on the far side: a subscriber that comes later gets them.
        with Paho(central.port, "late-remote", subscribe=[("status/#", 1)]) as late_remote:
            assert late_remote.expect() == [("status/edge", b"online", 1, True)]
        with Paho(edge.port, "late-local", subscribe=[("config/#", 1)]) as late_local:
            assert late_local.expect() == [("config/rate", b"10", 1, True)]
        assert edge.stop() == 0


def test_notifications_locally_and_on_the_remote_broker(tmp_path: Path) -> None:
    with MosquittoBroker() as central:
        config = bridge_config(
            tmp_path / "edge.toml",
            {
                "name": "central",
                "address": f"127.0.0.1:{central.port}",
                "client_id": CLIENT_ID,
                "topics": ["x/# out 0"],
                "restart_timeout": 0.2,
            },
        )
        with (
            Paho(central.port, "remote-watch", subscribe=[(STATE, 1)]) as remote_watch,
            ProcessBroker("--config", str(config)) as edge,
        ):
            with Paho(edge.port, "local-watch", subscribe=[(STATE, 1)]) as local_watch:
                local_watch.until(STATE, b"1")
                assert remote_watch.until(STATE, b"1")[-1] == (STATE, b"1", 1, False)
            # Retained on both sides.
            with Paho(edge.port, "late", subscribe=[(STATE, 1)]) as late:
                assert late.expect() == [(STATE, b"1", 1, True)]
            # Killed: no goodbye, the remote broker publishes the bridge's will.
            assert edge.process is not None
            edge.process.kill()
            assert remote_watch.until(STATE, b"0")[-1] == (STATE, b"0", 1, False)
        with Paho(central.port, "late-remote", subscribe=[(STATE, 1)]) as late_remote:
            assert late_remote.expect() == [(STATE, b"0", 1, True)]


def test_remote_down_is_zero_locally_and_a_clean_stop_says_zero_remotely(
    tmp_path: Path,
) -> None:
    with (
        bridged(tmp_path, ["x/# out 0"]) as (central, edge),
        Paho(central.port, "remote-watch", subscribe=[(STATE, 1)]) as remote_watch,
    ):
        assert remote_watch.expect() == [(STATE, b"1", 1, True)]
        assert edge.stop() == 0
        assert remote_watch.expect() == [(STATE, b"0", 1, False)]


def test_outage_loses_no_qos1_message_and_keeps_their_order(tmp_path: Path) -> None:
    """Stop mosquitto, publish QoS 1 locally, restart it: every message arrives, in order."""
    count = 60
    central_dir = tmp_path / "central"
    central_dir.mkdir()
    persistent = ["persistence true", f"persistence_location {central_dir}/"]
    port = free_port()
    central = MosquittoBroker(persistent, directory=central_dir, port=port)
    config = bridge_config(
        tmp_path / "edge.toml",
        {
            "name": "central",
            "address": f"127.0.0.1:{port}",
            "client_id": CLIENT_ID,
            "topics": ["data/# out 1"],
            "restart_timeout": 0.2,
            "restart_timeout_max": 0.5,
        },
    )
    with contextlib.ExitStack() as stack:
        stack.enter_context(central)
        # A subscriber with a persistent session on mosquitto, away during the outage.
        Paho(central.port, "collector", v5=False, clean=False, subscribe=[("data/#", 1)]).close()
        edge = stack.enter_context(ProcessBroker("--config", str(config)))
        watch = stack.enter_context(Paho(edge.port, "watch", subscribe=[(STATE, 1)]))
        watch.until(STATE, b"1")
        central.__exit__(None, None, None)
        watch.until(STATE, b"0")  # mosquitto is gone: the bridge is down
        with Paho(edge.port, "producer") as producer:
            for number in range(count):
                producer.publish(f"data/{number % 3}", str(number), qos=1)
        # This broker serves on while the remote one is away.
        with Paho(edge.port, "local-reader", subscribe=[("local/#", 1)]) as reader:
            with Paho(edge.port, "local-writer") as writer:
                writer.publish("local/ok", b"yes", qos=1)
            assert reader.expect() == [("local/ok", b"yes", 1, False)]
        stack.enter_context(central)
        watch.until(STATE, b"1")
        with Paho(central.port, "collector", v5=False, clean=False) as collector:
            got = collector.expect(count)
            # Nothing twice: a marker published after them comes next.
            with Paho(edge.port, "marker") as marker:
                marker.publish("data/end", b"end", qos=1)
            assert collector.expect() == [("data/end", b"end", 1, False)]
        assert [payload for _, payload, _, _ in got] == [str(n).encode() for n in range(count)]
        assert {qos for _, _, qos, _ in got} == {1}
        assert edge.stop() == 0


# -- the examples of docs/bridging.rst ----------------------------------------------


def test_doc_example_bridge_asyncio_against_mosquitto() -> None:
    from doc_examples import run_example

    with MosquittoBroker() as central:
        out = run_example("bridge_asyncio.py", CENTRAL=f"127.0.0.1:{central.port}")
    assert out == "site1/sensors/temp 21.5\nbridge central: connected\n"


def test_doc_example_bridge_edge_toml_loads_with_the_brokers_loader() -> None:
    from doc_examples import EXAMPLES

    from mqttproto.bridge import TopicRule
    from mqttproto.cli import broker_settings, build_parser

    path = EXAMPLES / "bridge_edge.toml"
    settings = broker_settings(build_parser().parse_args(["broker", "--config", str(path)]))
    (central,) = settings.bridge
    assert central.addresses == (("mqtt-a.example.com", 8883), ("mqtt-b.example.com", 8883))
    assert (central.client_id, central.protocol_version) == ("edge-site1", 5)
    assert central.cafile == str(EXAMPLES / "central-ca.pem")  # relative to the file
    assert central.uses_tls and central.restart_timeout_max == 120
    assert central.topics[0] == TopicRule("sensors/#", "out", 1, "", "site1/")
    assert central.topics[0].to_remote("sensors/t") == "site1/sensors/t"
    assert settings.persist == "/var/lib/mqttproto/edge.db"


def test_outage_queue_is_durable_with_persist(tmp_path: Path) -> None:
    """With --persist, what waits for the remote broker survives a restart of this one."""
    count = 20
    central_dir = tmp_path / "central"
    central_dir.mkdir()
    persistent = ["persistence true", f"persistence_location {central_dir}/"]
    port = free_port()
    central = MosquittoBroker(persistent, directory=central_dir, port=port)
    config = bridge_config(
        tmp_path / "edge.toml",
        {
            "name": "central",
            "address": f"127.0.0.1:{port}",
            "client_id": CLIENT_ID,
            "topics": ["data/# out 1"],
            "restart_timeout": 0.2,
            "restart_timeout_max": 0.5,
        },
        persist=str(tmp_path / "edge.db"),
    )
    with contextlib.ExitStack() as stack:
        stack.enter_context(central)
        Paho(central.port, "collector", v5=False, clean=False, subscribe=[("data/#", 1)]).close()
        with ProcessBroker("--config", str(config)) as edge:
            with Paho(edge.port, "watch", subscribe=[(STATE, 1)]) as watch:
                watch.until(STATE, b"1")
                central.__exit__(None, None, None)
                watch.until(STATE, b"0")
            with Paho(edge.port, "producer") as producer:
                for number in range(count):
                    producer.publish("data/x", str(number), qos=1)
            assert edge.stop() == 0
        # A new process on the same file; then the remote broker comes back.
        with ProcessBroker("--config", str(config)) as edge:
            stack.enter_context(central)
            with Paho(edge.port, "watch", subscribe=[(STATE, 1)]) as watch:
                watch.until(STATE, b"1")
            with Paho(central.port, "collector", v5=False, clean=False) as collector:
                got = collector.expect(count)
            assert edge.stop() == 0
    assert [payload for _, payload, _, _ in got] == [str(n).encode() for n in range(count)]


def test_tls_with_a_client_certificate_and_the_host_name_check(tmp_path: Path) -> None:
    """mosquitto asks for a client certificate; its own certificate names
    ``localhost`` only, so reaching it as 127.0.0.1 needs ``insecure``."""
    import asyncio

    import trustme

    from mqttproto.adapters.asyncio import Client, start_server
    from mqttproto.bridge import BridgeConfig

    ca = trustme.CA()
    files = {}
    for name, cert in (("server", ca.issue_cert("localhost")), ("edge", ca.issue_cert("edge"))):
        files[name] = (tmp_path / f"{name}.pem", tmp_path / f"{name}.key")
        cert.private_key_pem.write_to_path(str(files[name][1]))
        files[name][0].write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    tls_port = free_port()
    (tmp_path / "mosquitto").mkdir()
    lines = [
        f"listener {tls_port} 127.0.0.1",
        f"cafile {tmp_path / 'ca.pem'}",
        f"certfile {files['server'][0]}",
        f"keyfile {files['server'][1]}",
        "require_certificate true",
        "allow_anonymous true",
    ]

    def config(**options: object) -> BridgeConfig:
        return BridgeConfig(
            "central",
            f"127.0.0.1:{tls_port}",
            ["tls/# out 1"],
            client_id=CLIENT_ID,
            cafile=str(tmp_path / "ca.pem"),
            certfile=str(files["edge"][0]),
            keyfile=str(files["edge"][1]),
            restart_timeout=0.2,
            **options,  # type: ignore[arg-type]
        )

    async def main(central: MosquittoBroker) -> None:
        checked = await start_server(port=0, bridges=[config()])
        try:
            for _ in range(500):
                if checked.bridges[0].last_error is not None:
                    break
                await asyncio.sleep(0.02)
            assert "certificate verify failed" in (checked.bridges[0].last_error or "")
            assert checked.bridges[0].connects == 0
        finally:
            await checked.close()
        edge = await start_server(port=0, bridges=[config(insecure=True)])
        try:
            for _ in range(500):
                if edge.bridges[0].state == "connected":
                    break
                await asyncio.sleep(0.02)
            with Paho(central.port, "remote", subscribe=[("tls/#", 1)]) as remote:
                async with Client("127.0.0.1", edge.port) as local:
                    await local.publish("tls/t", b"secret", qos=1)
                assert await asyncio.to_thread(remote.expect) == [("tls/t", b"secret", 1, False)]
        finally:
            await edge.close()

    with MosquittoBroker(lines, directory=tmp_path / "mosquitto") as central:
        asyncio.run(asyncio.wait_for(main(central), 60))
