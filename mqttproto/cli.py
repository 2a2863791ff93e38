"""The ``mqttproto`` command line: ``python -m mqttproto <command> ...``.

Commands:

- ``passwd``: manage a password file, like ``mosquitto_passwd``.
- ``broker``: run an MQTT broker (:mod:`mqttproto.adapters.asyncio`) until
  SIGINT or SIGTERM.

Each command is a ``_add_<command>_parser(subparsers)`` function that registers
its arguments and sets ``handler`` to a ``command_<command>(args) -> int``
function; :data:`_COMMANDS` lists the registration functions. This is the only
module that reads the terminal or writes files for a command.

Exit status: 0 on success, 1 on any failure (usage errors included), with the
message on standard error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import signal
import ssl
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import NoReturn

from .auth import AclAuthorizer, Authenticator, Authorizer, PasswordAuthenticator, PasswordFile

__all__ = ["build_parser", "command_broker", "command_passwd", "main", "run"]


class _UsageError(Exception):
    """A command line argparse rejected; its message is already formatted."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors become exit status 1, not 2.

    argparse exits the process from inside parse_args(); raising instead lets
    :func:`main` return a status, so it can be called in-process by tests.
    """

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.format_usage()}{self.prog}: error: {message}")


def _fail(message: str) -> int:
    print(f"mqttproto passwd: {message}", file=sys.stderr)
    return 1


def _read_new_password() -> str | None:
    """Prompt twice; return the password, or None after printing why not."""
    try:
        first = getpass.getpass("Password: ")
        second = getpass.getpass("Reenter password: ")
    except (EOFError, KeyboardInterrupt):
        print("mqttproto passwd: no password entered", file=sys.stderr)
        return None
    if first != second:
        print("mqttproto passwd: passwords do not match", file=sys.stderr)
        return None
    return first


def command_passwd(args: argparse.Namespace) -> int:
    """``passwd``: create a password file, or add, change or delete a user in one."""
    if args.delete and (args.create or args.batch):
        return _fail("-D cannot be combined with -c or -b")
    if args.batch != (args.password is not None):
        return _fail(
            "-b needs a password argument" if args.batch else "a password argument needs -b"
        )
    if args.create:
        passwords = PasswordFile()
    else:
        try:
            passwords = PasswordFile.load(args.passwordfile)
        except FileNotFoundError:
            return _fail(f"{args.passwordfile}: no such file (use -c to create it)")
        except (OSError, ValueError) as exc:
            return _fail(f"{args.passwordfile}: {exc}")
    if args.delete:
        if args.username not in passwords:
            return _fail(f"user {args.username!r} not found in {args.passwordfile}")
        passwords.delete(args.username)
    else:
        password = args.password if args.batch else _read_new_password()
        if password is None:
            return 1
        if not password:
            return _fail("the password must not be empty")
        try:
            passwords.set(args.username, password)
        except ValueError as exc:
            return _fail(str(exc))
    try:
        passwords.save(args.passwordfile)
    except OSError as exc:
        return _fail(f"cannot write {args.passwordfile}: {exc}")
    return 0


def _add_passwd_parser(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    parser = subparsers.add_parser(
        "passwd",
        help="manage a password file (like mosquitto_passwd)",
        description="Add or change a user's password (hashed with scrypt), or delete a user. "
        "Without -b the password is prompted for twice.",
    )
    parser.add_argument("-c", dest="create", action="store_true", help="create or overwrite")
    parser.add_argument(
        "-b", dest="batch", action="store_true", help="take the password from the command line"
    )
    parser.add_argument("-D", dest="delete", action="store_true", help="delete the user")
    parser.add_argument("passwordfile", help="the password file")
    parser.add_argument("username", help="the user to add, change or delete")
    parser.add_argument("password", nargs="?", help="the password (with -b only)")
    parser.set_defaults(handler=command_passwd)


# ---------------------------------------------------------------------------
# broker


def _broker_fail(message: str) -> int:
    print(f"mqttproto broker: {message}", file=sys.stderr)
    return 1


@contextlib.contextmanager
def _logging_to_stderr(verbosity: int) -> Iterator[None]:
    """Log ``mqttproto.*`` to standard error while the command runs.

    -v: connections at INFO; -vv: DEBUG; default: warnings and errors only.
    The logger is restored afterwards, so that ``main()`` can be called
    in-process (tests) without leaving a handler behind.
    """
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("mqttproto")
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def _broker_auth(
    args: argparse.Namespace,
) -> tuple[Authenticator | None, Authorizer | None]:
    """The authenticator and authorizer the options ask for.

    :raises OSError, ValueError: a file cannot be read or parsed.
    """
    authenticator: Authenticator | None = None
    if args.password_file is not None:
        allow_anonymous = bool(args.allow_anonymous)  # None (not given): False
        authenticator = PasswordAuthenticator(
            PasswordFile.load(args.password_file), allow_anonymous=allow_anonymous
        )
    elif args.allow_anonymous is False:
        # Like mosquitto: no anonymous clients and no password file admits nobody.
        authenticator = PasswordAuthenticator(PasswordFile(), allow_anonymous=False)
    authorizer: Authorizer | None = None
    if args.acl_file is not None:
        authorizer = AclAuthorizer.load(args.acl_file)
    return authenticator, authorizer


def _tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """A server TLS context from --tls-cert/--tls-key (None without them).

    :raises OSError, ssl.SSLError: a file cannot be read or does not match.
    """
    if args.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(args.tls_cert, args.tls_key)
    return context


async def _serve_until_signalled(args: argparse.Namespace, **server_args: object) -> int:
    """Serve until SIGINT or SIGTERM, then shut down cleanly; the exit status."""
    from .adapters.asyncio import start_server

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        try:
            server = await start_server(args.host, args.port, **server_args)  # type: ignore[arg-type]
        except OSError as exc:
            return _broker_fail(f"cannot listen on {args.host}:{args.port}: {exc}")
        addresses = ", ".join(
            f"[{name[0]}]:{name[1]}" if ":" in name[0] else f"{name[0]}:{name[1]}"
            for name in (sock.getsockname() for sock in server.sockets)
        )
        tls = " (TLS)" if server_args.get("ssl") is not None else ""
        print(f"mqttproto broker listening on {addresses}{tls}", flush=True)
        try:
            await stop.wait()
        finally:
            logging.getLogger("mqttproto.broker").info("shutting down")
            await server.close()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
    return 0


def command_broker(args: argparse.Namespace) -> int:
    """``broker``: serve MQTT on ``--host``/``--port`` until SIGINT or SIGTERM (exit 0)."""
    from .config import BrokerConfig

    if args.tls_key is not None and args.tls_cert is None:
        return _broker_fail("--tls-key needs --tls-cert")
    limits: dict[str, object] = {"sys_interval": args.sys_interval}
    if args.max_packet_size is not None:
        limits["max_packet_size"] = args.max_packet_size
    try:
        config = BrokerConfig(**limits)  # type: ignore[arg-type]
    except ValueError as exc:
        return _broker_fail(str(exc))
    try:
        authenticator, authorizer = _broker_auth(args)
    except (OSError, ValueError) as exc:
        return _broker_fail(str(exc))
    try:
        context = _tls_context(args)
    except (OSError, ssl.SSLError) as exc:
        return _broker_fail(f"TLS: {exc}")
    server_args: dict[str, object] = {
        "config": config,
        "authenticator": authenticator,
        "authorizer": authorizer,
        "ssl": context,
    }
    if args.max_buffered_output is not None:
        server_args["max_buffered_output"] = args.max_buffered_output
    with _logging_to_stderr(args.verbose):
        return asyncio.run(_serve_until_signalled(args, **server_args))


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be positive, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {value}")
    return value


def _add_broker_parser(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    parser = subparsers.add_parser(
        "broker",
        help="run an MQTT 3.1/3.1.1/5.0 broker",
        description="Run an MQTT broker on HOST:PORT until SIGINT or SIGTERM, which shut it "
        "down cleanly (MQTT 5 clients get DISCONNECT 0x8B) with exit status 0.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=1883, help="TCP port (1883; 0 lets the system choose)"
    )
    parser.add_argument(
        "--allow-anonymous",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="admit clients without a username (default: yes, unless --password-file is given)",
    )
    parser.add_argument("--password-file", metavar="FILE", help="users and password hashes")
    parser.add_argument("--acl-file", metavar="FILE", help="a mosquitto-style ACL file")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log connections (-v) or everything (-vv) to standard error",
    )
    parser.add_argument(
        "--max-packet-size",
        type=_positive_int,
        metavar="BYTES",
        help="largest packet accepted from a client (default: the BrokerConfig default, 1 MiB)",
    )
    parser.add_argument(
        "--sys-interval",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="publish $SYS statistics this often (default: no $SYS)",
    )
    parser.add_argument(
        "--max-buffered-output",
        type=_positive_int,
        metavar="BYTES",
        help="drop a client that leaves more than this unread (slow consumer; 16 MiB)",
    )
    parser.add_argument("--tls-cert", metavar="FILE", help="serve TLS with this PEM certificate")
    parser.add_argument(
        "--tls-key", metavar="FILE", help="its PEM private key (if not in --tls-cert)"
    )
    parser.set_defaults(handler=command_broker)


# One registration function per command. The broker, pub and sub commands are
# added here by their own modules' _add_<name>_parser functions.
_COMMANDS: tuple[Callable[[argparse._SubParsersAction[_Parser]], None], ...] = (
    _add_passwd_parser,
    _add_broker_parser,
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = _Parser(prog="mqttproto", description="mqttproto command line tools")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_parser in _COMMANDS:
        add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; *argv* defaults to ``sys.argv[1:]``. Returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(exc, file=sys.stderr)
        return 1
    except SystemExit as exc:
        # --help and --version print and "exit" with status 0.
        return exc.code if isinstance(exc.code, int) else 0
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


def run() -> None:
    """The console-script entry point: exit with :func:`main`'s status."""
    sys.exit(main())
