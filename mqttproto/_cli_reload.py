"""What ``mqttproto broker`` reloads on SIGHUP, as mosquitto does: the
password file, the ACL file and the TLS certificate.

Each file is read and checked in full before anything changes, then swapped
in by one assignment on the event loop's thread, so a connection is checked
either against the old file or against the new one, never half of each:

- the password file: CONNECTs from then on are checked against the new one,
  and clients that logged in as a user the new file removed or gave another
  hash are disconnected (MQTT 5: DISCONNECT 0x87 *Not authorized*), as
  mosquitto drops those whose password no longer matches; their sessions
  stay for when they come back with a valid password;
- the ACL file: every publish, subscribe and delivery from then on is
  checked against the new rules, those of connected clients included;
- the TLS certificate and key (and the CA file): loaded into the server's
  :class:`ssl.SSLContext` itself, so that new handshakes, on every TLS
  listener, present the new certificate and established connections keep
  theirs. CA certificates are added to those trusted: one taken out of the
  CA file stays trusted until the broker restarts.

A file that cannot be used (missing, unreadable, malformed, a key that does
not match its certificate) keeps the old one, and one line on the log says
which file and why. Every line goes to the ``mqttproto.broker.reload``
logger, which the command line shows whatever ``-v`` says: an operator who
sent the signal wants to know what it did.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import Any

from .auth import AclFile, PasswordFile

__all__ = ["RELOAD_LOGGER", "Reloader", "log_acl_warnings"]

#: The logger of reloads (a child of ``mqttproto.broker``).
RELOAD_LOGGER = "mqttproto.broker.reload"

logger = logging.getLogger(RELOAD_LOGGER)

#: Client ids named in the log line of a reload that disconnected clients.
_SHOWN = 10


def log_acl_warnings(path: str, acl: AclFile) -> None:
    """One WARNING per line of the ACL file that looks like a mistake."""
    for warning in acl.warnings:
        logging.getLogger("mqttproto.broker").warning("ACL file %s %s", path, warning)


def _why(exc: BaseException) -> str:
    """One line for a file that could not be used."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return " ".join(str(exc).split()) or type(exc).__name__


class Reloader:
    """Reloads the files a broker was started with; :meth:`reload` on SIGHUP.

    :param settings: the broker's resolved settings (``password_file``,
        ``acl_file``, ``certfile``, ``keyfile``, ``cafile``,
        ``require_certificate``).
    :param authenticator: the :class:`~mqttproto.auth.PasswordAuthenticator`
        reading ``password_file``, if there is one.
    :param authorizer: the :class:`~mqttproto.auth.AclAuthorizer` reading
        ``acl_file``, if there is one.
    :param context: the server context made from ``certfile``, if any.
    """

    def __init__(
        self,
        settings: Any,
        authenticator: Any,
        authorizer: Any,
        context: ssl.SSLContext | None,
    ) -> None:
        self._settings = settings
        self._authenticator: Any = authenticator if settings.password_file is not None else None
        self._authorizer: Any = authorizer if settings.acl_file is not None else None
        self._context = context
        #: Disconnects the clients of the given usernames and returns their
        #: client ids; set once the broker serves.
        self.disconnect_users: Callable[[set[str]], list[str]] | None = None

    def reload(self) -> int:
        """Reload every file; the number that could not be (each is logged)."""
        logger.info("SIGHUP: reloading")
        failures = 0
        if self._authenticator is not None:
            failures += not self._reload_passwords(self._settings.password_file)
        if self._authorizer is not None:
            failures += not self._reload_acl(self._settings.acl_file)
        if self._context is not None:
            failures += not self._reload_certificate()
        if self._authenticator is None and self._authorizer is None and self._context is None:
            logger.info("SIGHUP: nothing to reload (no password, ACL or certificate file)")
        return failures

    def _reload_passwords(self, path: str) -> bool:
        try:
            passwords = PasswordFile.load(path)
        except (OSError, ValueError) as exc:
            logger.error(
                "password file %s not reloaded, keeping the previous one: %s", path, _why(exc)
            )
            return False
        changed = self._authenticator.passwords.changed_users(passwords)
        self._authenticator.passwords = passwords
        count = len(passwords)
        logger.info(
            "reloaded the password file %s (%d user%s)", path, count, "" if count == 1 else "s"
        )
        if changed and self.disconnect_users is not None:
            dropped = self.disconnect_users(changed)
            if dropped:
                shown = ", ".join(sorted(dropped)[:_SHOWN])
                more = f" and {len(dropped) - _SHOWN} more" if len(dropped) > _SHOWN else ""
                logger.info(
                    "disconnected %d client%s whose password was changed or removed: %s%s",
                    len(dropped),
                    "" if len(dropped) == 1 else "s",
                    shown,
                    more,
                )
        return True

    def _reload_acl(self, path: str) -> bool:
        try:
            acl = AclFile.load(path)
        except (OSError, ValueError) as exc:
            logger.error("ACL file %s not reloaded, keeping the previous one: %s", path, _why(exc))
            return False
        self._authorizer.acl = acl
        log_acl_warnings(path, acl)
        rules = len(acl.anonymous) + len(acl.patterns) + sum(map(len, acl.users.values()))
        logger.info("reloaded the ACL file %s (%d rule%s)", path, rules, "" if rules == 1 else "s")
        return True

    def _reload_certificate(self) -> bool:
        settings = self._settings
        certfile, keyfile, cafile = settings.certfile, settings.keyfile, settings.cafile
        # Each file is read on its own first, so that the line names the
        # one that is missing or is not PEM.
        for kind, path in (("certificate", certfile), ("key", keyfile), ("CA", cafile)):
            if path is None:
                continue
            problem = _pem_problem(path)
            if problem is not None:
                logger.error(
                    "TLS %s file %s not reloaded, keeping the previous certificate: %s",
                    kind,
                    path,
                    problem,
                )
                return False
        from .adapters._listener import server_ssl_context

        context = self._context
        assert context is not None
        try:
            # Everything is checked on a context of its own first: a key that
            # does not match leaves the live context as it was.
            server_ssl_context(
                certfile,
                keyfile,
                cafile=cafile,
                require_certificate=bool(settings.require_certificate),
            )
            context.load_cert_chain(certfile, keyfile)
            if cafile is not None:
                context.load_verify_locations(cafile=cafile)
        except (OSError, ssl.SSLError, ValueError) as exc:
            logger.error(
                "TLS certificate %s not reloaded, keeping the previous one: %s",
                certfile,
                _tls_why(exc),
            )
            return False
        logger.info("reloaded the TLS certificate %s", certfile)
        return True


def _pem_problem(path: str) -> str | None:
    """Why the file at ``path`` cannot be a PEM file, or None."""
    try:
        with open(path, "rb") as file:
            head = file.read(1 << 20)
    except OSError as exc:
        return _why(exc)
    if b"-----BEGIN " not in head:
        return "not a PEM file (no -----BEGIN line)"
    return None


def _tls_why(exc: BaseException) -> str:
    """OpenSSL's reason in words a user can act on."""
    if isinstance(exc, ssl.SSLError):
        if exc.reason == "KEY_VALUES_MISMATCH":
            return "the key does not match the certificate"
        if exc.reason is None and "PEM lib" in str(exc):
            return "no certificate and private key in PEM form"
        return (exc.reason or str(exc)).replace("_", " ").lower()
    return _why(exc)
