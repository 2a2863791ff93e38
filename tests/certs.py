"""Test certificates made with ``openssl`` (a subprocess, bounded in time).

:func:`make_pki` writes a CA, a server certificate for 127.0.0.1 and a client
certificate with a chosen subject CN, all signed by the CA, EC P-256, valid
for one day. Import with ``from certs import make_pki``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import attrs
from interop import require_peer

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
_EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


@attrs.frozen
class Pki:
    directory: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str) -> None:
    subprocess.run([OPENSSL, *args], check=True, capture_output=True, timeout=30)


def _signed(directory: Path, ca: Path, ca_key: Path, name: str, subject: str, ext: str) -> None:
    key, csr, cert = (directory / f"{name}{suffix}" for suffix in (".key", ".csr", ".pem"))
    extfile = directory / f"{name}.ext"
    extfile.write_text(ext + "\n", encoding="ascii")
    _openssl("req", "-new", *_EC, "-subj", subject, "-keyout", str(key), "-out", str(csr))
    _openssl(
        *("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key)),
        *("-CAcreateserial", "-days", "1", "-extfile", str(extfile), "-out", str(cert)),
    )


def make_pki(directory: Path, client_cn: str = "device-7") -> Pki:
    """A CA, a server certificate (CN and IP SAN 127.0.0.1), a client certificate."""
    require_peer("openssl", OPENSSL)
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    _openssl(
        *("req", "-x509", *_EC, "-days", "1", "-subj", "/CN=mqttproto test CA"),
        *("-addext", "basicConstraints=critical,CA:TRUE"),
        *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
        *("-keyout", str(ca_key), "-out", str(ca)),
    )
    _signed(
        directory,
        ca,
        ca_key,
        "server",
        "/CN=127.0.0.1",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth",
    )
    _signed(
        directory,
        ca,
        ca_key,
        "client",
        f"/O=mqttproto tests/CN={client_cn}",
        "extendedKeyUsage=clientAuth",
    )
    return Pki(
        directory,
        ca,
        directory / "server.pem",
        directory / "server.key",
        directory / "client.pem",
        directory / "client.key",
    )
