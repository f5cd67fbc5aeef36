"""A TLS-terminating gRPC proxy in front of the Temporal dev server: Debian's nginx, with test certificates.

Two listeners: ``tls`` (server TLS; the caller must send ``authorization:
Bearer <api key>``, as Temporal Cloud checks an API key) and ``mtls`` (a client
certificate signed by the test CA is required). Both pass gRPC on in plaintext
to the dev server, as a load balancer in front of a Temporal cluster does.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

API_KEY = "test-api-key-not-a-secret"  # noqa: S105


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *, ca: bool = False, server: bool = False,
) -> x509.Certificate:  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer[0] if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> None:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )


@dataclass
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # a client certificate from another CA
    stranger_key: Path


def make_certs(directory: Path) -> Certs:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("jit test CA", ca_key, None, ca=True)
    _write(directory / "ca", ca)
    issuer = (ca.subject, ca_key)
    for name, server in (("server", True), ("client", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        _write(directory / name, _cert(f"jit test {name}", key, issuer, server=server), key)
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    _write(directory / "stranger", _cert("stranger", stranger_key, None), stranger_key)
    d = directory
    return Certs(
        d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key",
        d / "stranger.crt", d / "stranger.key",
    )  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  ssl_certificate {server_cert};
  ssl_certificate_key {server_key};
  server {{
    listen 127.0.0.1:{tls_port} ssl http2;
    location / {{
      if ($http_authorization != "Bearer {api_key}") {{ return 401; }}
      grpc_pass grpc://{upstream};
    }}
  }}
  server {{
    listen 127.0.0.1:{mtls_port} ssl http2;
    ssl_client_certificate {ca};
    ssl_verify_client on;
    location / {{ grpc_pass grpc://{upstream}; }}
  }}
}}
"""


@dataclass
class Proxy:
    tls_address: str
    mtls_address: str
    certs: Certs


@contextmanager
def nginx_proxy(upstream: str, directory: Path) -> Iterator[Proxy]:
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    certs = make_certs(directory / "certs")
    tls_port, mtls_port = _free_port(), _free_port()
    conf = directory / "nginx.conf"
    conf.write_text(
        CONF.format(
            dir=directory, server_cert=certs.server_cert, server_key=certs.server_key, ca=certs.ca,
            tls_port=tls_port, mtls_port=mtls_port, upstream=upstream, api_key=API_KEY,
        )
    )  # fmt: skip
    proc = subprocess.Popen([exe, "-p", str(directory), "-c", str(conf), "-g", "daemon off;"])  # noqa: S603
    try:
        deadline = time.monotonic() + 30
        for port in (tls_port, mtls_port):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log = (directory / "error.log").read_text() if (directory / "error.log").exists() else ""
                        raise RuntimeError(f"nginx did not start: {log[-500:]}") from None
                    time.sleep(0.05)
        yield Proxy(f"127.0.0.1:{tls_port}", f"127.0.0.1:{mtls_port}", certs)
    finally:
        proc.terminate()
        proc.wait(10)
