"""How long a password check takes for an unknown user, and for a wrong
password of each hash kind, in a file that mixes mosquitto ``$7$`` entries
with scrypt ones (the documented migration path from mosquitto).

An unknown user must cost what a wrong password costs, whatever the mix, or
the time of a refusal tells which usernames exist. Medians of repeated
complete checks (the deferred result computed), GC on, in ms; the
deterministic check (the same hashes computed for everyone) is
``tests/test_auth_mixed_files.py``.

Run: ``python benchmarks/auth_timing.py`` (``--cost 14`` for the default
scrypt cost, log2 n; the default here is 10, about 2 ms a hash).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import statistics
import time

from mqttproto import ProtocolVersion
from mqttproto.auth import (
    ConnectInfo,
    DeferredAuthResult,
    PasswordAuthenticator,
    PasswordFile,
    hash_password,
)

V5 = ProtocolVersion.MQTT_5_0


def mosquitto_hash(password: bytes, iterations: int = 101) -> str:
    """What mosquitto_passwd writes: ``$7$<iterations>$<salt>$<PBKDF2-SHA512>``."""
    salt = b"0123456789ab"
    digest = hashlib.pbkdf2_hmac("sha512", password, salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def median_ms(authenticator: PasswordAuthenticator, username: str, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        info = ConnectInfo("c", username, b"wrong", V5)
        started = time.perf_counter()
        result = authenticator.authenticate(info)
        if isinstance(result, DeferredAuthResult):
            result = result.compute()
        assert not result.accepted
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cost", type=int, default=10, help="scrypt log2 n (default 10)")
    parser.add_argument("--rounds", type=int, default=41)
    args = parser.parse_args()
    passwords = PasswordFile(
        {"bob": mosquitto_hash(b"bob-pw"), "carol": hash_password("carol-pw", n=2**args.cost)}
    )
    authenticator = PasswordAuthenticator(passwords, allow_anonymous=False)
    median_ms(authenticator, "carol", 3)  # warm up
    unknown = median_ms(authenticator, "nobody", args.rounds)
    seven = median_ms(authenticator, "bob", args.rounds)
    scrypt = median_ms(authenticator, "carol", args.rounds)
    print(f"scrypt n=2**{args.cost}, $7$ at 101 iterations, median of {args.rounds} checks:")
    print(f"  unknown user            {unknown:8.3f} ms")
    print(f"  wrong password ($7$)    {seven:8.3f} ms  ({seven / unknown:.2f} x unknown)")
    print(f"  wrong password (scrypt) {scrypt:8.3f} ms  ({scrypt / unknown:.2f} x unknown)")


if __name__ == "__main__":
    main()
