"""Signing keys for access tokens (RS256, ES256 or EdDSA), published as a JWKS.

Where the keys come from, in order (:func:`load_key_ring`):

- ``JIT_SIGNING_KEY_PEM``: one or more PEM private keys in one value (a secret
  in the environment);
- ``JIT_SIGNING_KEYS_PATH``: a directory of ``*.pem`` files, read only (a
  mounted secret: Kubernetes, Docker);
- else the data dir (``make run``): created once under ``signing-keys/``, as
  ``<created>-<kid>.pem``, with a new key whenever ``JIT_TOKEN_ALGORITHM`` asks
  for an algorithm none of the keys has.

Every key is published, so tokens signed before a rotation keep verifying
until they expire. The key that signs is ``JIT_SIGNING_KEY_ID`` (a kid), else
the newest key of ``JIT_TOKEN_ALGORITHM`` (of keys an operator gave, the newest
key when that setting is not set). ``kid`` is the RFC 7638 thumbprint
of the public key; each key verifies with its own algorithm only, whatever a
token's header says.
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
from typing import TYPE_CHECKING, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from core.private_files import lock_file

if TYPE_CHECKING:
    from core.settings import Settings

Algorithm = Literal["RS256", "ES256", "EdDSA"]
ALGORITHMS: tuple[Algorithm, ...] = ("RS256", "ES256", "EdDSA")
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
RSA_BITS = 2048  # what RFC 7518 asks at least, and what the big identity providers sign with


class SigningKeyError(ValueError):
    """A key that cannot sign access tokens (wrong type, curve or size), or no key at all."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int(n: int, size: int | None = None) -> str:
    return _b64(n.to_bytes(size or (n.bit_length() + 7) // 8, "big"))


def public_jwk(public: PublicKey) -> dict[str, str]:
    """The public key's RFC 7638 required members, and only those (the thumbprint hashes them)."""
    if isinstance(public, rsa.RSAPublicKey):
        nums = public.public_numbers()
        return {"e": _int(nums.e), "kty": "RSA", "n": _int(nums.n)}
    if isinstance(public, ec.EllipticCurvePublicKey):
        nums = public.public_numbers()
        return {"crv": "P-256", "kty": "EC", "x": _int(nums.x, 32), "y": _int(nums.y, 32)}
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"crv": "Ed25519", "kty": "OKP", "x": _b64(raw)}


def thumbprint(public: PublicKey) -> str:
    canonical = json.dumps(public_jwk(public), sort_keys=True, separators=(",", ":"))
    return _b64(hashlib.sha256(canonical.encode()).digest())


def algorithm_of(key: object) -> Algorithm:
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < RSA_BITS:
            raise SigningKeyError(f"an RSA signing key needs at least {RSA_BITS} bits, this one has {key.key_size}")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise SigningKeyError(f"an EC signing key must be on P-256 (ES256), not {key.curve.name}")
        return "ES256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    raise SigningKeyError("a signing key must be an RSA (RS256), EC P-256 (ES256) or Ed25519 (EdDSA) private key")


def generate(algorithm: Algorithm) -> PrivateKey:
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: PrivateKey
    alg: Algorithm

    @classmethod
    def of(cls, private: PrivateKey) -> SigningKey:
        alg = algorithm_of(private)  # first: only a key fit to sign has a JWK
        return cls(thumbprint(private.public_key()), private, alg)

    @property
    def public(self) -> PublicKey:
        return self.private.public_key()

    def jwk(self) -> dict[str, str]:
        return {**public_jwk(self.public), "kid": self.kid, "use": "sig", "alg": self.alg}

    def pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def _from_pem(pem: bytes, where: str = "signing key") -> SigningKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        # Never the PEM itself in the message: it is the secret.
        raise SigningKeyError(f"{where}: not an unencrypted PEM private key") from e
    try:
        return SigningKey.of(key)  # type: ignore[arg-type]
    except SigningKeyError as e:
        raise SigningKeyError(f"{where}: {e}") from None


def split_pems(text: str) -> list[bytes]:
    """Every ``-----BEGIN … PRIVATE KEY-----`` block of ``text``."""
    blocks, current = [], []
    for line in text.strip().splitlines():
        line = line.strip()
        if line.startswith("-----BEGIN"):
            current = [line]
        elif current:
            current.append(line)
            if line.startswith("-----END"):
                blocks.append("\n".join(current).encode() + b"\n")
                current = []
    return blocks


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


def write_key(directory: Path, key: SigningKey) -> Path:
    """A new key file, named so that files sort oldest first."""
    path = directory / f"{time.time_ns():020d}-{key.kid}.pem"
    _write_private(path, key.pem())
    return path


class KeyRing:
    def __init__(self, keys: list[SigningKey], *, active_kid: str | None = None, algorithm: Algorithm | None = None):
        """``keys`` oldest first. Signs with ``active_kid``, else the newest of ``algorithm``, else the newest."""
        if not keys:
            raise SigningKeyError("no signing key")
        self._keys = keys
        self._by_kid = {k.kid: k for k in keys}
        if active_kid is not None:
            if active_kid not in self._by_kid:
                raise SigningKeyError(f"JIT_SIGNING_KEY_ID {active_kid!r} names none of the signing keys")
            self._active = self._by_kid[active_kid]
        else:
            of_alg = [k for k in keys if algorithm is None or k.alg == algorithm]
            if not of_alg:
                raise SigningKeyError(f"no {algorithm} key among the signing keys (JIT_TOKEN_ALGORITHM)")
            self._active = of_alg[-1]

    @classmethod
    def from_pem(cls, pem: str, *, active_kid: str | None = None, algorithm: Algorithm | None = None) -> KeyRing:
        blocks = split_pems(pem)
        keys = [_from_pem(b, f"JIT_SIGNING_KEY_PEM key {i + 1}") for i, b in enumerate(blocks)]
        return cls(keys, active_kid=active_kid, algorithm=algorithm)

    @classmethod
    def from_directory(
        cls, directory: Path, *, active_kid: str | None = None, algorithm: Algorithm | None = None
    ) -> KeyRing:
        """Every ``*.pem`` in ``directory`` (a mounted secret), oldest (by name) first; nothing is written."""
        files = sorted(directory.glob("*.pem"))
        return cls([_from_pem(f.read_bytes(), str(f)) for f in files], active_kid=active_kid, algorithm=algorithm)

    @classmethod
    def load_or_create(cls, directory: Path, algorithm: Algorithm = "RS256") -> KeyRing:
        """The data dir's keys; one of ``algorithm`` created if none is (first start, or a new algorithm)."""
        with _locked(directory):
            keys = [_from_pem(f.read_bytes(), str(f)) for f in sorted(directory.glob("*.pem"))]
            if not any(k.alg == algorithm for k in keys):
                key = SigningKey.of(generate(algorithm))
                write_key(directory, key)
                keys.append(key)
            return cls(keys, algorithm=algorithm)

    @classmethod
    def rotate(cls, directory: Path, algorithm: Algorithm = "RS256") -> SigningKey:
        """Add a new newest key; older ones stay published until removed."""
        with _locked(directory):
            key = SigningKey.of(generate(algorithm))
            write_key(directory, key)
            return key

    @property
    def active(self) -> SigningKey:
        return self._active

    @property
    def keys(self) -> list[SigningKey]:
        return list(self._keys)

    def get(self, kid: str) -> SigningKey | None:
        return self._by_kid.get(kid)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The signing key first, then the others newest first."""
        rest = [k for k in reversed(self._keys) if k is not self._active]
        return {"keys": [k.jwk() for k in [self._active, *rest]]}


def load_key_ring(settings: Settings) -> KeyRing:
    """The API's key ring, from wherever the settings say (module docstring)."""
    alg, kid = settings.token_algorithm, settings.signing_key_id
    # Keys an operator gave: JIT_TOKEN_ALGORITHM, when set, must find a key of its own; left
    # unset, the newest key signs, whatever its algorithm (a deployment's Ed25519 key from
    # before the setting existed keeps working).
    given_alg = alg if "token_algorithm" in settings.model_fields_set else None
    if settings.signing_key_pem:
        return KeyRing.from_pem(settings.signing_key_pem, active_kid=kid, algorithm=given_alg)
    if settings.signing_keys_path is not None:
        return KeyRing.from_directory(settings.signing_keys_path, active_kid=kid, algorithm=given_alg)
    ring = KeyRing.load_or_create(settings.signing_keys_dir, alg)
    return KeyRing(ring.keys, active_kid=kid, algorithm=alg) if kid else ring


def load_or_create_single(path: Path) -> SigningKey:
    """One Ed25519 key in one file (the dev identity issuer's)."""
    with _locked(path.parent):
        if not path.exists():
            _write_private(path, SigningKey.of(ed25519.Ed25519PrivateKey.generate()).pem())
        return _from_pem(path.read_bytes(), str(path))
