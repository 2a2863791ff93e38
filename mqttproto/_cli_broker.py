"""``mqttproto broker``: serve a :class:`~mqttproto.broker.Broker` until SIGINT or
SIGTERM; SIGHUP reloads the password, ACL and certificate files (:mod:`._cli_reload`).

Listeners: TCP on ``--host``/``--port``; TLS (``--certfile``/``--keyfile``,
client certificates with ``--cafile``/``--require-certificate``, the
certificate's CN as the username with ``--use-identity-as-username``) on
``--tls-port`` or, without it, on ``--port``; WebSocket on ``--ws-port`` and
WebSocket over TLS on ``--wss-port`` (any request path, or only
``--ws-path``); a Unix socket at ``--unix``. ``--config FILE`` (TOML) can say
everything the flags can; a flag given on the command line wins over the file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import signal
import ssl
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ._cli_bridge import bridges_from_toml, check_bridge_files
from ._cli_common import Subparsers, positive_float, positive_int
from ._cli_config import TOML_ALIASES, add_config_arguments, config_checks, config_from
from ._cli_http import HTTP_SETTINGS, add_http_arguments, check_http_settings, start_http_listener
from ._cli_logging import LOG_SETTINGS, add_logging_arguments, broker_logging
from ._cli_reload import RELOAD_LOGGER, Reloader, log_acl_warnings
from ._cli_run import GC_THRESHOLD, tune_collector
from ._cli_store import add_store_arguments, open_store, sync_mode
from .auth import (
    AclAuthorizer,
    Authenticator,
    Authorizer,
    IdentityAuthenticator,
    PasswordAuthenticator,
    PasswordFile,
)

__all__ = ["SETTINGS", "add_broker_parser", "broker_auth", "broker_settings", "command_broker"]


def _path(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("a file name")
    return value


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("an integer")
    return value


def _float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("a number")
    return float(value)


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError("true or false")
    return value


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("a string")
    return value


def _no_flag(value: object) -> object:
    raise TypeError("read by its own reader")


#: Every setting: its TOML/argparse name, how a TOML value is checked, its
#: default, and whether it names a file (relative to the config file's folder).
#: Every BrokerConfig field is one too (:mod:`._cli_config`), default None:
#: not given, so the BrokerConfig default applies.
SETTINGS: dict[str, tuple[Callable[[object], Any], Any, bool]] = {
    "host": (_str, "127.0.0.1", False),
    "port": (_int, 1883, False),
    "allow_anonymous": (_bool, None, False),
    "password_file": (_path, None, True),
    "acl_file": (_path, None, True),
    "verbose": (_int, 0, False),
    **{name: (check, None, False) for name, check in config_checks().items()},
    "max_buffered_output": (_int, None, False),
    "certfile": (_path, None, True),
    "keyfile": (_path, None, True),
    "cafile": (_path, None, True),
    "require_certificate": (_bool, False, False),
    "use_identity_as_username": (_bool, False, False),
    "tls_port": (_int, None, False),
    "tls_handshake_timeout": (_float, None, False),
    "max_tls_handshakes": (_int, None, False),
    "ws_port": (_int, None, False),
    "wss_port": (_int, None, False),
    "ws_path": (_str, None, False),
    "unix": (_path, None, True),
    "auth_workers": (_int, None, False),
    "backlog": (_int, None, False),
    "gc_threshold": (_int, GC_THRESHOLD, False),
    **HTTP_SETTINGS,
    **LOG_SETTINGS,
    "persist": (_path, None, True),
    "sync": (sync_mode, None, False),
    # [[bridge]] tables: read by _load_config itself (bridges_from_toml).
    "bridge": (_no_flag, (), False),
}


class ConfigError(Exception):
    """The configuration cannot be used; the message says why."""


def _fail(message: str) -> int:
    print(f"mqttproto broker: {message}", file=sys.stderr)
    return 1


def _load_config(path: str) -> dict[str, Any]:
    """The settings in a TOML file, checked, with file names made absolute.

    Keys are the long option names (``tls-port`` or ``tls_port``).

    :raises ConfigError: unreadable, not TOML, an unknown key or a wrong type.
    """
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    base = Path(path).resolve().parent
    settings: dict[str, Any] = {}
    keys: dict[str, str] = {}
    for key, value in document.items():
        name = key.replace("-", "_")
        name = TOML_ALIASES.get(name, name)
        if name not in SETTINGS:
            raise ConfigError(f"{path}: unknown setting {key!r}")
        if name in keys:
            # max_keepalive and max_keep_alive, say: which one would win?
            raise ConfigError(f"{path}: {key} and {keys[name]} are the same setting")
        keys[name] = key
        if name == "bridge":
            try:
                settings[name] = bridges_from_toml(value, base)
            except ValueError as exc:
                raise ConfigError(f"{path}: {exc}") from None
            continue
        check, _, is_file = SETTINGS[name]
        try:
            value = check(value)
        except TypeError as exc:
            raise ConfigError(f"{path}: {key} must be {exc}, not {value!r}") from None
        if is_file:
            value = str(base / value)
        settings[name] = value
    return settings


def broker_settings(args: argparse.Namespace) -> argparse.Namespace:
    """Defaults, overridden by ``--config FILE``, overridden by the flags given.

    :raises ConfigError: the configuration file cannot be used.
    """
    from_file = _load_config(args.config) if args.config is not None else {}
    resolved = argparse.Namespace()
    for name, (_, default, _) in SETTINGS.items():
        value = getattr(args, name, None)
        if value is None:
            value = from_file.get(name, default)
        setattr(resolved, name, value)
    return resolved


def broker_auth(settings: argparse.Namespace) -> tuple[Authenticator | None, Authorizer | None]:
    """The authenticator and authorizer the settings ask for.

    :raises OSError, ValueError: a file cannot be read or parsed.
    """
    authenticator: Authenticator | None = None
    if settings.password_file is not None:
        allow_anonymous = bool(settings.allow_anonymous)  # None (not given): False
        authenticator = PasswordAuthenticator(
            PasswordFile.load(settings.password_file), allow_anonymous=allow_anonymous
        )
    elif settings.use_identity_as_username:
        # Usernames come from client certificates, and nothing else can
        # prove one: a client of a plain listener (TCP, WebSocket, Unix) that
        # names a user is refused rather than given that user's rights.
        authenticator = IdentityAuthenticator(allow_anonymous=settings.allow_anonymous is not False)
    elif settings.allow_anonymous is False:
        # Like mosquitto: no anonymous clients and no password file admits nobody.
        authenticator = PasswordAuthenticator(PasswordFile(), allow_anonymous=False)
    authorizer: Authorizer | None = None
    if settings.acl_file is not None:
        authorizer = AclAuthorizer.load(settings.acl_file)
    return authenticator, authorizer


def _check_tls_settings(settings: argparse.Namespace) -> None:
    """:raises ConfigError: TLS options that make no sense together."""
    if settings.certfile is None:
        for name in ("keyfile", "cafile", "tls_port", "wss_port"):
            if getattr(settings, name) is not None:
                raise ConfigError(f"--{name.replace('_', '-')} needs --certfile")
        for name in ("require_certificate", "use_identity_as_username"):
            if getattr(settings, name):
                raise ConfigError(f"--{name.replace('_', '-')} needs --certfile")
    if settings.require_certificate and settings.cafile is None:
        raise ConfigError("--require-certificate needs --cafile")
    if settings.use_identity_as_username and settings.cafile is None:
        raise ConfigError("--use-identity-as-username needs --cafile")
    for name in ("tls_handshake_timeout", "max_tls_handshakes"):
        value = getattr(settings, name)
        if value is not None and value <= 0:
            raise ConfigError(f"{name} must be positive, not {value}")
    path = settings.ws_path
    if path is not None:
        if settings.ws_port is None and settings.wss_port is None:
            raise ConfigError("--ws-path needs --ws-port or --wss-port")
        if not path.startswith("/") or any(c in path for c in "?# ") or not path.isprintable():
            raise ConfigError(f"ws_path must be a path such as /mqtt, not {path!r}")


def _listeners(settings: argparse.Namespace, context: ssl.SSLContext | None) -> list[Any]:
    """The listeners to open: TCP (or TLS), then TLS, WebSocket and Unix."""
    from .adapters._listener import Listener

    identity = bool(settings.use_identity_as_username)
    host = settings.host
    backlog = settings.backlog
    listeners = []
    if context is not None and settings.tls_port is None:
        # --certfile alone: the main port speaks TLS (the original --tls-cert).
        listeners.append(
            Listener(
                host=host,
                port=settings.port,
                ssl=context,
                use_identity_as_username=identity,
                backlog=backlog,
            )
        )
    else:
        listeners.append(Listener(host=host, port=settings.port, backlog=backlog))
    if settings.tls_port is not None:
        listeners.append(
            Listener(
                host=host,
                port=settings.tls_port,
                ssl=context,
                use_identity_as_username=identity,
                backlog=backlog,
            )
        )
    # Any request path unless --ws-path names one (as mosquitto, which
    # ignores the path).
    ws_path = settings.ws_path
    if settings.ws_port is not None:
        listeners.append(
            Listener(
                transport="websocket",
                host=host,
                port=settings.ws_port,
                websocket_path=ws_path,
                backlog=backlog,
            )
        )
    if settings.wss_port is not None:
        listeners.append(
            Listener(
                transport="websocket",
                host=host,
                port=settings.wss_port,
                ssl=context,
                use_identity_as_username=identity,
                websocket_path=ws_path,
                backlog=backlog,
            )
        )
    if settings.unix is not None:
        listeners.append(Listener(transport="unix", path=settings.unix, backlog=backlog))
    return listeners


#: The reload signal, where there is one (not on Windows).
_SIGHUP: signal.Signals | None = getattr(signal, "SIGHUP", None)


def _disconnect_users(server: Any, usernames: set[str]) -> list[str]:
    """Disconnect the clients of users whose password a reload made invalid."""
    dropped: list[str] = server.broker.disconnect_users(
        usernames, server._now(), reason_string="credentials no longer valid"
    )
    server._pump_soon()
    return dropped


async def _serve_until_signalled(
    reloader: Reloader | None = None, http: argparse.Namespace | None = None, **server_args: Any
) -> int:
    """Serve until SIGINT or SIGTERM, then shut down cleanly; the exit status.

    SIGHUP, with a ``reloader``, reloads the files (:mod:`._cli_reload`) and
    serves on.
    """
    from .adapters.asyncio import BrokerServer

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals: list[signal.Signals] = [signal.SIGINT, signal.SIGTERM]
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    if reloader is not None and _SIGHUP is not None:
        loop.add_signal_handler(_SIGHUP, reloader.reload)
        signals.append(_SIGHUP)
    try:
        server = BrokerServer(**server_args)
        try:
            await server.start()
        except (OSError, ImportError) as exc:
            return _fail(f"cannot listen: {exc}")
        if reloader is not None:
            reloader.disconnect_users = functools.partial(_disconnect_users, server)
        http_listener = None
        if http is not None:
            try:
                http_listener = await start_http_listener(server, http)
            except (OSError, ImportError) as exc:
                await server.close()
                return _fail(f"cannot listen for HTTP: {exc}")
        for endpoint in server.endpoints:
            kind = endpoint.listener.kind
            suffix = "" if kind == "TCP" else f" ({kind})"
            print(f"mqttproto broker listening on {endpoint}{suffix}", flush=True)
        if http_listener is not None:
            for host, port in http_listener.addresses:
                print(f"mqttproto broker listening on {host}:{port} (HTTP)", flush=True)
        try:
            await stop.wait()
        finally:
            logging.getLogger("mqttproto.broker").info("shutting down")
            if http_listener is not None:
                await http_listener.close()
            await server.close()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
    return 0


def command_broker(args: argparse.Namespace) -> int:
    """``broker``: serve MQTT until SIGINT or SIGTERM (exit 0); 1 if it cannot start."""
    from .adapters._listener import server_ssl_context
    from .broker import Broker
    from .store import StoreError

    try:
        settings = broker_settings(args)
        _check_tls_settings(settings)
    except ConfigError as exc:
        return _fail(str(exc))
    http_problem = check_http_settings(settings)
    if http_problem is not None:
        return _fail(http_problem)
    try:
        config = config_from(settings)
    except ValueError as exc:
        return _fail(str(exc))
    if settings.auth_workers is not None and settings.auth_workers < 1:
        return _fail(f"auth_workers must be at least 1, not {settings.auth_workers}")
    if settings.gc_threshold < 1:
        return _fail(f"gc_threshold must be at least 1, not {settings.gc_threshold}")
    try:
        authenticator, authorizer = broker_auth(settings)
    except (OSError, ValueError) as exc:
        return _fail(str(exc))
    context = None
    if settings.certfile is not None:
        try:
            context = server_ssl_context(
                settings.certfile,
                settings.keyfile,
                cafile=settings.cafile,
                require_certificate=bool(settings.require_certificate),
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            return _fail(f"TLS: {exc}")
    try:
        listeners = _listeners(settings, context)
    except ValueError as exc:
        return _fail(str(exc))
    bridge_problem = check_bridge_files(settings.bridge)
    if bridge_problem is not None:
        return _fail(bridge_problem)
    # Before the store is read: what is frozen is never collected as a
    # cycle, and restored sessions may end while the broker runs.
    tune_collector(settings.gc_threshold)
    try:
        store = open_store(settings)
    except StoreError as exc:
        return _fail(str(exc))
    server_args: dict[str, Any] = {
        "config": config,
        "authenticator": authenticator,
        "authorizer": authorizer,
        "listeners": listeners,
        "bridges": settings.bridge,
    }
    if store is not None:
        # The durable core: its flush() is the group commit, once per pump.
        server_args = {
            "broker": Broker(
                config, store=store, authenticator=authenticator, authorizer=authorizer
            ),
            "listeners": listeners,
            "bridges": settings.bridge,
        }
    for name in (
        "max_buffered_output",
        "tls_handshake_timeout",
        "max_tls_handshakes",
        "auth_workers",
    ):
        if getattr(settings, name) is not None:
            server_args[name] = getattr(settings, name)
    with contextlib.ExitStack() as stack:
        if store is not None:
            stack.callback(_close_store, store)
        reloader = Reloader(settings, authenticator, authorizer, context)
        try:
            stack.enter_context(
                broker_logging(settings.verbose, settings.log_file, settings.log_format)
            )
        except OSError as exc:
            return _fail(f"--log-file {settings.log_file}: {exc.strerror or exc}")
        stack.enter_context(_reloads_logged())
        if isinstance(authorizer, AclAuthorizer):
            log_acl_warnings(settings.acl_file, authorizer.acl)
        return asyncio.run(_serve_until_signalled(reloader, settings, **server_args))


def _close_store(store: Any) -> None:
    """Commit what the last connections' ends recorded (their sessions'
    expiry clocks; nothing unacknowledged depends on it) and close."""
    from .store import StoreError

    with contextlib.suppress(StoreError):
        store.commit()
    store.close()


@contextlib.contextmanager
def _reloads_logged() -> Iterator[None]:
    """What a reload did is logged whatever ``-v`` says (mosquitto logs it
    at its default level too); the level is restored afterwards."""
    reload_logger = logging.getLogger(RELOAD_LOGGER)
    saved = reload_logger.level
    if not reload_logger.isEnabledFor(logging.INFO):
        reload_logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        reload_logger.setLevel(saved)


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0..65535, not {value}")
    return value


def add_broker_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "broker",
        help="run an MQTT 3.1/3.1.1/5.0 broker",
        description="Run an MQTT broker until SIGINT or SIGTERM, which shut it down cleanly "
        "(MQTT 5 clients get DISCONNECT 0x8B) with exit status 0. SIGHUP reloads the "
        "password file, the ACL file and the TLS certificate, keeping the clients connected. "
        "Flags override the settings of --config.",
    )
    # Every default is None: broker_settings() tells a flag given from one
    # not given, so that flags override the configuration file.
    parser.add_argument("--config", metavar="FILE", help="a TOML file with any of these settings")
    parser.add_argument("--host", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=_port, help="TCP port (1883; 0 lets the system choose)")
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
        default=None,
        help="log connections (-v), and a packet trace (-vv), to standard error",
    )
    add_logging_arguments(parser)
    parser.add_argument(
        "--max-buffered-output",
        type=positive_int,
        metavar="BYTES",
        help="drop a client that leaves more than this unread (slow consumer; 32 MiB)",
    )
    parser.add_argument(
        "--auth-workers",
        type=positive_int,
        metavar="N",
        help="threads that check passwords off the event loop (CPUs less one, 1 to 4)",
    )
    parser.add_argument(
        "--backlog",
        type=positive_int,
        metavar="N",
        help="connections each listener's accept queue holds (100; the kernel caps it at "
        "net.core.somaxconn): raise it where thousands of clients connect at once",
    )
    parser.add_argument(
        "--gc-threshold",
        type=positive_int,
        metavar="N",
        help=f"objects allocated between two runs of the garbage collector's youngest "
        f"generation ({GC_THRESHOLD}; Python's own default is 700)",
    )
    tls = parser.add_argument_group("TLS")
    tls.add_argument(
        "--certfile",
        "--tls-cert",
        metavar="FILE",
        help="serve TLS with this PEM certificate chain (on --tls-port, else on --port)",
    )
    tls.add_argument(
        "--keyfile", "--tls-key", metavar="FILE", help="its PEM private key (if not in --certfile)"
    )
    tls.add_argument("--tls-port", type=_port, help="a TLS listener next to the TCP one (8883)")
    tls.add_argument(
        "--cafile", metavar="FILE", help="CA certificates that sign accepted client certificates"
    )
    tls.add_argument(
        "--require-certificate",
        action="store_true",
        default=None,
        help="TLS clients must present a certificate signed by --cafile",
    )
    tls.add_argument(
        "--use-identity-as-username",
        action="store_true",
        default=None,
        help="the client certificate's subject CN is the username (no password needed); "
        "without --password-file, clients of the other listeners may not give a username",
    )
    tls.add_argument(
        "--tls-handshake-timeout",
        type=positive_float,
        metavar="SECONDS",
        help="close a TLS connection whose handshake is not done this long after it was "
        "accepted (10)",
    )
    tls.add_argument(
        "--max-tls-handshakes",
        type=positive_int,
        metavar="N",
        help="TLS handshakes under way at once; a connection past it is closed before its "
        "handshake (1024)",
    )
    tls.add_argument(
        "--wss-port",
        type=_port,
        help="MQTT over WebSocket over TLS on this port, with the certificate of --certfile",
    )
    other = parser.add_argument_group("other listeners")
    other.add_argument("--ws-port", type=_port, help="MQTT over WebSocket on this port")
    other.add_argument(
        "--ws-path",
        metavar="PATH",
        help="the HTTP path WebSocket clients must ask for (default: any path); "
        "others get HTTP 404",
    )
    other.add_argument("--unix", metavar="PATH", help="a Unix socket listener at PATH")
    add_http_arguments(parser)
    add_store_arguments(parser)
    add_config_arguments(parser)
    parser.set_defaults(handler=command_broker)
