"""Ed25519 signing keys: created once in the data dir, published as a JWKS.

Each key is a PEM file named ``<created>-<kid>.pem``; the newest signs, all
are published, so tokens signed before a rotation keep verifying until they
expire. ``kid`` is the RFC 7638 thumbprint of the public key.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from core.private_files import lock_file


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(public: Ed25519PublicKey) -> dict[str, str]:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64(raw)}


def thumbprint(public: Ed25519PublicKey) -> str:
    canonical = json.dumps(public_jwk(public), sort_keys=True, separators=(",", ":"))
    return _b64(hashlib.sha256(canonical.encode()).digest())


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: Ed25519PrivateKey

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    def jwk(self) -> dict[str, str]:
        return {**public_jwk(self.public), "kid": self.kid, "use": "sig", "alg": "EdDSA"}


def _to_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _from_pem(pem: bytes) -> SigningKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("signing key must be an Ed25519 private key")
    return SigningKey(thumbprint(key.public_key()), key)


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Several processes (API replicas, tests) may start at once: create under a lock."""
    fd = lock_file(directory)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_private(path: Path, pem: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


class KeyRing:
    def __init__(self, keys: list[SigningKey]):
        if not keys:
            raise ValueError("a key ring needs at least one key")
        self._keys = keys  # oldest first
        self._by_kid = {k.kid: k for k in keys}

    @classmethod
    def from_pem(cls, pem: str) -> KeyRing:
        return cls([_from_pem(pem.encode())])

    @classmethod
    def load_or_create(cls, directory: Path) -> KeyRing:
        with _locked(directory):
            files = sorted(directory.glob("*.pem"))
            if not files:
                cls._create(directory)
                files = sorted(directory.glob("*.pem"))
            return cls([_from_pem(f.read_bytes()) for f in files])

    @classmethod
    def rotate(cls, directory: Path) -> SigningKey:
        """Add a new newest key; older ones stay published until removed."""
        with _locked(directory):
            return cls._create(directory)

    @staticmethod
    def _create(directory: Path) -> SigningKey:
        key = Ed25519PrivateKey.generate()
        signing = SigningKey(thumbprint(key.public_key()), key)
        _write_private(directory / f"{time.time_ns():020d}-{signing.kid}.pem", _to_pem(key))
        return signing

    @property
    def active(self) -> SigningKey:
        return self._keys[-1]

    def get(self, kid: str) -> SigningKey | None:
        return self._by_kid.get(kid)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [k.jwk() for k in reversed(self._keys)]}


def load_or_create_single(path: Path) -> SigningKey:
    """One key in one file (the dev identity issuer's)."""
    with _locked(path.parent):
        if not path.exists():
            _write_private(path, _to_pem(Ed25519PrivateKey.generate()))
        return _from_pem(path.read_bytes())
