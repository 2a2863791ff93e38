"""``GET /metrics``: the broker's statistics in the Prometheus text
exposition format (version 0.0.4).

The metric names are a contract (dashboards are built on them): counters end
in ``_total``, units are in the name, and every family has its HELP and TYPE
lines. They are all read from one :meth:`Broker.statistics` snapshot, so a
scrape is consistent with itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .._bridge_state import BridgeStatus
from ..broker._statistics import DROP_REASONS, BrokerStatistics

__all__ = ["BRIDGE_METRIC_NAMES", "CONTENT_TYPE", "METRIC_NAMES", "render_metrics"]

#: What ``/metrics`` answers with (the Prometheus text format).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: name -> (type, help).
_FAMILIES: dict[str, tuple[str, str]] = {
    "mqttproto_clients_connected": ("gauge", "Clients connected now."),
    "mqttproto_connections_total": (
        "counter",
        "Connections accepted (CONNACK success) since the broker started.",
    ),
    "mqttproto_messages_received_total": (
        "counter",
        "PUBLISH packets received from clients, by QoS.",
    ),
    "mqttproto_messages_sent_total": ("counter", "PUBLISH packets sent to clients, by QoS."),
    "mqttproto_bytes_received_total": ("counter", "MQTT bytes received from clients."),
    "mqttproto_bytes_sent_total": ("counter", "MQTT bytes sent to clients."),
    "mqttproto_messages_dropped_total": (
        "counter",
        "Messages or deliveries dropped, by reason.",
    ),
    "mqttproto_subscriptions": ("gauge", "Subscriptions of all sessions (shared ones included)."),
    "mqttproto_retained_messages": ("gauge", "Retained messages stored."),
    "mqttproto_sessions": ("gauge", "Sessions, by state: online (connected) or offline."),
    "mqttproto_uptime_seconds": ("gauge", "Seconds since the broker started."),
}

#: Every metric family ``/metrics`` carries.
METRIC_NAMES = tuple(_FAMILIES)

#: The families of the bridges (labelled by bridge name; no samples without bridges).
_BRIDGE_FAMILIES: dict[str, tuple[str, str]] = {
    "mqttproto_bridge_up": ("gauge", "Whether the bridge is connected to its remote broker."),
    "mqttproto_bridge_connects_total": (
        "counter",
        "Connections the bridge made to its remote broker.",
    ),
    "mqttproto_bridge_messages_total": (
        "counter",
        "Messages the bridge forwarded, by direction: out (to the remote broker) or in.",
    ),
    "mqttproto_bridge_messages_dropped_total": (
        "counter",
        "Messages the bridge could not forward (QoS 0 while down, too large, refused).",
    ),
    "mqttproto_bridge_in_flight": (
        "gauge",
        "QoS 1/2 messages crossing the bridge, not yet acknowledged by the other side.",
    ),
}
_FAMILIES.update(_BRIDGE_FAMILIES)

#: The bridge families, present when the server has bridges.
BRIDGE_METRIC_NAMES = tuple(_BRIDGE_FAMILIES)


def _family(name: str, samples: Iterable[tuple[str, float]]) -> list[str]:
    kind, text = _FAMILIES[name]
    lines = [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
    lines.extend(f"{name}{labels} {value}" for labels, value in samples)
    return lines


def _label(name: str) -> str:
    # Bridge names are letters, digits, "-", "_" and "." (BridgeConfig checks).
    return f'bridge="{name}"'


def _bridge_lines(bridges: Sequence[BridgeStatus]) -> list[str]:
    lines: list[str] = []
    lines += _family(
        "mqttproto_bridge_up",
        [(f"{{{_label(b.name)}}}", int(b.state == "connected")) for b in bridges],
    )
    lines += _family(
        "mqttproto_bridge_connects_total", [(f"{{{_label(b.name)}}}", b.connects) for b in bridges]
    )
    lines += _family(
        "mqttproto_bridge_messages_total",
        [
            sample
            for b in bridges
            for sample in (
                (f'{{{_label(b.name)},direction="out"}}', b.messages_out),
                (f'{{{_label(b.name)},direction="in"}}', b.messages_in),
            )
        ],
    )
    lines += _family(
        "mqttproto_bridge_messages_dropped_total",
        [(f"{{{_label(b.name)}}}", b.messages_dropped) for b in bridges],
    )
    lines += _family(
        "mqttproto_bridge_in_flight", [(f"{{{_label(b.name)}}}", b.in_flight) for b in bridges]
    )
    return lines


def render_metrics(stats: BrokerStatistics, bridges: Sequence[BridgeStatus] = ()) -> bytes:
    """The exposition text of ``stats`` (and of ``bridges``, if any)."""
    lines: list[str] = []
    lines += _family("mqttproto_clients_connected", [("", stats.clients_connected)])
    lines += _family("mqttproto_connections_total", [("", stats.connections_total)])
    lines += _family(
        "mqttproto_messages_received_total",
        [(f'{{qos="{qos}"}}', n) for qos, n in enumerate(stats.messages_received_by_qos)],
    )
    lines += _family(
        "mqttproto_messages_sent_total",
        [(f'{{qos="{qos}"}}', n) for qos, n in enumerate(stats.messages_sent_by_qos)],
    )
    lines += _family("mqttproto_bytes_received_total", [("", stats.bytes_received)])
    lines += _family("mqttproto_bytes_sent_total", [("", stats.bytes_sent)])
    lines += _family(
        "mqttproto_messages_dropped_total",
        [(f'{{reason="{reason}"}}', stats.dropped[reason]) for reason in DROP_REASONS],
    )
    lines += _family("mqttproto_subscriptions", [("", stats.subscriptions)])
    lines += _family("mqttproto_retained_messages", [("", stats.retained_messages)])
    lines += _family(
        "mqttproto_sessions",
        [
            ('{state="online"}', stats.clients_connected),
            ('{state="offline"}', stats.clients_disconnected),
        ],
    )
    lines += _family("mqttproto_uptime_seconds", [("", round(stats.uptime, 3))])
    if bridges:
        lines += _bridge_lines(bridges)
    return ("\n".join(lines) + "\n").encode()
