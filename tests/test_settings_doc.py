"""README's settings table is core/settings_doc.py's output for the settings class as it is."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from core.settings import Settings
from core.settings_doc import END, README, START, is_secret, readme_table, table, write_readme


def test_the_readme_table_is_the_generated_one() -> None:
    assert readme_table(README.read_text()) == table(), "stale: run python -m core.settings_doc --write"


def test_every_setting_has_a_row_and_secrets_show_no_default() -> None:
    rows = {line.split("|")[1].strip(" `"): line for line in table().splitlines()[2:]}
    assert set(rows) == {f"JIT_{name.upper()}" for name in Settings.model_fields}
    secrets = [name for name, field in Settings.model_fields.items() if is_secret(field)]
    assert {"signing_key_pem", "codec_keys", "pg_password_secret"} <= set(secrets)
    for name in secrets:
        assert rows[f"JIT_{name.upper()}"].split("|")[2].strip() == "*(secret)*"


def test_a_new_setting_without_a_meaning_fails_with_its_name() -> None:
    class Undocumented(Settings):
        shiny_new_knob: int = 3

    with pytest.raises(KeyError, match="JIT_SHINY_NEW_KNOB is undocumented"):
        table(Undocumented)


def test_a_setting_can_document_itself_in_its_field() -> None:
    class Documented(Settings):
        shiny_new_knob: int = Field(default=3, description="turns it", json_schema_extra={"read_by": ["worker"]})

    assert "| `JIT_SHINY_NEW_KNOB` | `3` | worker | turns it |" in table(Documented)


def test_write_replaces_only_what_is_between_the_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# before\n{START}\n| stale |\n{END}\nafter\n")
    assert write_readme(readme)
    assert readme.read_text() == f"# before\n{START}\n{table()}{END}\nafter\n"
    assert not write_readme(readme)
