"""``GET /``: the broker's status page, one self-contained HTML document (no
CDN, no external file) that refreshes itself every two seconds from the
admin API: uptime, clients, a sparkline of the message rates of the last
minutes, the sessions with their subscriptions, the bridges and their
state, and a "who receives topic T?" box that asks ``/api/v1/subscribers``.

Everything it shows is put in the page with ``textContent`` (never as HTML),
so a client id or topic cannot inject markup. A token given as ``/?token=``
is sent back as ``Authorization: Bearer`` on every API call; ``/?topic=T``
fills the "who receives" box and asks at once (a link to share).
"""

from __future__ import annotations

__all__ = ["STATUS_PAGE"]

_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>mqttproto broker</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .6em; }
.cards { display: flex; gap: 1em; flex-wrap: wrap; }
.card { border: 1px solid #ccc; border-radius: 6px; padding: .6em 1em; min-width: 9em; }
.card b { display: block; font-size: 1.4em; }
table { border-collapse: collapse; margin-top: .5em; }
td, th { border-bottom: 1px solid #ddd; padding: .25em .8em; text-align: left; }
#error { color: #b00; }
svg { border: 1px solid #ccc; border-radius: 6px; }
</style>
</head>
<body>
<h1>mqttproto broker</h1>
<p id="error"></p>
<div class="cards">
  <div class="card">uptime<b id="uptime">-</b></div>
  <div class="card">clients connected<b id="clients">-</b></div>
  <div class="card">offline sessions<b id="offline">-</b></div>
  <div class="card">subscriptions<b id="subscriptions">-</b></div>
  <div class="card">retained<b id="retained">-</b></div>
  <div class="card">messages in/s<b id="rate-in">-</b></div>
  <div class="card">messages out/s<b id="rate-out">-</b></div>
</div>
<h2>Message rates (last minutes)</h2>
<svg id="spark" width="600" height="80" viewBox="0 0 600 80">
  <polyline id="spark-in" fill="none" stroke="#1565c0" stroke-width="1.5" points=""/>
  <polyline id="spark-out" fill="none" stroke="#2e7d32" stroke-width="1.5" points=""/>
</svg>
<div>received (blue), sent (green)</div>
<h2>Who receives topic T?</h2>
<form id="who">
  <input id="who-topic" placeholder="a/topic" size="40">
  <button type="submit">ask</button>
</form>
<ul id="who-result"></ul>
<h2>Bridges</h2>
<table>
  <thead><tr><th>bridge</th><th>state</th><th>address</th><th>connects</th>
  <th>out</th><th>in</th><th>dropped</th><th>in flight</th><th>last error</th></tr></thead>
  <tbody id="bridges"></tbody>
</table>
<h2>Sessions</h2>
<table>
  <thead><tr><th>client id</th><th>username</th><th>connected</th><th>address</th>
  <th>version</th><th>subscriptions</th><th>queued</th><th>in flight</th></tr></thead>
  <tbody id="sessions"></tbody>
</table>
<script>
"use strict";
const token = new URLSearchParams(location.search).get("token");
const headers = token ? {"Authorization": "Bearer " + token} : {};
const points = [];
let last = null;

function api(path) {
  return fetch(path, {headers: headers}).then(function (response) {
    return response.json().then(function (body) {
      if (!response.ok) { throw new Error(body.error || response.status); }
      return body;
    });
  });
}

function text(id, value) { document.getElementById(id).textContent = String(value); }

function duration(seconds) {
  seconds = Math.floor(seconds);
  const d = Math.floor(seconds / 86400), h = Math.floor(seconds / 3600) % 24;
  const m = Math.floor(seconds / 60) % 60, s = seconds % 60;
  return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + s + "s";
}

function line(id, values, top) {
  const step = 600 / 149;
  const start = 150 - values.length;
  document.getElementById(id).setAttribute("points", values.map(function (v, i) {
    return ((start + i) * step).toFixed(1) + "," + (78 - 76 * v / top).toFixed(1);
  }).join(" "));
}

function drawStats(stats) {
  text("uptime", duration(stats.uptime));
  text("clients", stats.clients_connected);
  text("offline", stats.clients_disconnected);
  text("subscriptions", stats.subscriptions);
  text("retained", stats.retained_messages);
  if (last !== null && stats.uptime > last.uptime) {
    const dt = stats.uptime - last.uptime;
    points.push([(stats.messages_received - last.messages_received) / dt,
                 (stats.messages_sent - last.messages_sent) / dt]);
    if (points.length > 150) { points.shift(); }
    const now = points[points.length - 1];
    text("rate-in", now[0].toFixed(1));
    text("rate-out", now[1].toFixed(1));
    const top = Math.max(1, ...points.map(function (p) { return Math.max(p[0], p[1]); }));
    line("spark-in", points.map(function (p) { return p[0]; }), top);
    line("spark-out", points.map(function (p) { return p[1]; }), top);
  }
  last = stats;
}

function drawSessions(sessions) {
  const body = document.getElementById("sessions");
  body.replaceChildren();
  sessions.sort(function (a, b) { return a.client_id < b.client_id ? -1 : 1; });
  for (const s of sessions) {
    const row = document.createElement("tr");
    row.className = "session";
    const subs = s.subscriptions.map(function (x) { return x.topic_filter + " (QoS " + x.qos + ")"; });
    for (const value of [s.client_id, s.username || "", s.connected ? "yes" : "no",
                         s.address || "", s.protocol_version || "", subs.join(", "),
                         s.queued, s.inflight]) {
      const cell = document.createElement("td");
      cell.textContent = String(value);
      row.appendChild(cell);
    }
    body.appendChild(row);
  }
}

function drawBridges(bridges) {
  const body = document.getElementById("bridges");
  body.replaceChildren();
  for (const b of bridges) {
    const row = document.createElement("tr");
    row.className = "bridge";
    for (const value of [b.name, b.state, b.address, b.connects, b.messages_out,
                         b.messages_in, b.messages_dropped, b.in_flight, b.last_error || ""]) {
      const cell = document.createElement("td");
      cell.textContent = String(value);
      row.appendChild(cell);
    }
    body.appendChild(row);
  }
}

function refresh() {
  Promise.all([api("/api/v1/stats"), api("/api/v1/sessions"), api("/api/v1/bridges")]).then(function (all) {
    text("error", "");
    drawStats(all[0]);
    drawSessions(all[1]);
    drawBridges(all[2]);
    document.body.dataset.loaded = "yes";
  }).catch(function (error) { text("error", "cannot reach the broker: " + error.message); });
}

function who(topic) {
  const list = document.getElementById("who-result");
  api("/api/v1/subscribers?topic=" + encodeURIComponent(topic)).then(function (found) {
    list.replaceChildren();
    if (!found.length) { found = [{none: true}]; }
    for (const r of found) {
      const item = document.createElement("li");
      if (r.none) {
        item.textContent = "nobody";
      } else if (r.group !== undefined) {
        item.textContent = "group " + r.group + " (" + r.topic_filter + "): " +
          r.members.map(function (m) { return m.client_id; }).join(", ") + "; next: " + r.next;
      } else {
        item.textContent = r.client_id + " via " + r.topic_filter + " (QoS " + r.qos + ")";
      }
      list.appendChild(item);
    }
  }).catch(function (error) {
    list.replaceChildren();
    const item = document.createElement("li");
    item.textContent = error.message;
    list.appendChild(item);
  });
}

document.getElementById("who").addEventListener("submit", function (event) {
  event.preventDefault();
  who(document.getElementById("who-topic").value);
});

const askedTopic = new URLSearchParams(location.search).get("topic");
if (askedTopic) {
  document.getElementById("who-topic").value = askedTopic;
  who(askedTopic);
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
"""

#: The page, encoded once.
STATUS_PAGE = _HTML.encode()
