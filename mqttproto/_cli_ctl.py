"""``mqttproto ctl``: ask a running broker (its HTTP admin API, ``--http-port``).

::

    mqttproto ctl --http-port 8080 sessions
    mqttproto ctl --http-port 8080 subscribers sensors/1/temp
    mqttproto ctl --http-port 8080 retained 'sensors/#'
    mqttproto ctl --http-port 8080 --http-token TOKEN kick client-7

Each prints what it found, one line per item, fields separated by tabs. Exit status: 0 done, 1 the broker said no or cannot be reached
(one line on standard error), 2 kick: no such client.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

from ._cli_common import Subparsers

__all__ = ["add_ctl_parser", "command_ctl"]

#: Seconds to wait for the broker's answer.
TIMEOUT = 10.0


class _Failed(Exception):
    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def _request(args: argparse.Namespace, method: str, path: str) -> Any:
    url = f"http://{args.http_host}:{args.http_port}{path}"
    request = urllib.request.Request(url, method=method)
    token = (
        args.http_token if args.http_token is not None else os.environ.get("MQTTPROTO_HTTP_TOKEN")
    )
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except (ValueError, AttributeError):
            message = exc.reason
        raise _Failed(f"HTTP {exc.code}: {message}", 2 if exc.code == 404 else 1) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Failed(f"cannot reach the broker at {url}: {reason}") from None
    except ValueError:
        raise _Failed(f"{url} did not answer JSON") from None


def _sessions(args: argparse.Namespace) -> list[str]:
    lines = []
    for s in _request(args, "GET", "/api/v1/sessions"):
        subs = " ".join(f"{x['topic_filter']}@{x['qos']}" for x in s["subscriptions"]) or "-"
        state = f"connected from {s['address']}" if s["connected"] else "offline"
        lines.append(
            f"{s['client_id']}\t{s['username'] or '-'}\t{state}\tMQTT {s['protocol_version'] or '-'}"
            f"\tsubscriptions: {subs}\tqueued {s['queued']}\tinflight {s['inflight']}"
        )
    return lines


def _subscribers(args: argparse.Namespace) -> list[str]:
    found = _request(args, "GET", f"/api/v1/subscribers?topic={quote(args.topic, safe='')}")
    lines = []
    for r in found:
        if "group" in r:
            members = ",".join(m["client_id"] for m in r["members"])
            lines.append(f"{r['topic_filter']}\tgroup {r['group']}: {members}\tnext {r['next']}")
        else:
            lines.append(f"{r['client_id']}\t{r['topic_filter']}\tQoS {r['qos']}")
    return lines


def _retained(args: argparse.Namespace) -> list[str]:
    found = _request(args, "GET", f"/api/v1/retained?filter={quote(args.filter, safe='')}")
    return [f"{r['topic']}\t{r['size']} bytes\tQoS {r['qos']}" for r in found]


def _kick(args: argparse.Namespace) -> list[str]:
    _request(args, "DELETE", f"/api/v1/sessions/{quote(args.client_id, safe='')}")
    return [f"disconnected {args.client_id}"]


def command_ctl(args: argparse.Namespace) -> int:
    """``ctl``: 0 done, 1 failed, 2 no such client (kick)."""
    try:
        lines = args.action(args)
    except _Failed as exc:
        print(f"mqttproto ctl: {exc}", file=sys.stderr)
        return exc.status
    for line in lines:
        print(line)
    return 0


def add_ctl_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "ctl",
        help="ask a running broker: sessions, subscribers, retained, kick",
        description="Ask a broker started with --http-port through its admin API.",
    )
    parser.add_argument("--http-host", default="127.0.0.1", help="the broker's HTTP address")
    parser.add_argument("--http-port", type=int, required=True, help="the broker's --http-port")
    parser.add_argument(
        "--http-token",
        metavar="TOKEN",
        help="the broker's --http-token (default: $MQTTPROTO_HTTP_TOKEN)",
    )
    actions = parser.add_subparsers(title="actions", required=True, metavar="ACTION")
    sessions = actions.add_parser("sessions", help="every session and its subscriptions")
    sessions.set_defaults(action=_sessions)
    subscribers = actions.add_parser("subscribers", help="who receives a message to TOPIC now")
    subscribers.add_argument("topic", metavar="TOPIC")
    subscribers.set_defaults(action=_subscribers)
    retained = actions.add_parser("retained", help="retained topics matching FILTER, and sizes")
    retained.add_argument("filter", metavar="FILTER")
    retained.set_defaults(action=_retained)
    kick = actions.add_parser("kick", help="disconnect CLIENT_ID and discard its session")
    kick.add_argument("client_id", metavar="CLIENT_ID")
    kick.set_defaults(action=_kick)
    parser.set_defaults(handler=command_ctl)
