"""One Temporal client setup for the API, the worker and the tests."""

from __future__ import annotations

from pathlib import Path

from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from core.codec import data_converter_with_codec, load_codec_keys
from core.settings import Settings

WORKFLOW_ID_PREFIX = "access-request-"

# Visible in Temporal UI and used for list queries. Never a secret or free text.
SA_REQUESTER = SearchAttributeKey.for_keyword("JitRequester")
SA_RESOURCE = SearchAttributeKey.for_keyword("JitResource")
SA_ACTION = SearchAttributeKey.for_keyword("JitAction")
SA_STATUS = SearchAttributeKey.for_keyword("JitStatus")
SA_APPROVERS = SearchAttributeKey.for_keyword_list("JitApprovers")
SA_APPROVER_GROUPS = SearchAttributeKey.for_keyword_list("JitApproverGroups")
SA_EXPIRES_AT = SearchAttributeKey.for_datetime("JitExpiresAt")
# Set while something needs an operator (e.g. "revoke_failing"): filter on it.
SA_ALERT = SearchAttributeKey.for_keyword("JitAlert")
SA_BREAK_GLASS = SearchAttributeKey.for_bool("JitBreakGlass")
# "pending" until an approver acknowledges a break-glass grant, then "acknowledged".
SA_REVIEW = SearchAttributeKey.for_keyword("JitReview")
# True while an extension waits for approval: an approver's "to approve" list shows it.
SA_EXTENSION_PENDING = SearchAttributeKey.for_bool("JitExtensionPending")

SEARCH_ATTRIBUTES = [
    SA_REQUESTER,
    SA_RESOURCE,
    SA_ACTION,
    SA_STATUS,
    SA_APPROVERS,
    SA_APPROVER_GROUPS,
    SA_EXPIRES_AT,
    SA_ALERT,
    SA_BREAK_GLASS,
    SA_REVIEW,
    SA_EXTENSION_PENDING,
]

# Plain pydantic payloads: the replay tests' committed histories and test
# environments that never see encrypted payloads.
DATA_CONVERTER = pydantic_data_converter


def data_converter(settings: Settings) -> DataConverter:
    """What the API and the worker use: pydantic payloads, encrypted (AES-GCM)."""
    return data_converter_with_codec(load_codec_keys(settings.codec_keys_dir, settings.codec_keys))


def workflow_id(request_id: str) -> str:
    return WORKFLOW_ID_PREFIX + request_id


def search_attribute_flags() -> list[str]:
    """``--search-attribute`` arguments for ``temporal server start-dev``."""
    kinds = {"KEYWORD": "Keyword", "KEYWORD_LIST": "KeywordList", "DATETIME": "Datetime", "BOOL": "Bool"}
    flags = []
    for key in SEARCH_ATTRIBUTES:
        flags += ["--search-attribute", f"{key.name}={kinds[key.indexed_value_type.name]}"]
    return flags


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """``runtime``: the worker's, exporting the SDK's metrics (core/metrics.py); else the default."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        runtime=runtime,
        tls=tls_config(settings),
        api_key=settings.temporal_api_key,
    )


def tls_config(settings: Settings) -> TLSConfig | bool:
    """The connection's TLS from the settings; False (plaintext) for the dev server."""
    if not settings.temporal_uses_tls:
        return False

    def read(path: Path | None, what: str) -> bytes | None:
        if path is None:
            return None
        try:
            return path.read_bytes()
        except OSError as e:
            raise ValueError(f"cannot read the Temporal TLS {what} {path}: {e.strerror}") from e

    return TLSConfig(
        server_root_ca_cert=read(settings.temporal_tls_ca_path, "CA certificate (JIT_TEMPORAL_TLS_CA_PATH)"),
        client_cert=read(settings.temporal_tls_cert_path, "client certificate (JIT_TEMPORAL_TLS_CERT_PATH)"),
        client_private_key=read(settings.temporal_tls_key_path, "client key (JIT_TEMPORAL_TLS_KEY_PATH)"),
        domain=settings.temporal_tls_server_name,
    )
