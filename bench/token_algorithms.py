"""``make bench`` (part): which signing algorithm resource servers accept, and what each costs.

    .venv/bin/python bench/token_algorithms.py [--seconds 0.5] [--no-write]

For RS256, ES256 and EdDSA: a token as the API mints it, checked by the
resource-server libraries of tests/resource_servers.py in their default
configuration (accepted, or the library's refusal), and the cost of minting and
of verifying one (``core.access_tokens``, one thread), with the token's and the
JWKS entry's size. Writes the "Token algorithms" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for p in (str(ROOT), str(BENCH)):
    if p not in sys.path:
        sys.path.insert(0, p)

import facts  # noqa: E402
from doc import write_section  # noqa: E402
from jwt_bench import rate  # noqa: E402

from core import access_tokens  # noqa: E402
from core.grants import GrantRow  # noqa: E402
from core.keys import ALGORITHMS, KeyRing, SigningKey, generate  # noqa: E402
from core.settings import Settings  # noqa: E402
from tests.resource_servers import CHECKS, outcome  # noqa: E402

SECTION = "## Token algorithms"
ISSUER = "https://jit.example.com"
AUDIENCE = "postgres:orders/public.orders"


def run(seconds: float) -> list[dict[str, object]]:
    now = datetime.now(UTC)
    grant = GrantRow(
        "3f0c9a1e-0000-4000-8000-000000000001", "alice", AUDIENCE, "read", now, now + timedelta(hours=1), None
    )
    rows = []
    for alg in ALGORITHMS:
        ring = KeyRing([SigningKey.of(generate(alg))])
        token, _ = access_tokens.mint(ring, grant, issuer=ISSUER, ttl_s=300)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            verdicts = {name: outcome(check, token, ring.jwks(), ISSUER, AUDIENCE) for name, check in CHECKS.items()}
        sign_rate, sign_us = rate(lambda ring=ring: access_tokens.mint(ring, grant, issuer=ISSUER, ttl_s=300), seconds)
        verify_rate, verify_us = rate(
            lambda ring=ring, token=token: access_tokens.verify(ring, token, issuer=ISSUER), seconds
        )
        rows.append(
            {
                "alg": alg,
                "verdicts": verdicts,
                "sign_us": sign_us,
                "verify_us": verify_us,
                "verify_per_s": verify_rate,
                "token_bytes": len(token),
                "jwk_bytes": len(json.dumps(ring.jwks()["keys"][0])),
            }
        )
    return rows


def render(rows: list[dict[str, object]], machine: dict[str, str]) -> str:
    default = Settings.model_fields["token_algorithm"].default
    names = list(CHECKS)
    head = "| algorithm | " + " | ".join(names) + " | mint (µs) | verify (µs) | token (bytes) | JWK (bytes) |"
    lines = [head, "|---" * (len(names) + 5) + "|"]
    notes = []
    for row in rows:
        cells = []
        for name in names:
            refusal = row["verdicts"][name]  # type: ignore[index]
            if refusal is None:
                cells.append("accepts")
            else:
                cells.append(f"refuses [{len(notes) + 1}]")
                notes.append(f"[{len(notes) + 1}] {row['alg']}, {name}: `{refusal}`")
        mark = " (default)" if row["alg"] == default else ""
        lines.append(
            f"| {row['alg']}{mark} | " + " | ".join(cells)
            + f" | {row['sign_us']:.0f} | {row['verify_us']:.0f} | {row['token_bytes']} | {row['jwk_bytes']} |"
        )  # fmt: skip
    return "\n".join(
        [
            SECTION,
            "",
            f"`bench/token_algorithms.py` (part of `make bench`) on {machine['nproc']} cores ({machine['cpu']}): "
            "an access token as the API mints it, signed with each algorithm, checked by resource-server "
            "libraries in their default configuration (as their documentation shows a resource server "
            "using them: `tests/resource_servers.py`), and what minting and verifying one costs "
            "(`core.access_tokens`, one thread; the API caches a verified token's signature, so "
            "introspection pays it once per token).",
            "",
            *lines,
            "",
            *notes,
            "",
            f"The default is **{default}**: the only algorithm every library accepts as configured by "
            "default, and the one RFC 9068 requires resource servers to support. What it costs is "
            "minting (RSA signing is the slowest of the three; the API mints on each credentials call, "
            "never per introspection) and bytes; verifying RS256 is as cheap as the others.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    text = render(run(args.seconds), facts.machine())
    print(text)
    if not args.no_write:
        write_section(SECTION, text)
        print("written to docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
