"""Deferred authentication in the sans-IO broker core, with a fake clock.

An authenticator answers with a :class:`DeferredAuthResult`; a driver that
runs jobs itself (``inline_authentication = False``) takes them with
``Broker.authentication_jobs()`` and answers with
``Broker.finish_authentication()``. Checked on the bytes the broker writes:
the connection waits (CONNACK and the client's later packets only after the
answer), the bound on pending jobs (0x89 / return code 3), the delay after
failures per address, re-authentication, and the inline fallback for
drivers that never take jobs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mqttproto import PacketReader, ProtocolVersion, encode_packet
from mqttproto.auth import (
    AuthResult,
    ConnectInfo,
    DeferredAuthResult,
    PasswordAuthenticator,
    hash_password,
)
from mqttproto.broker import AuthenticationJob, Broker, FailedAuthentication
from mqttproto.config import BrokerConfig
from mqttproto.enums import QoS, ReasonCode
from mqttproto.packets import (
    AuthPacket,
    ConnAckPacket,
    ConnectPacket,
    DisconnectPacket,
    Packet,
    PingReqPacket,
    PingRespPacket,
    PublishPacket,
    SubAckPacket,
    SubscribePacket,
    Subscription,
)

V5 = ProtocolVersion.MQTT_5_0
V311 = ProtocolVersion.MQTT_3_1_1
FAST = {"n": 2**4}
PINGREQ = b"\xc0\x00"


class Counting:
    """Answers every CONNECT later: accepts password b"right", refuses others.

    Counts how often the deferred function ran, so a test can tell that a
    refusal came without any work.
    """

    def __init__(self) -> None:
        self.computed = 0

    def _check(self, password: bytes | None) -> AuthResult:
        self.computed += 1
        if password == b"right":
            return AuthResult.accept()
        return AuthResult.reject(ReasonCode.BAD_USER_NAME_OR_PASSWORD)

    def authenticate(self, info: ConnectInfo) -> DeferredAuthResult:
        password = info.password
        return DeferredAuthResult(lambda: self._check(password))

    def continue_authentication(self, info: ConnectInfo, data: bytes | None) -> AuthResult:
        return AuthResult.reject(ReasonCode.BAD_AUTHENTICATION_METHOD)


class Driver:
    """A broker driven by hand, with the clock at ``now``."""

    def __init__(self, authenticator: Any, config: BrokerConfig | None = None, **kw: Any) -> None:
        self.now = 100.0
        self.broker = Broker(config, authenticator=authenticator, **kw)
        self.broker.inline_authentication = False

    def open(self, address: str | None = "10.0.0.1") -> int:
        return self.broker.open_connection(self.now, peer="p", address=address)

    def send(self, conn: int, *packets: Packet | bytes, version: ProtocolVersion = V5) -> None:
        data = b"".join(
            p if isinstance(p, bytes) else encode_packet(p, version=version) for p in packets
        )
        self.broker.receive_data(conn, data, self.now)

    def output(self) -> dict[int, bytes]:
        return dict(self.broker.flush(self.now))

    def packets(self, conn: int, version: ProtocolVersion = V5) -> list[Packet]:
        return PacketReader(version=version).feed(self.output().get(conn, b""))

    def jobs(self) -> list[AuthenticationJob]:
        return self.broker.authentication_jobs()

    def run(self, job: AuthenticationJob) -> None:
        self.broker.finish_authentication(job, job.run(), self.now)

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        for _ in range(1000):
            timer = self.broker.get_timer()
            if timer is None or timer > end:
                break
            self.now = max(self.now, timer)
            self.broker.handle_timer(self.now)
        self.now = end
        self.broker.handle_timer(self.now)


def connect(password: bytes | None = b"right", client_id: str = "c", **kw: Any) -> ConnectPacket:
    return ConnectPacket(client_id, V5, username="alice", password=password, **kw)


def codes(packets: list[Packet]) -> list[ReasonCode]:
    return [p.reason_code for p in packets if isinstance(p, ConnAckPacket)]


# -- a deferred answer -----------------------------------------------------------


def test_connack_and_later_packets_wait_for_the_jobs_answer() -> None:
    driver = Driver(Counting())
    conn = driver.open()
    subscribe = SubscribePacket(1, [Subscription("a/b", QoS.AT_LEAST_ONCE)])
    driver.send(conn, connect(), subscribe, PINGREQ)
    driver.send(conn, PINGREQ)
    assert driver.packets(conn) == []
    (job,) = driver.jobs()
    assert (job.conn, job.address, job.abandoned) == (conn, "10.0.0.1", False)
    assert driver.jobs() == []  # each job is handed out once
    assert driver.broker.authenticator.computed == 0
    driver.run(job)
    answer = driver.packets(conn)
    assert [type(p) for p in answer] == [
        ConnAckPacket,
        SubAckPacket,
        PingRespPacket,
        PingRespPacket,
    ]
    assert codes(answer) == [ReasonCode.SUCCESS]
    assert driver.broker.subscriptions("c") == [Subscription("a/b", QoS.AT_LEAST_ONCE)]


def test_a_refused_connect_processes_nothing_sent_after_it() -> None:
    # [MQTT-3.1.4-5]: the PUBLISH behind a refused CONNECT is not routed.
    driver = Driver(Counting())
    listener = driver.open()
    driver.send(listener, connect(client_id="listener"))
    driver.run(driver.jobs()[0])
    driver.send(listener, SubscribePacket(1, [Subscription("#", QoS.AT_MOST_ONCE)]))
    driver.output()
    intruder = driver.open()
    driver.send(intruder, connect(b"wrong", client_id="intruder"), PublishPacket("x", b"1"))
    driver.run(driver.jobs()[0])
    output = driver.output()
    assert PacketReader(version=V5).feed(output[intruder]) == [
        ConnAckPacket(False, ReasonCode.BAD_USER_NAME_OR_PASSWORD)
    ]
    assert listener not in output
    assert intruder in driver.broker.connections_to_close()


def test_a_driver_that_takes_no_jobs_gets_them_computed_inline() -> None:
    counting = Counting()
    broker = Broker(authenticator=counting)
    assert broker.inline_authentication is True
    conn = broker.open_connection(0.0, address="10.0.0.1")
    broker.receive_data(conn, encode_packet(connect(), version=V5) + PINGREQ, 0.0)
    assert counting.computed == 1
    assert broker.authentication_jobs() == []
    packets = PacketReader(version=V5).feed(broker.data_to_send(conn, 0.0))
    assert codes(packets) == [ReasonCode.SUCCESS] and packets[1] == PingRespPacket()


def test_password_authenticator_answers_through_a_job() -> None:
    passwords = {"alice": hash_password("right", **FAST)}
    driver = Driver(PasswordAuthenticator(passwords, allow_anonymous=True))
    known, unknown, anonymous = driver.open(), driver.open(), driver.open()
    driver.send(known, connect(b"right", client_id="k"))
    driver.send(unknown, ConnectPacket("u", V5, username="nobody", password=b"right"))
    driver.send(anonymous, ConnectPacket("a", V5))
    # Anonymous needs no hash: answered at once. The unknown user waits for
    # a hash like the known one, so the answer's timing reveals nothing.
    assert codes(driver.packets(anonymous)) == [ReasonCode.SUCCESS]
    jobs = driver.jobs()
    assert sorted(job.conn for job in jobs) == [known, unknown]
    for job in jobs:
        driver.run(job)
    output = driver.output()
    assert codes(PacketReader(version=V5).feed(output[known])) == [ReasonCode.SUCCESS]
    assert codes(PacketReader(version=V5).feed(output[unknown])) == [
        ReasonCode.BAD_USER_NAME_OR_PASSWORD
    ]


# -- connections that go away ---------------------------------------------------------


def test_a_job_whose_connection_was_lost_is_dropped() -> None:
    driver = Driver(Counting(), BrokerConfig(max_pending_authentications=1))
    conn = driver.open()
    driver.send(conn, connect())
    (job,) = driver.jobs()
    driver.broker.connection_lost(conn, driver.now)
    assert job.abandoned
    driver.broker.finish_authentication(job, AuthResult.accept(), driver.now)
    assert driver.output() == {}
    assert driver.broker.sessions() == []
    # The pending place it held is free again.
    other = driver.open()
    driver.send(other, connect(client_id="other"))
    assert [j.conn for j in driver.jobs()] == [other]


def test_a_job_answered_after_the_connect_timeout_is_dropped() -> None:
    driver = Driver(Counting(), BrokerConfig(connect_timeout=5.0))
    conn = driver.open()
    driver.send(conn, connect())
    (job,) = driver.jobs()
    driver.advance(6.0)
    assert driver.broker.connections_to_close() == [conn]
    assert driver.output().get(conn, b"") == b""  # no CONNACK: it timed out
    assert job.abandoned
    driver.run(job)
    assert driver.output() == {}
    assert driver.broker.sessions() == []


def test_a_job_left_in_the_queue_is_not_handed_out_once_abandoned() -> None:
    driver = Driver(Counting())
    conn = driver.open()
    driver.send(conn, connect())
    driver.broker.connection_lost(conn, driver.now)
    assert driver.jobs() == []


def test_a_second_answer_to_a_job_is_dropped() -> None:
    driver = Driver(Counting())
    conn = driver.open()
    driver.send(conn, connect())
    (job,) = driver.jobs()
    driver.run(job)
    assert codes(driver.packets(conn)) == [ReasonCode.SUCCESS]
    driver.broker.finish_authentication(job, AuthResult.reject(), driver.now)
    assert driver.output() == {}


def test_input_held_while_authenticating_is_bounded() -> None:
    driver = Driver(Counting(), BrokerConfig(max_packet_size=1024))
    conn = driver.open()
    driver.send(conn, connect())
    driver.send(conn, PINGREQ * 600)  # 1200 bytes before CONNACK
    assert codes(driver.packets(conn)) == [ReasonCode.QUOTA_EXCEEDED]
    assert driver.broker.connections_to_close() == [conn]
    assert driver.jobs() == []


# -- the bound on pending authentications ------------------------------------------


@pytest.mark.parametrize(("version", "refusal"), [(V5, b"\x89"), (V311, b"\x03")])
def test_past_the_pending_bound_connect_is_refused_at_once_without_work(
    version: ProtocolVersion, refusal: bytes
) -> None:
    counting = Counting()
    driver = Driver(counting, BrokerConfig(max_pending_authentications=2))
    conns = [driver.open() for _ in range(3)]
    for index, conn in enumerate(conns):
        packet = ConnectPacket(f"c{index}", version, username="alice", password=b"right")
        driver.send(conn, packet, version=version)
    output = driver.output()
    # 0x89 Server busy; MQTT 3.1.1 return code 3, Server unavailable.
    assert output == {conns[2]: output[conns[2]]}
    assert output[conns[2]][:2] == b"\x20" + bytes((len(output[conns[2]]) - 2,))
    assert output[conns[2]][3:4] == refusal
    assert counting.computed == 0
    jobs = driver.jobs()
    assert [job.conn for job in jobs] == conns[:2]
    driver.run(jobs[0])
    late = driver.open()
    driver.send(
        late, ConnectPacket("late", version, username="alice", password=b"x"), version=version
    )
    assert [job.conn for job in driver.jobs()] == [late]


# -- the delay after failures -----------------------------------------------------------


def fail_once(driver: Driver, address: str) -> FailedAuthentication:
    """A CONNECT from ``address`` with a wrong password, started as soon as
    the delay allows; the failure the broker reports."""
    conn = driver.open(address)
    driver.send(conn, connect(b"wrong", client_id=f"f{conn}"))
    for _ in range(100):
        jobs = driver.jobs()
        if jobs:
            break
        driver.advance(0.25)
    (job,) = jobs
    driver.run(job)
    assert codes(driver.packets(conn)) == [ReasonCode.BAD_USER_NAME_OR_PASSWORD]
    (report,) = driver.broker.failed_authentications()
    return report


def waits(driver: Driver, address: str | None) -> float:
    """Open a connection from ``address`` and CONNECT: seconds until its job
    is handed out (which is then answered)."""
    conn = driver.open(address)
    driver.send(conn, connect(client_id=f"w{conn}"))
    start = driver.now
    for _ in range(100):
        jobs = driver.jobs()
        if jobs:
            assert [job.conn for job in jobs] == [conn]
            driver.run(jobs[0])
            return driver.now - start
        driver.advance(0.25)
    raise AssertionError(f"the CONNECT from {address} never started")


def test_failures_delay_the_next_authentication_from_that_address() -> None:
    config = BrokerConfig(auth_failure_delay=1.0, auth_failure_max_delay=8.0)
    driver = Driver(Counting(), config)
    assert fail_once(driver, "10.0.0.1") == FailedAuthentication("10.0.0.1", 1, 1.0)
    # The next CONNECT from 10.0.0.1 waits; nothing comes out meanwhile.
    conn = driver.open("10.0.0.1")
    driver.send(conn, connect())
    assert driver.jobs() == [] and driver.output() == {}
    # Another address is not delayed.
    assert waits(driver, "10.0.0.2") == 0.0
    driver.advance(0.9)
    assert driver.jobs() == []
    driver.advance(0.1)
    assert [job.conn for job in driver.jobs()] == [conn]


def test_the_delay_grows_with_failures_and_is_capped() -> None:
    config = BrokerConfig(auth_failure_delay=1.0, auth_failure_max_delay=8.0)
    driver = Driver(Counting(), config)
    reports = [fail_once(driver, "10.0.0.1") for _ in range(6)]
    assert [r.failures for r in reports] == [1, 2, 3, 4, 5, 6]
    delays = [r.delay for r in reports]
    # delay * (2**score - 1), the score falling by one a minute: about 1, 3, 7 s.
    assert delays[0] == 1.0
    assert 2.8 < delays[1] < 3.0 and 6.5 < delays[2] < 7.0
    assert delays[3:] == [8.0, 8.0, 8.0]
    assert 7.5 <= waits(driver, "10.0.0.1") <= 8.0


def test_the_delay_decays() -> None:
    config = BrokerConfig(auth_failure_delay=1.0, auth_failure_decay=60.0)
    driver = Driver(Counting(), config)
    assert fail_once(driver, "10.0.0.1").delay == 1.0
    assert fail_once(driver, "10.0.0.1").delay > 2.8
    driver.advance(30.0)
    # The delay counts from the last failure (long over), and the score fell
    # by half: this CONNECT starts at once, the next one waits 2**1.5 - 1 s.
    assert waits(driver, "10.0.0.1") == 0.0
    assert 1.5 <= waits(driver, "10.0.0.1") <= 2.0
    driver.advance(200.0)  # all forgotten
    assert waits(driver, "10.0.0.1") == 0.0
    assert waits(driver, "10.0.0.1") == 0.0
    # A failure now counts as the first again.
    assert fail_once(driver, "10.0.0.1") == FailedAuthentication("10.0.0.1", 1, 1.0)


def test_waiting_connects_from_one_address_start_one_delay_apart_in_order() -> None:
    config = BrokerConfig(auth_failure_delay=2.0, auth_failure_max_delay=2.0)
    driver = Driver(Counting(), config)
    fail_once(driver, "10.0.0.1")
    conns = [driver.open("10.0.0.1") for _ in range(3)]
    for index, conn in enumerate(conns):
        driver.send(conn, connect(client_id=f"q{index}"))
    started = []
    for _ in range(40):
        driver.advance(0.5)
        started += [(job.conn, driver.now) for job in driver.jobs()]
    assert [conn for conn, _ in started] == conns
    times = [when - 100.0 for _, when in started]
    assert times[1] - times[0] >= 1.9 and times[2] - times[1] >= 1.9


def test_an_ipv6_host_is_counted_by_its_64_prefix() -> None:
    driver = Driver(Counting(), BrokerConfig(auth_failure_delay=1.0))
    report = fail_once(driver, "2001:db8:0:7::1")
    assert report.address == "2001:db8:0:7::/64"
    assert waits(driver, "2001:db8:0:7::99") == 1.0
    assert waits(driver, "2001:db8:0:8::1") == 0.0


def test_the_table_of_addresses_is_bounded() -> None:
    config = BrokerConfig(auth_failure_addresses=3, auth_failure_max_delay=30.0)
    driver = Driver(Counting(), config)
    for host in range(1, 5):
        fail_once(driver, f"10.0.0.{host}")
    # Four failing addresses, room for three: the oldest is forgotten.
    assert waits(driver, "10.0.0.1") == 0.0
    assert waits(driver, "10.0.0.4") == 1.0


def test_no_delay_without_an_address_or_when_switched_off() -> None:
    driver = Driver(Counting())
    for _ in range(3):
        conn = driver.open(None)
        driver.send(conn, connect(b"wrong"))
        driver.run(driver.jobs()[0])
    assert driver.broker.failed_authentications() == []
    assert waits(driver, None) == 0.0
    off = Driver(Counting(), BrokerConfig(auth_failure_delay=None))
    for _ in range(3):
        conn = off.open("10.0.0.1")
        off.send(conn, connect(b"wrong"))
        off.run(off.jobs()[0])
    assert off.broker.failed_authentications() == []
    assert waits(off, "10.0.0.1") == 0.0


def test_failures_reported_on_a_connection_that_waited_count_too() -> None:
    driver = Driver(Counting(), BrokerConfig(auth_failure_delay=1.0))
    fail_once(driver, "10.0.0.1")
    conn = driver.open("10.0.0.1")
    driver.send(conn, connect(b"wrong"))
    driver.advance(1.0)
    driver.run(driver.jobs()[0])
    assert codes(driver.packets(conn)) == [ReasonCode.BAD_USER_NAME_OR_PASSWORD]
    (report,) = driver.broker.failed_authentications()
    assert report.failures == 2


# -- re-authentication ------------------------------------------------------------------


class Tokens:
    """MQTT 5 method TOKEN: the data must be b"good"; answered through jobs."""

    def _answer(self, data: bytes | None) -> Callable[[], AuthResult]:
        def check() -> AuthResult:
            if data == b"good":
                return AuthResult.accept()
            return AuthResult.reject(ReasonCode.NOT_AUTHORIZED, "bad token")

        return check

    def authenticate(self, info: ConnectInfo) -> DeferredAuthResult:
        return DeferredAuthResult(self._answer(info.authentication_data))

    def continue_authentication(self, info: ConnectInfo, data: bytes | None) -> DeferredAuthResult:
        return DeferredAuthResult(self._answer(data))


def reauth(data: bytes) -> AuthPacket:
    return AuthPacket(
        ReasonCode.RE_AUTHENTICATE, authentication_method="TOKEN", authentication_data=data
    )


def test_reauthentication_through_a_deferred_result() -> None:
    driver = Driver(Tokens())
    conn = driver.open()
    driver.send(
        conn, ConnectPacket("t", V5, authentication_method="TOKEN", authentication_data=b"good")
    )
    driver.run(driver.jobs()[0])
    assert codes(driver.packets(conn)) == [ReasonCode.SUCCESS]
    # While the re-authentication is computed, other packets flow on
    # (MQTT 5.0 section 4.12.1).
    driver.send(conn, reauth(b"good"), PingReqPacket())
    assert driver.packets(conn) == [PingRespPacket()]
    driver.run(driver.jobs()[0])
    assert driver.packets(conn) == [AuthPacket(ReasonCode.SUCCESS, authentication_method="TOKEN")]
    # A failed one ends the connection with DISCONNECT [MQTT-4.12.1-2].
    driver.send(conn, reauth(b"stolen"))
    assert driver.packets(conn) == []
    driver.run(driver.jobs()[0])
    assert driver.packets(conn) == [
        DisconnectPacket(ReasonCode.NOT_AUTHORIZED, reason_string="bad token")
    ]
    assert driver.broker.connections_to_close() == [conn]


def test_an_auth_sent_before_the_previous_one_is_answered_is_a_protocol_error() -> None:
    driver = Driver(Tokens())
    conn = driver.open()
    driver.send(
        conn, ConnectPacket("t", V5, authentication_method="TOKEN", authentication_data=b"good")
    )
    driver.run(driver.jobs()[0])
    driver.output()
    driver.send(conn, reauth(b"good"), reauth(b"good"))
    (goodbye,) = driver.packets(conn)
    assert isinstance(goodbye, DisconnectPacket)
    assert goodbye.reason_code == ReasonCode.PROTOCOL_ERROR


def test_a_reauthentication_past_the_pending_bound_is_refused_with_0x89() -> None:
    driver = Driver(Tokens(), BrokerConfig(max_pending_authentications=1))
    conn = driver.open()
    driver.send(
        conn, ConnectPacket("t", V5, authentication_method="TOKEN", authentication_data=b"good")
    )
    driver.run(driver.jobs()[0])
    driver.output()
    waiting = driver.open()
    driver.send(
        waiting, ConnectPacket("w", V5, authentication_method="TOKEN", authentication_data=b"x")
    )
    driver.send(conn, reauth(b"good"))
    (goodbye,) = driver.packets(conn)
    assert isinstance(goodbye, DisconnectPacket)
    assert goodbye.reason_code == ReasonCode.SERVER_BUSY
