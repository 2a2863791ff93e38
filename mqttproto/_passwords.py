"""Password hashing and password files (re-exported by :mod:`mqttproto.auth`).

The only I/O here is in the explicit file helpers :meth:`PasswordFile.load` and
:meth:`PasswordFile.save`; everything else is pure.

Encoded hash formats (all base64 fields use the standard alphabet; ``=`` padding
is optional on input):

- ``$scrypt$ln=<log2 n>,r=<r>,p=<p>$<salt>$<hash>``: what :func:`hash_password`
  writes (``hashlib.scrypt``, 16-byte salt, 32-byte hash).
- ``$pbkdf2-sha512$<iterations>$<salt>$<hash>``: PBKDF2-HMAC-SHA512, verified only.
  passlib's "adapted base64" (``.`` for ``+``) is accepted as well, so hashes made
  by passlib verify unchanged.
- ``$7$<iterations>$<salt>$<hash>``: PBKDF2-HMAC-SHA512 as written by
  ``mosquitto_passwd`` (mosquitto 2.x), verified only, so a mosquitto password file
  can be loaded as it is.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import stat
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import attrs

__all__ = ["PasswordFile", "hash_password", "verify_password"]

#: scrypt cost defaults: n=2**14, r=8, p=1 (16 MiB, tens of milliseconds), the
#: interactive-login parameters recommended by the scrypt paper and OWASP.
DEFAULT_SCRYPT_LN = 14
DEFAULT_SCRYPT_R = 8
DEFAULT_SCRYPT_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32

# Bounds on parameters read from an encoded hash. A password file is trusted
# configuration, but a typo such as ln=40 must not make every login try to
# allocate a terabyte or run for hours.
_MAX_SCRYPT_LN = 20
_MAX_SCRYPT_R = 32
_MAX_SCRYPT_P = 16
_MAX_SCRYPT_MEMORY = 1 << 30
_MAX_PBKDF2_ITERATIONS = 10_000_000


@attrs.frozen
class _Hash:
    """A parsed encoded hash: the algorithm, its parameters, salt and digest."""

    scheme: str  # "scrypt", "pbkdf2-sha512" or "7" (the field after the first "$")
    params: tuple[int, ...]  # scrypt: (ln, r, p); PBKDF2: (iterations,)
    salt: bytes
    digest: bytes

    def compute(self, password: bytes) -> bytes:
        if self.scheme == "scrypt":
            ln, r, p = self.params
            n = 1 << ln
            return hashlib.scrypt(
                password,
                salt=self.salt,
                n=n,
                r=r,
                p=p,
                maxmem=_scrypt_memory(n, r, p),
                dklen=len(self.digest),
            )
        (iterations,) = self.params
        return hashlib.pbkdf2_hmac("sha512", password, self.salt, iterations, len(self.digest))

    def matches(self, password: bytes) -> bool:
        # compare_digest: the comparison time does not depend on where the
        # computed and stored digests first differ.
        return hmac.compare_digest(self.compute(password), self.digest)

    def dummy(self) -> _Hash:
        """A hash with the same cost that no password matches in practice."""
        return attrs.evolve(self, salt=bytes(len(self.salt)), digest=bytes(len(self.digest)))

    @property
    def cost(self) -> tuple[object, ...]:
        """What the time of :meth:`compute` depends on: the algorithm, its
        parameters and the digest length (PBKDF2 runs once per 64 bytes of
        it). ``pbkdf2-sha512`` and mosquitto's ``7`` are the same algorithm."""
        family = "scrypt" if self.scheme == "scrypt" else "pbkdf2-sha512"
        return (family, *self.params, len(self.digest))


def _scrypt_memory(n: int, r: int, p: int) -> int:
    # OpenSSL's scrypt needs about 128*r*(n + p) bytes; add slack for its own
    # bookkeeping so that maxmem never refuses a legitimate parameter set.
    return 128 * r * (n + p + 2) + (1 << 20)


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    # "." is passlib's stand-in for "+"; it is not in the standard alphabet.
    text = text.replace(".", "+")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid base64 {text!r}") from exc


def _to_bytes(password: str | bytes) -> bytes:
    return password.encode("utf-8") if isinstance(password, str) else password


def _parse_digits(text: str) -> int:
    # At most 9 digits: int() of a huge digit string is itself slow.
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        raise ValueError(f"expected a decimal integer parameter, not {text[:20]!r}")
    return int(text)


def _check_range(what: str, value: int, high: int) -> None:
    if not 1 <= value <= high:
        raise ValueError(f"{what} must be between 1 and {high}, not {value}")


def _check_scrypt(ln: int, r: int, p: int) -> None:
    _check_range("scrypt ln (log2 n)", ln, _MAX_SCRYPT_LN)
    _check_range("scrypt r", r, _MAX_SCRYPT_R)
    _check_range("scrypt p", p, _MAX_SCRYPT_P)
    if _scrypt_memory(1 << ln, r, p) > _MAX_SCRYPT_MEMORY:
        raise ValueError(f"scrypt parameters ln={ln}, r={r}, p={p} need more than 1 GiB")


def _parse_hash(encoded: str) -> _Hash:
    """Parse an encoded hash, raising :class:`ValueError` if it is malformed."""
    fields = encoded.split("$")
    if len(fields) != 5 or fields[0]:
        raise ValueError(
            "an encoded hash has the form $<scheme>$<parameters>$<salt>$<hash>, "
            f"not {encoded[:40]!r}"
        )
    _, scheme, params_text, salt_text, digest_text = fields
    params: tuple[int, ...]
    if scheme == "scrypt":
        values: dict[str, str] = {}
        for item in params_text.split(","):
            key, sep, value = item.partition("=")
            if not sep or key in values:
                raise ValueError(f"scrypt parameters must be ln=..,r=..,p=.., not {params_text!r}")
            values[key] = value
        if set(values) != {"ln", "r", "p"}:
            raise ValueError(f"scrypt parameters must be ln=..,r=..,p=.., not {params_text!r}")
        params = (
            _parse_digits(values["ln"]),
            _parse_digits(values["r"]),
            _parse_digits(values["p"]),
        )
        _check_scrypt(*params)
    elif scheme in ("pbkdf2-sha512", "7"):
        params = (_parse_digits(params_text),)
        _check_range("PBKDF2 iterations", params[0], _MAX_PBKDF2_ITERATIONS)
    else:
        raise ValueError(f"unsupported password hash scheme {scheme!r}")
    salt = _b64decode(salt_text)
    digest = _b64decode(digest_text)
    if not salt or len(digest) < 16:
        raise ValueError("an encoded hash needs a salt and a hash of at least 16 bytes")
    return _Hash(scheme, params, salt, digest)


def hash_password(
    password: str | bytes,
    *,
    salt: bytes | None = None,
    n: int = 1 << DEFAULT_SCRYPT_LN,
    r: int = DEFAULT_SCRYPT_R,
    p: int = DEFAULT_SCRYPT_P,
) -> str:
    """Hash *password* with scrypt and return the encoded hash.

    The result looks like ``$scrypt$ln=14,r=8,p=1$<salt>$<hash>`` and carries
    everything :func:`verify_password` needs.

    :param password: the password; a :class:`str` is encoded as UTF-8 (MQTT
        carries the password as binary data, so :class:`bytes` are accepted too).
    :param salt: the salt; 16 bytes from :func:`os.urandom` when omitted. Pass one
        only for reproducible tests.
    :param n: the scrypt CPU/memory cost, a power of two between 2 and 2**20.
    :param r: the scrypt block size (1-32).
    :param p: the scrypt parallelism (1-16).
    :raises ValueError: for parameters outside those ranges or an empty salt.
    """
    if n < 2 or n & (n - 1):
        raise ValueError(f"scrypt n must be a power of two >= 2, not {n}")
    ln = n.bit_length() - 1
    _check_scrypt(ln, r, p)
    if salt is None:
        salt = os.urandom(_SALT_BYTES)
    elif not salt:
        raise ValueError("the salt must not be empty")
    digest = _Hash("scrypt", (ln, r, p), salt, bytes(_HASH_BYTES)).compute(_to_bytes(password))
    return f"$scrypt$ln={ln},r={r},p={p}${_b64encode(salt)}${_b64encode(digest)}"


def verify_password(password: str | bytes, encoded: str) -> bool:
    """Return whether *password* matches the encoded hash *encoded*.

    Accepts the scrypt format :func:`hash_password` writes and the PBKDF2-SHA512
    formats ``$pbkdf2-sha512$...`` and mosquitto's ``$7$...``. The digests are
    compared with :func:`hmac.compare_digest`.

    :raises ValueError: if *encoded* is malformed or uses an unsupported scheme.
        That is a configuration error, not a wrong password, so it is not hidden
        behind ``False``; :class:`PasswordFile` checks every hash when it parses,
        so its :meth:`~PasswordFile.verify` never raises.
    """
    return _parse_hash(encoded).matches(_to_bytes(password))


def _check_username(username: str) -> None:
    if not username:
        raise ValueError("a username must not be empty")
    if ":" in username:
        raise ValueError(f"username {username!r} must not contain ':' (the field separator)")
    # C0, DEL, C1 and the Unicode line and paragraph separators: none belongs
    # in a name, and some would split the line for readers that use splitlines().
    if any(
        ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F or char in "\u2028\u2029" for char in username
    ):
        raise ValueError(f"username {username!r} must not contain control characters")
    if username != username.strip() or username.startswith("#"):
        raise ValueError(
            f"username {username!r} must not start with '#' or start or end with whitespace"
        )


# Verified for every user of an empty file, so that such a file answers in the
# time a file of default-cost hashes would (see PasswordFile.verify).
_DEFAULT_DUMMY = _Hash(
    "scrypt",
    (DEFAULT_SCRYPT_LN, DEFAULT_SCRYPT_R, DEFAULT_SCRYPT_P),
    bytes(_SALT_BYTES),
    bytes(_HASH_BYTES),
)


def _checker(own: _Hash | None, others: list[_Hash]) -> Callable[[bytes], bool]:
    """Whether a password matches ``own``, after computing every hash in ``others``."""

    def check(password: bytes) -> bool:
        matched = own is not None and own.matches(password)
        for dummy in others:
            dummy.matches(password)
        return matched

    return check


def _keep_access(fd: int, before: os.stat_result) -> None:
    """Give the file open as ``fd`` the owner, group and owner/group mode bits
    of the file it replaces (``before``); never bits for others."""
    mode = stat.S_IMODE(before.st_mode) & 0o660 | 0o600
    if hasattr(os, "fchown"):
        try:
            os.fchown(fd, before.st_uid, before.st_gid)
        except PermissionError:
            # Not allowed to give the file away: keep the group if the
            # writer belongs to it, else grant the writer's group nothing.
            try:
                os.fchown(fd, -1, before.st_gid)
            except PermissionError:
                mode &= 0o600
    os.fchmod(fd, mode)


class PasswordFile:
    """Usernames and their encoded password hashes, one ``username:hash`` a line.

    The file format, as :meth:`parse` reads and :meth:`dump` writes it::

        # comments and blank lines are ignored
        alice:$scrypt$ln=14,r=8,p=1$<salt>$<hash>
        bob:$7$101$<salt>$<hash>

    A username is non-empty and has no ``:``, control characters, leading ``#``
    or surrounding whitespace. Every hash is checked when the file is parsed.
    Comments are not kept: :meth:`dump` writes the entries in their order.

    The mapping given to the constructor is ``username -> encoded hash``.
    """

    def __init__(self, entries: Mapping[str, str] | None = None) -> None:
        self._entries: dict[str, str] = {}
        self._parsed: dict[str, _Hash] = {}
        # One dummy hash per cost class in the file, and how many entries
        # have that class (see verify()).
        self._dummies: dict[tuple[object, ...], _Hash] = {}
        self._cost_counts: Counter[tuple[object, ...]] = Counter()
        for username, encoded in (entries or {}).items():
            self._add(username, encoded)

    def _add(self, username: str, encoded: str) -> None:
        _check_username(username)
        parsed = _parse_hash(encoded)
        if username in self._parsed:
            self._forget_cost(self._parsed[username])
        self._parsed[username] = parsed
        self._entries[username] = encoded
        self._cost_counts[parsed.cost] += 1
        self._dummies.setdefault(parsed.cost, parsed.dummy())

    def _forget_cost(self, parsed: _Hash) -> None:
        self._cost_counts[parsed.cost] -= 1
        if not self._cost_counts[parsed.cost]:
            del self._cost_counts[parsed.cost]
            del self._dummies[parsed.cost]

    @classmethod
    def parse(cls, text: str) -> PasswordFile:
        """Parse the text of a password file.

        :raises ValueError: naming the 1-based line number of the first line that
            is not ``username:hash``, repeats a username or has a malformed hash.
        """
        result = cls()
        # Lines end at "\n" only (an optional "\r" before it is stripped), so
        # line numbers are the ones an editor shows.
        for number, raw in enumerate(text.split("\n"), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            username, sep, encoded = line.partition(":")
            try:
                if not sep:
                    raise ValueError("expected 'username:hash'")
                if username in result._entries:
                    raise ValueError(f"duplicate username {username!r}")
                result._add(username, encoded)
            except ValueError as exc:
                raise ValueError(f"password file line {number}: {exc}") from exc
        return result

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PasswordFile:
        """Read and :meth:`parse` the password file at *path* (UTF-8).

        :raises OSError: if the file cannot be read.
        :raises ValueError: as :meth:`parse`.
        """
        return cls.parse(Path(path).read_text(encoding="utf-8"))

    def changed_users(self, newer: PasswordFile) -> set[str]:
        """The usernames of this file that ``newer`` removed or gave another hash.

        A client that logged in as one of them may no longer hold a valid
        password; the others' passwords are as good as they were.
        """
        entries = newer._entries
        return {user for user, encoded in self._entries.items() if entries.get(user) != encoded}

    def dump(self) -> str:
        """Return the file text: one ``username:hash`` line per entry."""
        return "".join(f"{username}:{encoded}\n" for username, encoded in self._entries.items())

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`dump` to *path* atomically, never readable by others.

        The text goes to a temporary file in the same directory, which then
        replaces *path*, so a reader never sees a half-written file and a
        crash leaves the old file intact. A new file gets mode 0o600. An
        existing one keeps its owner and group (as far as the writer may set
        them) and its owner and group permissions, so a file an
        administrator made readable by the broker's group stays readable by
        it; permissions for others are dropped.
        """
        target = Path(path)
        try:
            before: os.stat_result | None = os.stat(target)
        except FileNotFoundError:
            before = None
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", text=True)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                stream.write(self.dump())
                stream.flush()
                if before is not None:
                    _keep_access(stream.fileno(), before)
                os.fsync(stream.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def set(
        self,
        username: str,
        password: str | bytes,
        *,
        n: int = 1 << DEFAULT_SCRYPT_LN,
        r: int = DEFAULT_SCRYPT_R,
        p: int = DEFAULT_SCRYPT_P,
    ) -> None:
        """Add *username* or change its password (hashed with :func:`hash_password`).

        *n*, *r* and *p* are the scrypt costs, passed to :func:`hash_password`.

        :raises ValueError: for an invalid username or scrypt parameters.
        """
        _check_username(username)
        self._add(username, hash_password(password, n=n, r=r, p=p))

    def delete(self, username: str) -> None:
        """Remove *username*.

        :raises KeyError: if there is no such user.
        """
        del self._entries[username]
        self._forget_cost(self._parsed.pop(username))

    def verify(self, username: str, password: str | bytes) -> bool:
        """Return whether *username* exists and *password* is theirs.

        Every call costs the same, whoever asks: one hash computation of
        each *cost class* in the file (algorithm, parameters and digest
        length). A known user's own hash counts for its class; the other
        classes, and all of them for an unknown user, are verified against
        dummy hashes of that cost (an empty file: the default scrypt cost).
        So the time taken does not tell which users exist, even in a file
        that mixes kinds, such as mosquitto ``$7$`` entries (well under a
        millisecond) with scrypt ones (tens of milliseconds) while users
        migrate. Checking an unknown user against one dummy, of the most
        expensive kind or any other, would not do: the users of the other
        kinds would still answer in their own, different time.
        """
        return self.checker(username)(_to_bytes(password))

    def checker(self, username: str) -> Callable[[bytes], bool]:
        """:meth:`verify` for *username*, as a function of the password.

        The function holds what it needs (the hashes to compute), so it
        gives the same answer if the file changes meanwhile, and may be run
        on any thread: :class:`~mqttproto.auth.PasswordAuthenticator` runs
        it off the event loop.
        """
        own = self._parsed.get(username)
        dummies = self._dummies or {_DEFAULT_DUMMY.cost: _DEFAULT_DUMMY}
        others = [dummy for cost, dummy in dummies.items() if own is None or cost != own.cost]
        return _checker(own, others)

    def __contains__(self, username: object) -> bool:
        return username in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, username: str) -> str:
        """The encoded hash of *username*."""
        return self._entries[username]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PasswordFile):
            return NotImplemented
        return self._entries == other._entries

    __hash__ = None  # type: ignore[assignment]  # mutable, like dict

    def __repr__(self) -> str:
        return f"PasswordFile(<{len(self._entries)} users>)"
