"""The payload codec: what reaches Temporal is ciphertext, and every key still decrypts after rotation."""

from __future__ import annotations

import base64
import json
import os
import stat
import uuid
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from core.codec import (
    CodecError,
    CodecKey,
    EncryptionCodec,
    data_converter_with_codec,
    decode_json,
    encode_json,
    load_codec_keys,
    load_or_create_codec_keys,
    parse_codec_keys,
    rotate_codec_key,
)
from core.models import Actor

SECRET_REASON = "INC-4711: refund stuck for customer jane.doe@example.com"
OLD = CodecKey("k-old", os.urandom(32))
NEW = CodecKey("k-new", os.urandom(32))


async def test_round_trip_through_the_data_converter() -> None:
    converter = data_converter_with_codec([OLD])
    values = [SECRET_REASON, Actor(sub="alice", groups=["db-owners"]), {"n": 1}]
    payloads = await converter.encode(values)
    assert await converter.decode(payloads, [str, Actor, dict]) == values


async def test_ciphertext_does_not_contain_the_plaintext() -> None:
    [payload] = await data_converter_with_codec([OLD]).encode([SECRET_REASON])
    assert payload.metadata["encoding"] == b"binary/encrypted"
    assert payload.metadata["encryption-key-id"] == b"k-old"
    assert SECRET_REASON.encode() not in payload.SerializeToString()
    assert b"refund" not in payload.data and b"json/plain" not in payload.data
    # A fresh nonce each time: the same value never encrypts the same way twice.
    [again] = await data_converter_with_codec([OLD]).encode([SECRET_REASON])
    assert again.data != payload.data


async def test_an_old_key_still_decrypts_after_rotation() -> None:
    [sealed_by_old] = await data_converter_with_codec([OLD]).encode([SECRET_REASON])
    rotated = data_converter_with_codec([OLD, NEW])
    assert await rotated.decode([sealed_by_old], [str]) == [SECRET_REASON]
    [sealed_by_new] = await rotated.encode([SECRET_REASON])
    assert sealed_by_new.metadata["encryption-key-id"] == b"k-new"


async def test_an_unknown_key_id_fails_clearly() -> None:
    [sealed] = await EncryptionCodec([OLD]).encode([Payload(data=b"x")])
    with pytest.raises(CodecError, match=r"unknown key id 'k-old' \(known: k-new\)"):
        await EncryptionCodec([NEW]).decode([sealed])


async def test_tampering_fails() -> None:
    codec = EncryptionCodec([OLD, NEW])
    [sealed] = await codec.encode([Payload(data=SECRET_REASON.encode())])
    flipped = bytearray(sealed.data)
    flipped[-1] ^= 1
    with pytest.raises(CodecError, match="failed authentication"):
        await codec.decode([Payload(metadata=sealed.metadata, data=bytes(flipped))])
    with pytest.raises(CodecError, match="failed authentication"):
        await codec.decode([Payload(metadata={**sealed.metadata, "encryption-key-id": b"k-old"}, data=sealed.data)])
    with pytest.raises(CodecError, match="failed authentication"):
        await codec.decode([Payload(metadata=sealed.metadata, data=sealed.data[:20])])


async def test_unencrypted_payloads_pass_through_decode() -> None:
    # Histories written before the codec was switched on stay readable.
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"hello"')
    assert await EncryptionCodec([OLD]).decode([plain]) == [plain]


def test_keys_in_the_data_dir_are_created_once_and_rotate(tmp_path: Path) -> None:
    directory = tmp_path / "codec-keys"
    [first] = load_or_create_codec_keys(directory)
    assert load_or_create_codec_keys(directory) == [first]
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    [key_file] = directory.glob("*.key")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    second = rotate_codec_key(directory)
    assert load_or_create_codec_keys(directory) == [first, second]
    assert EncryptionCodec(load_codec_keys(directory)).active_kid == second.kid


def test_keys_from_a_setting() -> None:
    raw_old, raw_new = os.urandom(32), os.urandom(32)
    text = f"a:{base64.b64encode(raw_old).decode()}, b:{base64.urlsafe_b64encode(raw_new).decode().rstrip('=')}"
    assert parse_codec_keys(text) == [CodecKey("a", raw_old), CodecKey("b", raw_new)]
    assert load_codec_keys(Path("/nonexistent"), text)[-1].kid == "b"
    with pytest.raises(CodecError, match="32 bytes"):
        parse_codec_keys(f"a:{base64.b64encode(b'short').decode()}")
    with pytest.raises(CodecError, match="kid:base64key"):
        parse_codec_keys("no-separator")
    with pytest.raises(CodecError, match="key id"):
        parse_codec_keys(f"bad kid!:{base64.b64encode(raw_old).decode()}")


async def test_codec_server_json_round_trip() -> None:
    # The body Temporal UI posts to a remote codec endpoint: proto-JSON, bytes as base64.
    body = {
        "payloads": [
            {
                "metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                "data": base64.b64encode(json.dumps(SECRET_REASON).encode()).decode(),
            }
        ]
    }
    codec = EncryptionCodec([OLD, NEW])
    encoded = await encode_json(codec, json.dumps(body))
    [sealed] = encoded["payloads"]
    assert base64.b64decode(sealed["metadata"]["encoding"]) == b"binary/encrypted"
    assert base64.b64decode(sealed["metadata"]["encryption-key-id"]) == b"k-new"
    assert SECRET_REASON not in json.dumps(encoded)
    assert await decode_json(codec, json.dumps(encoded).encode()) == body
    for bad in (b"not json", b'{"payloads": "nope"}', b'{"unknown": 1}'):
        with pytest.raises(CodecError, match="Payloads JSON"):
            await decode_json(codec, bad)


@workflow.defn(sandboxed=False)
class Echo:
    @workflow.run
    async def run(self, reason: str) -> str:
        return reason.upper()


async def test_temporal_history_holds_only_ciphertext(dev_env: WorkflowEnvironment) -> None:
    base = dev_env.client
    client = Client(base.service_client, namespace=base.namespace, data_converter=data_converter_with_codec([OLD]))
    queue = f"codec-test-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[Echo]):
        handle = await client.start_workflow(Echo.run, SECRET_REASON, id=f"codec-{uuid.uuid4()}", task_queue=queue)
        assert await handle.result() == SECRET_REASON.upper()

    history = await handle.fetch_history()
    raw = b"".join(e.SerializeToString() for e in history.events)
    assert SECRET_REASON.encode() not in raw and SECRET_REASON.upper().encode() not in raw
    started = history.events[0].workflow_execution_started_event_attributes
    assert started.input.payloads[0].metadata["encoding"] == b"binary/encrypted"
