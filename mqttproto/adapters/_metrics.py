"""``GET /metrics``: the broker's statistics in the Prometheus text
exposition format (version 0.0.4).

The metric names are a contract (dashboards are built on them): counters end
in ``_total``, units are in the name, and every family has its HELP and TYPE
lines. They are all read from one :meth:`Broker.statistics` snapshot, so a
scrape is consistent with itself.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..broker._statistics import DROP_REASONS, BrokerStatistics

__all__ = ["CONTENT_TYPE", "METRIC_NAMES", "render_metrics"]

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


def _family(name: str, samples: Iterable[tuple[str, float]]) -> list[str]:
    kind, text = _FAMILIES[name]
    lines = [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
    lines.extend(f"{name}{labels} {value}" for labels, value in samples)
    return lines


def render_metrics(stats: BrokerStatistics) -> bytes:
    """The exposition text of ``stats``."""
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
    return ("\n".join(lines) + "\n").encode()
