"""The ``mqttproto`` command line: ``python -m mqttproto <command> ...``.

Commands:

- ``passwd``: manage a password file, like ``mosquitto_passwd``.
- ``pub``, ``sub``, ``rr``: publish, subscribe, request/response, with
  mosquitto_pub/mosquitto_sub/mosquitto_rr's options (:mod:`._cli_pubsub`,
  :mod:`._cli_sub`).
- ``broker``: run an MQTT broker (:mod:`mqttproto.adapters.asyncio`) on
  TCP, TLS, WebSocket and Unix-socket listeners until SIGINT or SIGTERM.

Each command is a ``_add_<command>_parser(subparsers)`` function that registers
its arguments and sets ``handler`` to a ``command_<command>(args) -> int``
function; :data:`_COMMANDS` lists the registration functions. This is the only
module that reads the terminal or writes files for a command.

Exit status: 0 on success, 1 on any failure (usage errors included), with the
message on standard error; ``pub``, ``sub`` and ``rr`` use mosquitto's
statuses beyond that (:mod:`._cli_errors`).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Sequence

from ._cli_broker import add_broker_parser, broker_auth, broker_settings, command_broker
from ._cli_common import Parser as _Parser
from ._cli_common import Subparsers
from ._cli_common import UsageError as _UsageError
from ._cli_ctl import add_ctl_parser
from ._cli_pubsub import add_pub_parser, add_rr_parser, add_sub_parser
from ._cli_store import add_backup_parser
from .auth import PasswordFile

__all__ = [
    "broker_auth",
    "broker_settings",
    "build_parser",
    "command_broker",
    "command_passwd",
    "main",
    "run",
    "version_text",
]


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


def _add_passwd_parser(subparsers: Subparsers) -> None:
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


# One registration function per command; the commands other than passwd
# live in their own modules (_cli_broker, ...).
_COMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    _add_passwd_parser,
    add_broker_parser,
    add_pub_parser,
    add_sub_parser,
    add_rr_parser,
    add_ctl_parser,
    add_backup_parser,
)


def version_text() -> str:
    """What ``--version`` prints: the package version and the codec in use
    (``cython`` or ``python``), which decides how fast the broker runs."""
    from . import __version__
    from .codec import codec_implementation

    return f"mqttproto {__version__} (codec: {codec_implementation()})"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command.

    ``--version`` exists on ``mqttproto`` and on every command, as
    mosquitto's tools have it on each.
    """
    parser = _Parser(prog="mqttproto", description="mqttproto command line tools")
    version = version_text()
    parser.add_argument("--version", action="version", version=version)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_parser in _COMMANDS:
        add_parser(subparsers)
    for command in subparsers.choices.values():
        command.add_argument(
            "--version", action="version", version=version, help="show the version and exit"
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; *argv* defaults to ``sys.argv[1:]``. Returns the exit status."""
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:
            # Named by the command they were given to, not by "mqttproto".
            raise _UsageError(
                f"mqttproto {args.command}: error: unrecognized arguments: {' '.join(unknown)} "
                f"(see 'mqttproto {args.command} --help')"
            )
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
