"""A password file that mixes hash kinds must not tell unknown users from known ones.

The documented migration from mosquitto keeps ``$7$`` entries (PBKDF2, a
fraction of a millisecond) next to scrypt ones (milliseconds to tens of
milliseconds). Every check must then cost the same: unknown user, wrong
password for a ``$7$`` user, wrong password for a scrypt user. Checked by
counting the hash computations, which decides it whatever else the machine
is doing; ``benchmarks/auth_timing.py`` measures the times themselves.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from typing import Any

import pytest

from mqttproto import ProtocolVersion
from mqttproto.auth import (
    PasswordFile,
    hash_password,
)

V5 = ProtocolVersion.MQTT_5_0
SALT = b"0123456789ab"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def mosquitto_hash(password: bytes, iterations: int = 101) -> str:
    """What mosquitto_passwd writes: ``$7$<iterations>$<salt>$<PBKDF2-SHA512>``."""
    digest = hashlib.pbkdf2_hmac("sha512", password, SALT, iterations, 64)
    return f"$7${iterations}${b64(SALT)}${b64(digest)}"


def mixed_file(scrypt_n: int = 2**4) -> PasswordFile:
    # The $7$ entry first: a file converted from mosquitto, one user moved on.
    return PasswordFile(
        {"bob": mosquitto_hash(b"bob-pw"), "carol": hash_password("carol-pw", n=scrypt_n)}
    )


@pytest.fixture
def computations(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Records every hash computed: ("scrypt", n) or ("pbkdf2", iterations)."""
    calls: list[tuple[str, int]] = []
    scrypt, pbkdf2 = hashlib.scrypt, hashlib.pbkdf2_hmac

    def counting_scrypt(password: bytes, **kwargs: Any) -> bytes:
        calls.append(("scrypt", kwargs["n"]))
        return scrypt(password, **kwargs)

    def counting_pbkdf2(name: str, password: bytes, salt: bytes, rounds: int, *a: Any) -> bytes:
        calls.append(("pbkdf2", rounds))
        return pbkdf2(name, password, salt, rounds, *a)

    monkeypatch.setattr(hashlib, "scrypt", counting_scrypt)
    monkeypatch.setattr(hashlib, "pbkdf2_hmac", counting_pbkdf2)
    return calls


@pytest.mark.parametrize(
    ("username", "password", "expected"),
    [
        ("nobody", b"bob-pw", False),
        ("bob", b"wrong", False),
        ("carol", b"wrong", False),
        ("bob", b"bob-pw", True),
        ("carol", b"carol-pw", True),
    ],
)
def test_every_check_of_a_mixed_file_computes_one_hash_of_each_kind(
    computations: list[tuple[str, int]], username: str, password: bytes, expected: bool
) -> None:
    passwords = mixed_file()
    computations.clear()
    assert passwords.verify(username, password) is expected
    assert Counter(computations) == Counter({("pbkdf2", 101): 1, ("scrypt", 16): 1})


def test_a_deleted_kind_is_no_longer_paid_for(computations: list[tuple[str, int]]) -> None:
    passwords = mixed_file()
    passwords.delete("bob")
    computations.clear()
    assert not passwords.verify("nobody", "x")
    assert computations == [("scrypt", 16)]
    passwords.set("carol", "new", n=2**5)  # the old scrypt cost is gone with it
    computations.clear()
    assert not passwords.verify("nobody", "x")
    assert computations == [("scrypt", 32)]


def test_the_checker_holds_its_hashes_while_the_file_changes() -> None:
    passwords = mixed_file()
    check = passwords.checker("carol")
    passwords.delete("carol")
    assert check(b"carol-pw") is True
    assert passwords.checker("carol")(b"carol-pw") is False
