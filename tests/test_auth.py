"""Tests for mqttproto.auth: password hashing and files, authenticators, ACLs, CLI."""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from interop import MOSQUITTO_PASSWD, require_peer
from strategies import (
    AUTH_LITERAL_LEVELS,
    all_small_topic_names,
    client_identifiers,
    small_topic_filters,
    small_topic_names,
)

from mqttproto import ProtocolVersion, ReasonCode, topic_matches
from mqttproto.auth import (
    HMAC_SHA256_METHOD,
    Access,
    AclAuthorizer,
    AclFile,
    AclRule,
    AllowAll,
    AuthResult,
    ChallengeResponseAuthenticator,
    ConnectInfo,
    PasswordAuthenticator,
    PasswordFile,
    filter_includes,
    hash_password,
    hmac_sha256_response,
    verify_password,
)
from mqttproto.cli import build_parser, main

V5 = ProtocolVersion.MQTT_5_0
FAST = {"n": 2**4}  # scrypt cost for tests: microseconds instead of 50 ms


def fast_hash(password: str | bytes) -> str:
    return hash_password(password, **FAST)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---------------------------------------------------------------------------
# hash_password / verify_password


def test_hash_round_trip() -> None:
    encoded = fast_hash("correct horse")
    assert re.fullmatch(r"\$scrypt\$ln=4,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}", encoded)
    assert verify_password("correct horse", encoded)
    assert not verify_password("correct horsE", encoded)
    assert not verify_password("", encoded)


def test_default_cost_is_scrypt_n_2_14() -> None:
    encoded = hash_password("pw")
    assert encoded.startswith("$scrypt$ln=14,r=8,p=1$")
    assert verify_password("pw", encoded)


def test_str_password_is_its_utf8_bytes() -> None:
    encoded = fast_hash("pässwörd")
    assert verify_password("pässwörd".encode(), encoded)
    # MQTT passwords are binary: bytes that are not UTF-8 hash and verify too.
    binary = fast_hash(b"\xff\x00\xfe")
    assert verify_password(b"\xff\x00\xfe", binary)
    assert not verify_password(b"\xff\x00", binary)


def test_salt_makes_hashes_differ_and_a_given_salt_reproduces() -> None:
    assert fast_hash("pw") != fast_hash("pw")
    salted = hash_password("pw", salt=b"0123456789abcdef", **FAST)
    assert salted == hash_password("pw", salt=b"0123456789abcdef", **FAST)
    assert salted.split("$")[3] == b64(b"0123456789abcdef").rstrip("=")
    expected = hashlib.scrypt(b"pw", salt=b"0123456789abcdef", n=16, r=8, p=1, dklen=32)
    assert salted.split("$")[4] == b64(expected).rstrip("=")


@pytest.mark.parametrize(
    "params",
    [{"n": 3}, {"n": 1}, {"n": 0}, {"n": 2**21}, {"r": 0}, {"r": 33}, {"p": 0}, {"p": 17}],
)
def test_hash_rejects_bad_parameters(params: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        hash_password("pw", **params)


def test_hash_rejects_an_empty_salt() -> None:
    with pytest.raises(ValueError, match="salt"):
        hash_password("pw", salt=b"", **FAST)


def _pbkdf2(password: bytes, salt: bytes, iterations: int, length: int = 64) -> bytes:
    return hashlib.pbkdf2_hmac("sha512", password, salt, iterations, length)


def test_verify_pbkdf2_sha512() -> None:
    salt = b"saltsaltsalt"
    digest = _pbkdf2(b"secret", salt, 1000)
    encoded = f"$pbkdf2-sha512$1000${b64(salt)}${b64(digest)}"
    assert verify_password("secret", encoded)
    assert not verify_password("Secret", encoded)


def test_verify_pbkdf2_sha512_in_passlib_adapted_base64() -> None:
    # passlib writes "." for "+" and drops the padding.
    salt = bytes(range(248, 256)) * 2  # encodes with "+" and "/"
    digest = _pbkdf2(b"secret", salt, 29000)
    adapted = f"$pbkdf2-sha512$29000${b64(salt)}${b64(digest)}".replace("+", ".").replace("=", "")
    assert "." in adapted
    assert verify_password("secret", adapted)


# Written by `mosquitto_passwd -b -c file alice secret` (mosquitto 2.0.11).
MOSQUITTO_HASH = (
    "$7$101$lb+edF+5ihizKq8D$6dMpgA0/LvLbinXPBTJJhsBcYqY5U+vU4ayItdxDLGJ+uMfi5cs6"
    "HDqHkeNxLvn3eHD/qVUxB1c8iCHuF/r5Hw=="
)


def test_verify_mosquitto_format() -> None:
    assert verify_password("secret", MOSQUITTO_HASH)
    assert not verify_password("secreT", MOSQUITTO_HASH)


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "plaintext",
        "$scrypt$ln=4,r=8,p=1$c2FsdA",
        "$md5$1$c2FsdA$" + b64(bytes(16)),
        "$scrypt$ln=4,r=8$c2FsdHNhbHQ$" + b64(bytes(32)),
        "$scrypt$ln=4,r=8,p=1,x=2$c2FsdHNhbHQ$" + b64(bytes(32)),
        "$scrypt$ln=4,ln=4,p=1$c2FsdHNhbHQ$" + b64(bytes(32)),
        "$scrypt$ln=99,r=8,p=1$c2FsdHNhbHQ$" + b64(bytes(32)),
        "$scrypt$ln=20,r=32,p=16$c2FsdHNhbHQ$" + b64(bytes(32)),
        "$scrypt$ln=-4,r=8,p=1$c2FsdHNhbHQ$" + b64(bytes(32)),
        "$scrypt$ln=٤,r=8,p=1$c2FsdHNhbHQ$" + b64(bytes(32)),
        "$pbkdf2-sha512$0$c2FsdHNhbHQ$" + b64(bytes(64)),
        "$pbkdf2-sha512$99999999999999$c2FsdHNhbHQ$" + b64(bytes(64)),
        "$pbkdf2-sha512$abc$c2FsdHNhbHQ$" + b64(bytes(64)),
        "$pbkdf2-sha512$1000$!!!!$" + b64(bytes(64)),
        "$pbkdf2-sha512$1000$$" + b64(bytes(64)),
        "$pbkdf2-sha512$1000$c2FsdHNhbHQ$" + b64(bytes(8)),
        "x$7$101$c2FsdHNhbHQ$" + b64(bytes(64)),
    ],
)
def test_malformed_hashes_raise_value_error(encoded: str) -> None:
    # A malformed hash is a configuration error, not a wrong password: it raises.
    with pytest.raises(ValueError):
        verify_password("pw", encoded)


# ---------------------------------------------------------------------------
# PasswordFile


def test_password_file_parse_and_verify() -> None:
    text = (
        "# a comment\n"
        "\n"
        f"alice:{fast_hash('wonderland')}\r\n"
        f"   bob:{MOSQUITTO_HASH}   \n"
        "  # indented comment\n"
    )
    passwords = PasswordFile.parse(text)
    assert list(passwords) == ["alice", "bob"]
    assert len(passwords) == 2 and "alice" in passwords and "carol" not in passwords
    assert passwords.verify("alice", "wonderland")
    assert passwords.verify("bob", "secret")
    assert not passwords.verify("alice", "secret")
    assert not passwords.verify("carol", "wonderland")
    assert passwords["bob"] == MOSQUITTO_HASH


def test_password_file_dump_round_trip() -> None:
    passwords = PasswordFile()
    passwords.set("alice", "one", **FAST)
    passwords.set("bob", "two", **FAST)
    text = passwords.dump()
    assert text == f"alice:{passwords['alice']}\nbob:{passwords['bob']}\n"
    assert PasswordFile.parse(text) == passwords
    # Comments are not kept.
    assert PasswordFile.parse("# note\n" + text).dump() == text


def test_password_file_set_changes_and_delete_removes() -> None:
    passwords = PasswordFile()
    passwords.set("alice", "old", **FAST)
    passwords.set("alice", "new", **FAST)
    assert passwords.verify("alice", "new") and not passwords.verify("alice", "old")
    passwords.delete("alice")
    assert "alice" not in passwords and len(passwords) == 0
    with pytest.raises(KeyError):
        passwords.delete("alice")


@pytest.mark.parametrize("username", ["", "a:b", "new\nline", "tab\t", " lead", "trail ", "#x"])
def test_password_file_rejects_bad_usernames(username: str) -> None:
    with pytest.raises(ValueError):
        PasswordFile().set(username, "pw", **FAST)


@given(username=st.text(max_size=8), password=st.text(max_size=8))
def test_password_file_set_then_parse_round_trips(username: str, password: str) -> None:
    passwords = PasswordFile()
    try:
        passwords.set(username, password, n=2, r=1)
    except ValueError:
        return
    parsed = PasswordFile.parse(passwords.dump())
    assert parsed == passwords
    assert parsed.verify(username, password)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("alice\n", 1, "username:hash"),
        ("# c\n\nalice:notahash\n", 3, "encoded hash"),
        (f"alice:{MOSQUITTO_HASH}\nalice:{MOSQUITTO_HASH}\n", 2, "duplicate"),
        (f"alice:{MOSQUITTO_HASH}\n:{MOSQUITTO_HASH}\n", 2, "empty"),
        (f"alice:{MOSQUITTO_HASH}\nbob:$scrypt$ln=4,r=8,p=1$x$y\n", 2, "base64|salt|hash"),
    ],
)
def test_password_file_errors_name_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(ValueError, match=rf"line {line}: .*({message})"):
        PasswordFile.parse(text)


def test_password_file_from_mapping_validates() -> None:
    assert PasswordFile({"bob": MOSQUITTO_HASH}).verify("bob", "secret")
    with pytest.raises(ValueError):
        PasswordFile({"bob": "secret"})  # plain text is not an encoded hash


def test_password_file_save_is_private_and_atomic(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    passwords = PasswordFile()
    passwords.set("alice", "pw", **FAST)
    passwords.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # a new file
    path.write_text("old contents\n")
    path.chmod(0o646)
    passwords.save(path)
    assert path.read_text() == passwords.dump()
    # Others lose every permission; the owner's and the group's stay.
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["passwd"]  # no temp file left
    assert PasswordFile.load(path) == passwords


def test_password_file_save_keeps_the_owner_group_and_mode(tmp_path: Path) -> None:
    """A file given to the broker's group (chown root:mqttproto, chmod 0640)
    stays readable by it after a change."""
    path = tmp_path / "passwd"
    path.write_text("")
    # Root may give the file any group; another user, one of its own.
    group = 1 if os.geteuid() == 0 else os.getgid()
    os.chown(path, -1, group)
    path.chmod(0o640)
    owner = path.stat().st_uid
    passwords = PasswordFile()
    passwords.set("alice", "pw", **FAST)
    passwords.save(path)
    saved = path.stat()
    assert (saved.st_uid, saved.st_gid, stat.S_IMODE(saved.st_mode)) == (owner, group, 0o640)
    path.chmod(0o400)
    passwords.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the owner can always write it


def test_password_file_save_failure_keeps_old_file(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text("old\n")
    with pytest.raises(OSError):
        PasswordFile().save(tmp_path / "missing-dir" / "passwd")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["passwd"]


@pytest.fixture
def scrypt_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records the n of every scrypt computation."""
    calls: list[int] = []
    real = hashlib.scrypt

    def counting(password: bytes, **kwargs: int) -> bytes:
        calls.append(kwargs["n"])
        return real(password, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(hashlib, "scrypt", counting)
    return calls


def test_unknown_user_costs_a_hash_with_the_files_parameters(scrypt_calls: list[int]) -> None:
    passwords = PasswordFile({"alice": fast_hash("pw")})
    scrypt_calls.clear()
    assert not passwords.verify("nobody", "pw")
    # The same work as a wrong password for a known user: one scrypt, same cost.
    assert scrypt_calls == [16]
    assert not passwords.verify("alice", "wrong")
    assert scrypt_calls == [16, 16]


def test_unknown_user_in_an_empty_file_costs_a_default_hash(scrypt_calls: list[int]) -> None:
    assert not PasswordFile().verify("nobody", "pw")
    assert scrypt_calls == [2**14]


def test_mosquitto_passwd_files_load(tmp_path: Path) -> None:
    require_peer("mosquitto_passwd", MOSQUITTO_PASSWD)
    path = tmp_path / "pw"
    made = subprocess.run(
        [MOSQUITTO_PASSWD, "-c", "-b", str(path), "alice", "s3cret"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    passwords = PasswordFile.load(path)
    assert passwords.verify("alice", "s3cret")
    assert not passwords.verify("alice", "secret")


# ---------------------------------------------------------------------------
# AuthResult, ConnectInfo


def info(
    username: str | None = None,
    password: bytes | None = None,
    *,
    client_id: str = "client-1",
    method: str | None = None,
    data: bytes | None = None,
) -> ConnectInfo:
    return ConnectInfo(client_id, username, password, V5, method, data)


def test_auth_result_helpers() -> None:
    assert AuthResult() == AuthResult.accept()
    assert AuthResult.accept().accepted and not AuthResult.accept().continues
    challenge = AuthResult.challenge(b"nonce")
    assert challenge.continues and not challenge.accepted
    assert challenge.reason_code is ReasonCode.CONTINUE_AUTHENTICATION
    assert challenge.authentication_data == b"nonce"
    refused = AuthResult.reject()
    assert refused.reason_code is ReasonCode.NOT_AUTHORIZED
    assert not refused.accepted and not refused.continues
    bad = AuthResult.reject(ReasonCode.BAD_USER_NAME_OR_PASSWORD, "nope")
    assert bad.reason_code == 0x86 and bad.reason_string == "nope"


def test_auth_result_refuses_codes_that_are_no_answer() -> None:
    with pytest.raises(ValueError):
        AuthResult.reject(ReasonCode.SUCCESS)
    with pytest.raises(ValueError):
        AuthResult(ReasonCode.RE_AUTHENTICATE)
    assert AuthResult(0x8C).reason_code is ReasonCode.BAD_AUTHENTICATION_METHOD  # type: ignore[arg-type]


def test_connect_info_repr_hides_secrets() -> None:
    text = repr(info("alice", b"hunter2", data=b"token"))
    assert "alice" in text
    assert "hunter2" not in text and "token" not in text


# ---------------------------------------------------------------------------
# AllowAll, PasswordAuthenticator


def test_allow_all() -> None:
    allow = AllowAll()
    assert allow.authenticate(info()).accepted
    assert allow.authenticate(info("u", b"p")).accepted
    refused = allow.authenticate(info(method="SCRAM-SHA-1"))
    assert refused.reason_code is ReasonCode.BAD_AUTHENTICATION_METHOD
    assert allow.continue_authentication(info(method="X"), b"").reason_code == 0x8C
    assert allow.may_publish("c", None, "$SYS/x")
    assert allow.may_subscribe("c", "u", "#")
    assert allow.may_receive("c", "u", "a/b")


@pytest.fixture
def password_auth() -> PasswordAuthenticator:
    return PasswordAuthenticator({"alice": fast_hash("wonderland")}, allow_anonymous=False)


def test_password_authenticator_accepts_the_right_password(
    password_auth: PasswordAuthenticator,
) -> None:
    assert password_auth.authenticate(info("alice", b"wonderland")).accepted


@pytest.mark.parametrize(
    ("username", "password"),
    [("alice", b"wrong"), ("alice", None), ("alice", b""), ("bob", b"wonderland"), (None, b"x")],
)
def test_password_authenticator_bad_credentials_are_0x86(
    password_auth: PasswordAuthenticator, username: str | None, password: bytes | None
) -> None:
    result = password_auth.authenticate(info(username, password))
    assert result.reason_code is ReasonCode.BAD_USER_NAME_OR_PASSWORD


def test_password_authenticator_anonymous(password_auth: PasswordAuthenticator) -> None:
    refused = password_auth.authenticate(info())
    assert refused.reason_code is ReasonCode.NOT_AUTHORIZED
    open_auth = PasswordAuthenticator(password_auth.passwords, allow_anonymous=True)
    assert open_auth.authenticate(info()).accepted
    # Anonymous access does not make a wrong password acceptable.
    assert open_auth.authenticate(info("alice", b"wrong")).reason_code == 0x86


def test_password_authenticator_refuses_enhanced_auth(password_auth: PasswordAuthenticator) -> None:
    result = password_auth.authenticate(info("alice", b"wonderland", method="SCRAM-SHA-256"))
    assert result.reason_code is ReasonCode.BAD_AUTHENTICATION_METHOD
    again = password_auth.continue_authentication(info("alice", method="SCRAM-SHA-256"), b"x")
    assert again.reason_code is ReasonCode.BAD_AUTHENTICATION_METHOD


# ---------------------------------------------------------------------------
# ChallengeResponseAuthenticator


def counter_nonces() -> Callable[[], bytes]:
    numbers: Iterator[int] = iter(range(1, 1_000_000))
    return lambda: next(numbers).to_bytes(16, "big")


@pytest.fixture
def challenger() -> ChallengeResponseAuthenticator:
    return ChallengeResponseAuthenticator({"alice": b"k3y"}, counter_nonces())


def test_challenge_response_exchange(challenger: ChallengeResponseAuthenticator) -> None:
    connect = info("alice", client_id="c1", method=HMAC_SHA256_METHOD)
    first = challenger.authenticate(connect)
    assert first.continues
    assert first.authentication_data == (1).to_bytes(16, "big")
    answer = hmac_sha256_response(b"k3y", first.authentication_data)
    assert challenger.continue_authentication(connect, answer).accepted


def test_challenge_response_wrong_answer(challenger: ChallengeResponseAuthenticator) -> None:
    connect = info("alice", method=HMAC_SHA256_METHOD)
    nonce = challenger.authenticate(connect).authentication_data
    assert nonce is not None
    wrong = hmac_sha256_response(b"other", nonce)
    assert challenger.continue_authentication(connect, wrong).reason_code == 0x87
    assert challenger.continue_authentication(connect, None).continues  # starts over


def test_challenge_response_missing_answer(challenger: ChallengeResponseAuthenticator) -> None:
    connect = info("alice", method=HMAC_SHA256_METHOD)
    challenger.authenticate(connect)
    assert challenger.continue_authentication(connect, None).reason_code == 0x87


def test_challenge_response_unknown_user_is_challenged_then_refused(
    challenger: ChallengeResponseAuthenticator,
) -> None:
    connect = info("mallory", method=HMAC_SHA256_METHOD)
    first = challenger.authenticate(connect)
    assert first.continues  # indistinguishable from a known user so far
    assert first.authentication_data is not None
    answer = hmac_sha256_response(b"", first.authentication_data)
    assert challenger.continue_authentication(connect, answer).reason_code == 0x87


def test_challenge_response_reauthentication(challenger: ChallengeResponseAuthenticator) -> None:
    connect = info("alice", method=HMAC_SHA256_METHOD)
    nonce = challenger.authenticate(connect).authentication_data
    assert nonce is not None
    assert challenger.continue_authentication(connect, hmac_sha256_response(b"k3y", nonce)).accepted
    # Later the client sends AUTH (0x19 Re-authenticate): a fresh challenge.
    again = challenger.continue_authentication(connect, None)
    assert again.continues and again.authentication_data not in (None, nonce)
    assert again.authentication_data is not None
    answer = hmac_sha256_response(b"k3y", again.authentication_data)
    assert challenger.continue_authentication(connect, answer).accepted


def test_challenge_response_keeps_clients_apart(challenger: ChallengeResponseAuthenticator) -> None:
    one = info("alice", client_id="one", method=HMAC_SHA256_METHOD)
    two = info("alice", client_id="two", method=HMAC_SHA256_METHOD)
    nonce_one = challenger.authenticate(one).authentication_data
    nonce_two = challenger.authenticate(two).authentication_data
    assert nonce_one is not None and nonce_two is not None
    # An answer to the other connection's challenge is no answer.
    assert not challenger.continue_authentication(
        one, hmac_sha256_response(b"k3y", nonce_two)
    ).accepted
    assert challenger.continue_authentication(two, hmac_sha256_response(b"k3y", nonce_two)).accepted


def test_challenge_response_refusals(challenger: ChallengeResponseAuthenticator) -> None:
    assert challenger.authenticate(info("alice", b"pw")).reason_code == 0x8C
    assert challenger.authenticate(info("alice", method="OTHER")).reason_code == 0x8C
    assert (
        challenger.continue_authentication(info("alice", method="OTHER"), b"").reason_code == 0x8C
    )
    assert challenger.authenticate(info(method=HMAC_SHA256_METHOD)).reason_code == 0x87


def test_challenge_response_bounds_pending_challenges() -> None:
    auth = ChallengeResponseAuthenticator({"alice": b"k"}, counter_nonces(), max_pending=2)
    infos = [info("alice", client_id=f"c{i}", method=HMAC_SHA256_METHOD) for i in range(3)]
    nonces = [auth.authenticate(each).authentication_data for each in infos]
    assert all(nonce is not None for nonce in nonces)
    # c0's challenge was dropped: its answer now starts a new challenge.
    late = auth.continue_authentication(infos[0], hmac_sha256_response(b"k", nonces[0] or b""))
    assert late.continues
    assert auth.continue_authentication(
        infos[2], hmac_sha256_response(b"k", nonces[2] or b"")
    ).accepted
    with pytest.raises(ValueError):
        ChallengeResponseAuthenticator({}, counter_nonces(), max_pending=0)


def test_challenge_response_needs_a_real_nonce() -> None:
    auth = ChallengeResponseAuthenticator({"alice": b"k"}, lambda: b"")
    with pytest.raises(ValueError, match="nonce"):
        auth.authenticate(info("alice", method=HMAC_SHA256_METHOD))


# ---------------------------------------------------------------------------
# Filter inclusion


@pytest.mark.parametrize(
    ("outer", "inner", "expected"),
    [
        ("sensors/#", "sensors/+/temp", True),
        ("sensors/#", "sensors", True),
        ("sensors/#", "sensors/#", True),
        ("sensors/#", "sensor", False),
        ("sensors/+", "sensors/#", False),
        ("sensors/+", "sensors/+", True),
        ("sensors/+", "sensors/kitchen", True),
        ("sensors/+", "sensors/kitchen/temp", False),
        ("sensors/kitchen", "sensors/+", False),
        ("+/temp", "kitchen/temp", True),
        ("#", "#", True),
        ("#", "a/+/b/#", True),
        ("#", "$SYS/#", False),
        ("#", "$SYS", False),
        ("+/#", "#", True),
        ("+/+/#", "#", False),
        ("+", "#", False),
        ("a/+/#", "a/#", False),
        ("+/#", "$SYS/x", False),
        ("$SYS/#", "$SYS/broker/+", True),
        ("+", "+", True),
        ("+/+", "+", False),
        ("a/#", "a", True),
        ("a/b/#", "a", False),
        ("a//#", "a/", True),
        ("a//#", "a", False),
        ("a/+", "a/", True),
    ],
)
def test_filter_includes_examples(outer: str, inner: str, expected: bool) -> None:
    assert filter_includes(outer, inner) is expected


SMALL_NAMES = all_small_topic_names()


@given(outer=small_topic_filters(), inner=small_topic_filters())
def test_filter_includes_agrees_with_brute_force(outer: str, inner: str) -> None:
    # The definition: every topic name inner matches, outer matches too. The
    # sample is every name over the tiny alphabet, which decides it exactly.
    brute = all(topic_matches(outer, name) for name in SMALL_NAMES if topic_matches(inner, name))
    assert filter_includes(outer, inner) is brute


def test_filter_includes_agrees_with_brute_force_exhaustively_up_to_two_levels() -> None:
    # Every pair of filters of at most two levels over the tiny alphabet, so no
    # corner (like "+/#" including "#") depends on hypothesis finding it.
    levels = (*AUTH_LITERAL_LEVELS, "+")
    filters = {
        "/".join(combo) or "+"
        for depth in (1, 2)
        for combo in itertools.product(levels, repeat=depth)
    }
    filters |= {f"{prefix}#" for prefix in ("", *(f"{level}/" for level in levels))}
    names = [name for name in SMALL_NAMES if name.count("/") < 3]
    matched = {f: {name for name in names if topic_matches(f, name)} for f in filters}
    for outer in filters:
        for inner in filters:
            assert filter_includes(outer, inner) is (matched[inner] <= matched[outer]), (
                outer,
                inner,
            )


@given(outer=small_topic_filters(), inner=small_topic_filters(), name=small_topic_names())
def test_filter_includes_is_sound(outer: str, inner: str, name: str) -> None:
    if filter_includes(outer, inner) and topic_matches(inner, name):
        assert topic_matches(outer, name)


@given(a=small_topic_filters(), b=small_topic_filters(), c=small_topic_filters())
def test_filter_includes_is_a_preorder(a: str, b: str, c: str) -> None:
    assert filter_includes(a, a)
    if filter_includes(a, b) and filter_includes(b, c):
        assert filter_includes(a, c)


# ---------------------------------------------------------------------------
# ACL files

ACL_TEXT = """\
# anonymous clients
topic read public/#
topic write public/inbox

user alice
topic readwrite alice/#
topic deny alice/secret/#
topic sensors/+/temp

user bob smith
topic read	bob/#

# everyone
pattern write devices/%c/status
pattern read users/%u/#
"""


def test_acl_parse() -> None:
    acl = AclFile.parse(ACL_TEXT)
    assert acl.anonymous == (
        AclRule(Access.READ, "public/#", 2),
        AclRule(Access.WRITE, "public/inbox", 3),
    )
    assert acl.users["alice"] == (
        AclRule(Access.READWRITE, "alice/#", 6),
        AclRule(Access.DENY, "alice/secret/#", 7),
        AclRule(Access.READWRITE, "sensors/+/temp", 8),
    )
    assert acl.users["bob smith"] == (AclRule(Access.READ, "bob/#", 11),)
    assert [rule.topic_filter for rule in acl.patterns] == ["devices/%c/status", "users/%u/#"]


def test_acl_topics_may_contain_spaces_and_keywords() -> None:
    acl = AclFile.parse("topic read my topic/with spaces\ntopic read\ntopic deny deny\n")
    assert acl.anonymous == (
        AclRule(Access.READ, "my topic/with spaces", 1),
        AclRule(Access.READWRITE, "read", 2),  # one word: it is the topic
        AclRule(Access.DENY, "deny", 3),
    )


def test_acl_lines_that_look_like_a_misspelt_access_are_warned_about() -> None:
    acl = AclFile.parse(
        "topic raed alice/#\ntopic read my topic\ntopic my topic/x\n"
        "pattern mabye devices/%c\ntopic a/b c\n"
    )
    # As mosquitto reads them: no keyword, so readwrite on the whole rest.
    assert acl.anonymous[0] == AclRule(Access.READWRITE, "raed alice/#", 1)
    assert acl.warnings == (
        "line 1: topic 'raed alice/#' gives readwrite on the filter 'raed alice/#'"
        " ('raed' is not read, write, readwrite or deny)",
        "line 3: topic 'my topic/x' gives readwrite on the filter 'my topic/x'"
        " ('my' is not read, write, readwrite or deny)",
        "line 4: pattern 'mabye devices/%c' gives readwrite on the filter"
        " 'mabye devices/%c' ('mabye' is not read, write, readwrite or deny)",
    )
    assert AclFile.parse(ACL_TEXT).warnings == ()
    # Warnings are notes about the text, not part of the rules.
    assert acl == attrs.evolve(acl, warnings=())


def test_acl_user_sections_accumulate() -> None:
    acl = AclFile.parse("user a\ntopic x\nuser b\ntopic y\nuser a\ntopic z\n")
    assert [rule.topic_filter for rule in acl.users["a"]] == ["x", "z"]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("topic read a\nallow a\n", 2, "unknown keyword"),
        ("# c\nuser\n", 2, "needs a username"),
        ("topic\n", 1, "needs a topic filter"),
        ("user a\ntopic write \x00\n", 2, "U\\+0000"),
        ("topic read a/#/b\n", 1, "'#' must be the whole last level"),
        ("\n\npattern read a+/%c\n", 3, "'\\+' must occupy a whole level"),
    ],
)
def test_acl_errors_name_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(ValueError, match=rf"ACL file line {line}: .*({message})"):
        AclFile.parse(text)


def test_acl_load(tmp_path: Path) -> None:
    path = tmp_path / "acl"
    path.write_text(ACL_TEXT)
    assert AclFile.load(path) == AclFile.parse(ACL_TEXT)
    assert AclAuthorizer.load(path).may_publish("c", "alice", "alice/x")


@pytest.fixture
def acl() -> AclAuthorizer:
    return AclAuthorizer(AclFile.parse(ACL_TEXT))


def test_acl_anonymous_section_applies_only_to_anonymous(acl: AclAuthorizer) -> None:
    assert acl.may_receive("c", None, "public/news")
    assert acl.may_subscribe("c", None, "public/#")
    assert not acl.may_publish("c", None, "public/news")  # read only
    assert acl.may_publish("c", None, "public/inbox")
    assert not acl.may_receive("c", None, "private/x")
    assert not acl.may_publish("c", None, "public/inbox/x")
    # A named user does not get the anonymous rules.
    assert not acl.may_receive("c", "alice", "public/news")
    assert not acl.may_receive("c", "carol", "public/news")


def test_acl_user_section(acl: AclAuthorizer) -> None:
    assert acl.may_publish("c", "alice", "alice/notes")
    assert acl.may_receive("c", "alice", "alice")
    assert acl.may_publish("c", "alice", "sensors/kitchen/temp")
    assert not acl.may_publish("c", "alice", "sensors/kitchen/humidity")
    assert acl.may_receive("c", "bob smith", "bob/x")
    assert not acl.may_publish("c", "bob smith", "bob/x")
    assert not acl.may_publish("c", "bob", "bob/x")
    assert not acl.may_publish("c", None, "alice/notes")


def test_acl_deny_wins(acl: AclAuthorizer) -> None:
    assert not acl.may_publish("c", "alice", "alice/secret/plan")
    assert not acl.may_receive("c", "alice", "alice/secret")
    assert not acl.may_subscribe("c", "alice", "alice/secret/#")
    assert not acl.may_subscribe("c", "alice", "alice/secret/+")
    # A subscription that only overlaps the deny is allowed; delivery is checked.
    assert acl.may_subscribe("c", "alice", "alice/#")
    assert acl.may_subscribe("c", "alice", "alice/+/plan")


def test_acl_deny_wins_whatever_the_order() -> None:
    acl = AclAuthorizer(AclFile.parse("topic deny a/b\ntopic readwrite a/#\ntopic read a/b\n"))
    assert not acl.may_publish("c", None, "a/b")
    assert not acl.may_receive("c", None, "a/b")
    assert acl.may_publish("c", None, "a/c")


def test_acl_subscribe_needs_a_covering_read_grant(acl: AclAuthorizer) -> None:
    assert acl.may_subscribe("c", None, "public/+/x")
    assert acl.may_subscribe("c", None, "public")
    assert not acl.may_subscribe("c", None, "#")
    assert not acl.may_subscribe("c", None, "private/+")
    # Its own rule is write-only, but public/# grants read over it.
    assert acl.may_subscribe("c", None, "public/inbox")


def test_acl_subscribe_sensors_example() -> None:
    acl = AclAuthorizer(AclFile.parse("topic read sensors/#\ntopic read meters/+\n"))
    assert acl.may_subscribe("c", None, "sensors/+/temp")
    assert acl.may_subscribe("c", None, "sensors/#")
    assert acl.may_subscribe("c", None, "meters/+")
    assert not acl.may_subscribe("c", None, "meters/#")
    assert not acl.may_subscribe("c", None, "+/#")


def test_acl_shared_subscriptions_are_checked_by_their_filter() -> None:
    acl = AclAuthorizer(AclFile.parse("topic read sensors/#\n"))
    assert acl.may_subscribe("c", None, "$share/group/sensors/+")
    assert not acl.may_subscribe("c", None, "$share/group/meters/+")
    assert not acl.may_subscribe("c", None, "$share//sensors/+")  # malformed


def test_acl_default_deny() -> None:
    empty = AclAuthorizer(AclFile.parse("# nothing granted\n"))
    assert not empty.may_publish("c", None, "a")
    assert not empty.may_receive("c", "u", "a")
    assert not empty.may_subscribe("c", "u", "#")


def test_acl_dollar_topics_need_an_explicit_grant() -> None:
    acl = AclAuthorizer(AclFile.parse("topic readwrite #\ntopic read $SYS/broker/#\n"))
    assert acl.may_publish("c", None, "anything/at/all")
    assert not acl.may_publish("c", None, "$SYS/broker/load")
    assert acl.may_receive("c", None, "$SYS/broker/load")
    assert not acl.may_subscribe("c", None, "$SYS/#")
    assert acl.may_subscribe("c", None, "$SYS/broker/+")


def test_acl_patterns_substitute_client_id_and_username(acl: AclAuthorizer) -> None:
    assert acl.may_publish("dev1", None, "devices/dev1/status")
    assert not acl.may_publish("dev1", None, "devices/dev2/status")
    assert acl.may_receive("c", "alice", "users/alice/inbox")
    assert not acl.may_receive("c", "alice", "users/bob/inbox")
    # %u patterns say nothing about anonymous clients.
    assert not acl.may_receive("c", None, "users//inbox")
    assert not acl.may_subscribe("c", None, "users/+/inbox")


@pytest.mark.parametrize("client_id", ["+", "#", "a/b", "a/+", "x#", "#/y"])
def test_acl_wildcards_in_client_id_do_not_widen_grants(client_id: str) -> None:
    acl = AclAuthorizer(AclFile.parse("pattern readwrite devices/%c/#\n"))
    for topic in ("devices/other/status", "devices/a/b", "devices/x", "devices/a/b/c"):
        assert not acl.may_publish(client_id, None, topic)
        assert not acl.may_receive(client_id, None, topic)
    assert not acl.may_subscribe(client_id, None, "devices/#")
    assert not acl.may_subscribe(client_id, None, f"devices/{client_id}")


def test_acl_wildcards_in_username_do_not_widen_grants() -> None:
    acl = AclAuthorizer(AclFile.parse("pattern read users/%u/inbox\n"))
    assert not acl.may_receive("c", "+", "users/bob/inbox")
    assert not acl.may_subscribe("c", "+", "users/+/inbox")
    assert not acl.may_receive("c", "x/y", "users/x/y/inbox")


def test_acl_dollar_client_id_does_not_reach_sys_topics() -> None:
    acl = AclAuthorizer(AclFile.parse("pattern readwrite %c/#\n"))
    assert acl.may_publish("dev1", None, "dev1/x")
    assert not acl.may_receive("$SYS", None, "$SYS/broker/load")
    assert not acl.may_subscribe("$SYS", None, "$SYS/#")


def test_acl_unsafe_substitution_widens_a_deny() -> None:
    acl = AclAuthorizer(
        AclFile.parse("pattern readwrite shared/#\npattern deny shared/%c/private\n")
    )
    assert not acl.may_publish("dev1", None, "shared/dev1/private")
    assert acl.may_publish("dev1", None, "shared/dev2/private")
    assert acl.may_publish("dev1", None, "shared/dev2/public")
    # "a/b" spans an unknown number of levels: the deny covers all from there.
    for topic in ("shared/a/b/private", "shared/dev2/private", "shared/dev2/public", "shared"):
        assert not acl.may_publish("a/b", None, topic)
    assert not acl.may_subscribe("a/b", None, "shared/dev2/+")
    assert acl.may_subscribe("dev1", None, "shared/dev2/+")


def test_acl_substitution_is_one_pass() -> None:
    acl = AclAuthorizer(AclFile.parse("pattern readwrite home/%c\n"))
    assert acl.may_publish("%u", "bob", "home/%u")
    assert not acl.may_publish("%u", "bob", "home/bob")


@given(client_id=client_identifiers(), username=st.none() | client_identifiers())
def test_acl_pattern_grants_only_the_clients_own_subtree(
    client_id: str, username: str | None
) -> None:
    acl = AclAuthorizer(AclFile.parse("pattern readwrite devices/%c/#\n"))
    for topic in ["devices/dev1/x", f"devices/{client_id}/x", "devices/+/x", "devices/a/b/x"]:
        if "#" in topic or "+" in topic:
            continue
        if acl.may_publish(client_id, username, topic):
            safe = not any(char in client_id for char in "+#/")
            assert safe and topic.split("/")[1] == client_id


# ---------------------------------------------------------------------------
# The passwd command


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_cli_passwd_create_add_change_delete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pw"
    assert run_cli(capsys, "passwd", "-c", "-b", str(path), "alice", "one") == (0, "")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert run_cli(capsys, "passwd", "-b", str(path), "bob", "two") == (0, "")
    passwords = PasswordFile.load(path)
    assert passwords.verify("alice", "one") and passwords.verify("bob", "two")
    assert passwords["alice"].startswith("$scrypt$ln=14,")
    assert run_cli(capsys, "passwd", "-b", str(path), "alice", "three") == (0, "")
    assert PasswordFile.load(path).verify("alice", "three")
    assert run_cli(capsys, "passwd", "-D", str(path), "bob") == (0, "")
    assert list(PasswordFile.load(path)) == ["alice"]
    # -c starts over.
    assert run_cli(capsys, "passwd", "-c", "-b", str(path), "carol", "four") == (0, "")
    assert list(PasswordFile.load(path)) == ["carol"]


def test_cli_passwd_keeps_mosquitto_entries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pw"
    path.write_text(f"# from mosquitto_passwd\nalice:{MOSQUITTO_HASH}\n")
    assert run_cli(capsys, "passwd", "-b", str(path), "bob", "two") == (0, "")
    passwords = PasswordFile.load(path)
    assert passwords["alice"] == MOSQUITTO_HASH and passwords.verify("bob", "two")


@pytest.fixture
def prompts(monkeypatch: pytest.MonkeyPatch) -> list[str | BaseException]:
    """Answers for getpass.getpass, in order; an exception is raised instead."""
    answers: list[str | BaseException] = []

    def fake_getpass(prompt: str = "Password: ") -> str:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    monkeypatch.setattr("getpass.getpass", fake_getpass)
    return answers


def test_cli_passwd_prompts_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], prompts: list[str | BaseException]
) -> None:
    path = tmp_path / "pw"
    prompts.extend(["s3cret", "s3cret"])
    assert run_cli(capsys, "passwd", "-c", str(path), "alice") == (0, "")
    assert PasswordFile.load(path).verify("alice", "s3cret")
    assert prompts == []


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        (["one", "two"], "do not match"),
        (["", ""], "must not be empty"),
        ([EOFError()], "no password entered"),
        (["x", KeyboardInterrupt()], "no password entered"),
    ],
)
def test_cli_passwd_prompt_failures(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    prompts: list[str | BaseException],
    answers: list[str | BaseException],
    message: str,
) -> None:
    path = tmp_path / "pw"
    prompts.extend(answers)
    code, err = run_cli(capsys, "passwd", "-c", str(path), "alice")
    assert code == 1 and message in err
    assert not path.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-b", "{path}", "alice"], "-b needs a password"),
        (["{path}", "alice", "pw"], "needs -b"),
        (["-D", "-b", "{path}", "alice", "pw"], "-D cannot be combined"),
        (["-c", "-D", "{path}", "alice"], "-D cannot be combined"),
        (["-b", "{path}", "alice", "pw"], "no such file"),
        (["-D", "{path}", "alice"], "no such file"),
        (["-c", "-b", "{path}", "a:b", "pw"], "must not contain ':'"),
        (["-c", "-b", "{path}", "alice", ""], "must not be empty"),
        (["-c", "-b", "{missing}", "alice", "pw"], "cannot write"),
    ],
)
def test_cli_passwd_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    path, missing = tmp_path / "pw", tmp_path / "no-dir" / "pw"
    argv = [arg.format(path=path, missing=missing) for arg in args]
    code, err = run_cli(capsys, "passwd", *argv)
    assert code == 1
    assert message in err
    assert not path.exists()


def test_cli_passwd_delete_unknown_user(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "pw"
    assert run_cli(capsys, "passwd", "-c", "-b", str(path), "alice", "pw")[0] == 0
    before = path.read_text()
    code, err = run_cli(capsys, "passwd", "-D", str(path), "bob")
    assert code == 1 and "'bob' not found" in err
    assert path.read_text() == before


def test_cli_passwd_reports_malformed_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pw"
    path.write_text("# ok\nalice\n")
    code, err = run_cli(capsys, "passwd", "-b", str(path), "bob", "pw")
    assert code == 1 and "line 2" in err
    assert path.read_text() == "# ok\nalice\n"


def test_cli_usage_errors_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(capsys)
    assert code == 1 and "usage: mqttproto" in err
    code, err = run_cli(capsys, "passwd")
    assert code == 1 and "the following arguments are required" in err
    code, err = run_cli(capsys, "nosuchcommand")
    assert code == 1 and "invalid choice" in err


def test_cli_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "passwd" in capsys.readouterr().out
    assert main(["passwd", "--help"]) == 0
    assert "-D" in capsys.readouterr().out
    assert "passwd" in build_parser().format_help()


def test_python_dash_m_mqttproto(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    done = subprocess.run(
        [sys.executable, "-m", "mqttproto", "passwd", "-c", "-b", str(path), "alice", "pw"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    assert done.returncode == 0, done.stderr
    assert PasswordFile.load(path).verify("alice", "pw")
    failed = subprocess.run(
        [sys.executable, "-m", "mqttproto", "passwd", "-D", str(path), "bob"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert failed.returncode == 1 and "not found" in failed.stderr


def test_filter_includes_knows_the_empty_parent_of_slash_hash() -> None:
    # "/#" matches "/" and "/a/...", never its parent "" (no such topic name),
    # so "/+/#" covers it; found by test_filter_includes_agrees_with_brute_force.
    assert filter_includes("/+/#", "/#")
    assert filter_includes("+/+/#", "/#")
    assert not filter_includes("/+", "/#")
    assert not filter_includes("a/+/#", "a/#")
