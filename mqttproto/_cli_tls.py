"""The TLS context of ``mqttproto pub``, ``sub`` and ``rr``, with errors that
name the file and what is wrong with it.

:mod:`ssl` says ``[Errno 2] No such file or directory`` without the file's
name and ``[SSL] PEM lib`` for any certificate or key it cannot use; each
file is therefore opened and looked at first, so that the message can say
which option, which file and what is wrong.
"""

from __future__ import annotations

import argparse
import getpass
import os
import ssl
import sys

from ._cli_errors import CommandError

__all__ = ["tls_context"]

_PREFIX = "Error: Problem setting TLS options:"


def _read(option: str, path: str) -> bytes:
    """The file's bytes, or a :class:`CommandError` naming it and the reason."""
    try:
        with open(path, "rb") as file:
            return file.read()
    except FileNotFoundError:
        raise CommandError(f"{_PREFIX} {option} {path}: no such file.") from None
    except IsADirectoryError:
        raise CommandError(f"{_PREFIX} {option} {path}: is a directory, not a file.") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise CommandError(f"{_PREFIX} {option} {path}: cannot be read ({reason}).") from None


def _pem_kinds(data: bytes) -> set[str]:
    """The kinds of PEM blocks in ``data`` ("CERTIFICATE", "PRIVATE KEY", ...)."""
    kinds = set()
    for line in data.splitlines():
        line = line.strip()
        if line.startswith(b"-----BEGIN ") and line.endswith(b"-----"):
            kinds.add(line[11:-5].decode("ascii", "replace"))
    return kinds


def _load_ca(context: ssl.SSLContext, cafile: str | None, capath: str | None) -> None:
    if cafile is not None:
        data = _read("--cafile", cafile)
        if "CERTIFICATE" not in _pem_kinds(data):
            raise CommandError(
                f"{_PREFIX} --cafile {cafile}: no PEM certificate in it "
                "(expected '-----BEGIN CERTIFICATE-----')."
            )
        try:
            context.load_verify_locations(cafile=cafile)
        except ssl.SSLError as exc:
            raise CommandError(
                f"{_PREFIX} --cafile {cafile}: not a valid certificate ({exc.reason or exc})."
            ) from None
    if capath is not None:
        if not os.path.isdir(capath):
            what = "no such directory" if not os.path.exists(capath) else "not a directory"
            raise CommandError(f"{_PREFIX} --capath {capath}: {what}.")
        context.load_verify_locations(capath=capath)


def _passphrase(keyfile: str) -> bytes:
    """Asked for by OpenSSL when the key is encrypted: prompt on a terminal only."""
    if not sys.stdin.isatty():
        raise CommandError(
            f"{_PREFIX} --key {keyfile}: the key is encrypted, and there is no "
            "terminal to ask for its pass phrase."
        )
    return getpass.getpass(f"Enter PEM pass phrase for {keyfile}: ").encode()


def _load_identity(context: ssl.SSLContext, certfile: str, keyfile: str) -> None:
    cert_kinds = _pem_kinds(_read("--cert", certfile))
    if "CERTIFICATE" not in cert_kinds:
        raise CommandError(
            f"{_PREFIX} --cert {certfile}: no PEM certificate in it "
            "(expected '-----BEGIN CERTIFICATE-----')."
        )
    if not any(kind.endswith("PRIVATE KEY") for kind in _pem_kinds(_read("--key", keyfile))):
        raise CommandError(
            f"{_PREFIX} --key {keyfile}: no PEM private key in it "
            "(expected '-----BEGIN PRIVATE KEY-----' or similar)."
        )
    try:
        context.load_cert_chain(certfile, keyfile, password=lambda: _passphrase(keyfile))
    except ssl.SSLError as exc:
        reason = str(exc.reason or "")
        if "MISMATCH" in reason:
            why = f"--key {keyfile} is not the private key of --cert {certfile}"
        elif "BAD_DECRYPT" in reason:
            why = f"--key {keyfile}: wrong pass phrase"
        else:
            why = (
                f"--cert {certfile} / --key {keyfile}: cannot be used "
                f"({reason.replace('_', ' ').lower() or exc})"
            )
        raise CommandError(f"{_PREFIX} {why}.") from None


def tls_context(args: argparse.Namespace, url_tls: bool) -> ssl.SSLContext | None:
    """The client's TLS context, or None when no option asks for TLS.

    :raises CommandError: a missing, unreadable or unusable file, or
        ``--cert`` without ``--key`` (or the reverse), as mosquitto refuses.
    """
    wanted = (
        url_tls
        or any(value is not None for value in (args.cafile, args.capath, args.cert, args.key))
        or args.insecure
    )
    if not wanted:
        return None
    if (args.cert is None) != (args.key is None):
        raise CommandError(
            "Error: Both certfile and keyfile must be provided if one of them is set."
        )
    if args.cafile is None and args.capath is None:
        # No CA given: the system's, as --tls-use-os-certs would.
        context = ssl.create_default_context()
    else:
        # Only the CAs given, as mosquitto trusts them (verified, host checked).
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _load_ca(context, args.cafile, args.capath)
    if args.cert is not None:
        _load_identity(context, args.cert, args.key)
    if args.insecure:
        context.check_hostname = False
    return context
