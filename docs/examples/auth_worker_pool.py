"""Drive the sans-IO Broker yourself and run its password checks on a pool.

A password hash takes tens of milliseconds, so the broker hands each one
out as a job (inline_authentication = False) and this driver runs it on a
concurrent.futures thread pool while its own thread goes on. Two clients,
wired to the broker in memory, connect from two addresses: alice with her
password, mallory with a guess. Prints what each was told and the failure
a server would log; gives up after 10 seconds.
"""

from __future__ import annotations

import concurrent.futures
import time

from mqttproto import Broker, BrokerConfig, ClientConnection
from mqttproto.auth import AuthResult, PasswordAuthenticator, PasswordFile
from mqttproto.broker import AuthenticationJob
from mqttproto.enums import ReasonCode
from mqttproto.events import ConnectionAccepted, ConnectionRefused

passwords = PasswordFile()
passwords.set("alice", "wonderland")
authenticator = PasswordAuthenticator(passwords, allow_anonymous=False)
broker = Broker(BrokerConfig(), authenticator=authenticator)
broker.inline_authentication = False  # I run the jobs


def now() -> float:
    return time.monotonic()


clients: dict[int, tuple[str, ClientConnection]] = {}
for name, address, password in [
    ("alice", "10.0.0.7", "wonderland"),
    ("mallory", "203.0.113.9", "guess"),
]:
    conn = broker.open_connection(now(), peer=f"{address}:51234", address=address)
    client = ClientConnection()
    client.connect(client_id=name, username=name, password=password)
    clients[conn] = (name, client)

told: dict[str, str] = {}  # client name -> what the broker answered
failures: list[str] = []
running: dict[concurrent.futures.Future[AuthResult], AuthenticationJob] = {}
deadline = now() + 10.0
with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    while len(told) < len(clients) and now() < deadline:
        for conn, (_, client) in clients.items():
            data = client.data_to_send(now())
            if data:
                broker.receive_data(conn, data, now())
        for job in broker.authentication_jobs():
            running[pool.submit(job.run)] = job  # job.run() on a worker thread ...
        done, _not_done = concurrent.futures.wait(
            running, timeout=0.1, return_when=concurrent.futures.FIRST_COMPLETED
        )
        # ... and back on the broker's thread:
        for future in done:
            job = running.pop(future)
            try:
                result = future.result()
            except Exception:
                result = AuthResult.reject(ReasonCode.UNSPECIFIED_ERROR)
            broker.finish_authentication(job, result, now())
        for conn, data in broker.flush(now()):
            name, client = clients[conn]
            client.receive_data(data, now())
            for event in client.events():
                if isinstance(event, ConnectionAccepted):
                    told[name] = "accepted"
                elif isinstance(event, ConnectionRefused):
                    told[name] = f"refused, {event.reason_code.name}"
        for conn in broker.connections_to_close():  # the refused ones
            broker.connection_lost(conn, now())
        for failure in broker.failed_authentications():
            failures.append(
                f"authentication failed from {failure.address}: {failure.failures} failure(s),"
                f" next authentication from there delayed {failure.delay:.1f} s"
            )
        timer = broker.get_timer()
        if timer is not None and timer <= now():
            broker.handle_timer(now())

for name, _client in clients.values():
    print(f"{name}: {told.get(name, 'no answer within 10 s')}")
print(*failures, sep="\n")
