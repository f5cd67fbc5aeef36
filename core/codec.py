"""Encrypt every Temporal payload (inputs, results, heartbeats, failures' details) with AES-GCM.

Requests carry reasons, tickets and names; with this codec the Temporal
server and its database only ever hold ciphertext. Format as in Temporal's
encryption samples (so their tools interoperate): the payload's serialized
proto, encrypted with AES-256-GCM under a random 96-bit nonce, stored as
``nonce || ciphertext+tag``, metadata ``encoding: binary/encrypted`` and
``encryption-key-id: <kid>``.

Keys: ``JIT_CODEC_KEYS`` (``kid:base64key,...``, oldest first) or files in
``<data dir>/codec-keys/`` (created once, 0600, named ``<created>-<kid>.key``).
The newest encrypts; all decrypt, so rotating never strands an old history.

The codec server (Temporal UI's "Remote Codec Endpoint") speaks proto-JSON
``{"payloads": [...]}``: :func:`encode_json` and :func:`decode_json` are the
whole of what the API's ``/codec/encode`` and ``/codec/decode`` do.
"""

from __future__ import annotations

import base64
import dataclasses
import fcntl
import json
import os
import re
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, PayloadCodec

from core.private_files import lock_file

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
_NONCE_BYTES = 12
_KID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class CodecError(ValueError):
    """A payload cannot be decrypted (unknown key, tampered) or a request is malformed."""


@dataclass(frozen=True)
class CodecKey:
    kid: str
    key: bytes = dataclasses.field(repr=False)

    def __post_init__(self) -> None:
        if not _KID.match(self.kid):
            raise CodecError(f"codec key id {self.kid!r} must be 1-64 of A-Z a-z 0-9 . _ -")
        if len(self.key) != 32:
            raise CodecError(f"codec key {self.kid!r} must be 32 bytes (AES-256), not {len(self.key)}")


class EncryptionCodec(PayloadCodec):
    def __init__(self, keys: Sequence[CodecKey]):
        if not keys:
            raise CodecError("the codec needs at least one key")
        self._active = keys[-1]
        self._ciphers = {k.kid: AESGCM(k.key) for k in keys}
        if len(self._ciphers) != len(keys):
            raise CodecError("codec key ids must be unique")

    @property
    def active_kid(self) -> str:
        return self._active.kid

    def encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._ciphers[self._active.kid].encrypt(nonce, payload.SerializeToString(), None)
        return Payload(metadata={"encoding": ENCODING, KEY_ID: self._active.kid.encode()}, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        # Payloads written before encryption was switched on pass unchanged.
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        kid = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        cipher = self._ciphers.get(kid)
        if cipher is None:
            known = ", ".join(sorted(self._ciphers))
            raise CodecError(f"payload encrypted with unknown key id {kid!r} (known: {known})")
        data = payload.data
        try:
            plain = cipher.decrypt(data[:_NONCE_BYTES], data[_NONCE_BYTES:], None)
        except InvalidTag as e:
            raise CodecError(f"payload under key {kid!r} failed authentication: tampered or truncated") from e
        return Payload.FromString(plain)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]


def data_converter_with_codec(keys: Sequence[CodecKey]) -> DataConverter:
    """The project's pydantic converter, every payload encrypted."""
    return dataclasses.replace(pydantic_data_converter, payload_codec=EncryptionCodec(keys))


# -- keys --------------------------------------------------------------------


def _b64decode(text: str) -> bytes:
    # Standard or URL-safe alphabet, padded or not.
    text = text.strip().replace("+", "-").replace("/", "_")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_codec_keys(value: str) -> list[CodecKey]:
    """``kid:base64key,kid:base64key``, oldest first: the last one encrypts."""
    keys = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        kid, sep, encoded = item.partition(":")
        if not sep:
            raise CodecError("codec keys are written kid:base64key, separated by commas")
        try:
            key = _b64decode(encoded)
        except ValueError as e:
            raise CodecError(f"codec key {kid!r} is not valid base64") from e
        keys.append(CodecKey(kid.strip(), key))
    if not keys:
        raise CodecError("no codec key given")
    return keys


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    # API replicas and workers may start at once: only one creates the first key.
    fd = lock_file(directory)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _create_key(directory: Path) -> CodecKey:
    key = CodecKey(secrets.token_hex(4), AESGCM.generate_key(bit_length=256))
    path = directory / f"{time.time_ns():020d}-{key.kid}.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.urlsafe_b64encode(key.key).decode() + "\n")
    return key


def _read_keys(directory: Path) -> list[CodecKey]:
    # File names start with the creation time: sorted is oldest first.
    return [CodecKey(f.stem.partition("-")[2], _b64decode(f.read_text())) for f in sorted(directory.glob("*.key"))]


def load_or_create_codec_keys(directory: Path) -> list[CodecKey]:
    with _locked(directory):
        if not any(directory.glob("*.key")):
            _create_key(directory)
        return _read_keys(directory)


def rotate_codec_key(directory: Path) -> CodecKey:
    """Add a newest key; processes pick it up on restart, older keys keep decrypting."""
    with _locked(directory):
        return _create_key(directory)


def load_codec_keys(keys_dir: Path, configured: str | None = None) -> list[CodecKey]:
    """The setting when given (every process must get the same), else the data dir's."""
    return parse_codec_keys(configured) if configured else load_or_create_codec_keys(keys_dir)


# -- codec server ------------------------------------------------------------


def payloads_from_json(body: bytes | str | Mapping[str, Any]) -> list[Payload]:
    """Temporal's proto-JSON ``{"payloads": [{"metadata": {k: b64}, "data": b64}]}``."""
    try:
        parsed = json.loads(body) if isinstance(body, bytes | str) else dict(body)
        if not isinstance(parsed, dict):
            raise TypeError("expected a JSON object")
        if not isinstance(parsed.get("payloads", []), list):
            raise TypeError("payloads must be a list")  # protobuf would read null as none
        return list(json_format.ParseDict(parsed, Payloads()).payloads)
    except (ValueError, TypeError, json_format.ParseError, DecodeError) as e:
        raise CodecError(f"not a Payloads JSON object: {e}") from e


def payloads_to_json(payloads: Sequence[Payload]) -> dict[str, Any]:
    return json_format.MessageToDict(Payloads(payloads=payloads))


async def encode_json(codec: PayloadCodec, body: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    return payloads_to_json(await codec.encode(payloads_from_json(body)))


async def decode_json(codec: PayloadCodec, body: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    return payloads_to_json(await codec.decode(payloads_from_json(body)))
