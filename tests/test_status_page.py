"""The status page at ``GET /`` rendered by a real headless browser
(Debian's ``chromium``, which ``.ci/run`` installs): with a paho-mqtt client
connected and subscribed, the page the browser built shows the client, its
subscription, and the answer of the "who receives topic T?" box.

``chromium --headless --dump-dom`` loads the page, runs its scripts (the
fetches of the admin API included: ``--virtual-time-budget`` waits for them)
and prints the document as it then is.
"""

from __future__ import annotations

import html
import re
import subprocess
from pathlib import Path

from interop import HOST, require_peer
from test_http_ops import TOKEN, HttpBroker, http, paho_client, subscribe
from test_interop_broker import WAIT

CHROMIUM = "/usr/bin/chromium"


def render(url: str, profile: Path) -> str:
    """The DOM of ``url`` once its scripts have run, as chromium prints it."""
    require_peer("chromium", CHROMIUM)
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # as root in CI containers
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        timeout=6 * WAIT,
        check=False,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def rows(dom: str) -> list[list[str]]:
    """The cells of the sessions table."""
    found = []
    for row in re.findall(r'<tr class="session">(.*?)</tr>', dom, re.S):
        found.append([html.unescape(cell) for cell in re.findall(r"<td>(.*?)</td>", row, re.S)])
    return found


def test_browser_shows_the_connected_client_its_subscription_and_who_receives(
    tmp_path: Path,
) -> None:
    with HttpBroker("--http-port", "0", "--http-token", TOKEN) as broker:
        status, headers, page = http(broker, "/", token=TOKEN)
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        # Self-contained: no script, style or image from anywhere else.
        assert not re.search(rb"""(src|href)=["']?(https?:)?//""", page)
        with paho_client(broker, "lamp-17") as (client, _):
            subscribe(client, ("rooms/+/light", 1))
            url = f"http://{HOST}:{broker.http_port}/?token={TOKEN}&topic=rooms/kitchen/light"
            dom = render(url, tmp_path / "profile")
        assert broker.stop() == 0
    assert 'data-loaded="yes"' in dom, dom
    (row,) = rows(dom)
    assert row[0] == "lamp-17"
    assert row[2] == "yes"
    assert row[3].startswith("127.0.0.1:")
    assert row[4] == "5.0"
    assert row[5] == "rooms/+/light (QoS 1)"
    assert re.search(r'<b id="clients">1</b>', dom)
    assert re.search(r'<b id="uptime">\d+m \d+s</b>', dom)
    who = re.search(r'<ul id="who-result">(.*?)</ul>', dom, re.S)
    assert who is not None
    assert html.unescape(who.group(1)) == "<li>lamp-17 via rooms/+/light (QoS 1)</li>"


def test_browser_without_the_token_shows_the_error(tmp_path: Path) -> None:
    with HttpBroker("--http-port", "0", "--http-token", TOKEN) as broker:
        dom = render(f"http://{HOST}:{broker.http_port}/", tmp_path / "profile")
        assert broker.stop() == 0
    # The page itself needs the token: the browser gets the JSON error.
    assert "a valid bearer token is needed" in dom


def test_browser_shows_the_bridges_and_their_state(tmp_path: Path) -> None:
    from bridge_tools import bridge_config
    from interop import free_port

    down = free_port()  # nothing listens there
    config = bridge_config(
        tmp_path / "broker.toml",
        {"name": "central", "address": f"127.0.0.1:{down}", "topics": ["a/# out 1"]},
    )
    with HttpBroker("--http-port", "0", "--config", str(config)) as broker:
        dom = render(f"http://{HOST}:{broker.http_port}/", tmp_path / "profile")
        assert broker.stop() == 0
    assert 'data-loaded="yes"' in dom, dom
    found = [
        [html.unescape(cell) for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]
        for row in re.findall(r'<tr class="bridge">(.*?)</tr>', dom, re.S)
    ]
    ((name, state, address, connects, out, in_, dropped, in_flight, error),) = found
    assert (name, address, connects, out, in_, dropped, in_flight) == (
        "central",
        f"127.0.0.1:{down}",
        "0",
        "0",
        "0",
        "0",
        "0",
    )
    assert state in ("connecting", "down")
    assert error.startswith(f"cannot connect to 127.0.0.1:{down}")
