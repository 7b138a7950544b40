"""The `manual` kind's table: instructions that are plain text and name no identifier, the identifier
types a person looks the subject up by; every mistake one line naming the file, the system and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.errors import ConfigError
from connectors.manual.config import ManualConfig
from tests.helpers import IDENTIFIERS, manual_connector, system_config
from worker.config import parse

STEPS = "Search the customer in the helpdesk.\nDelete their tickets.\tCount them."


def desk(**keys: Any) -> dict[str, Any]:
    """A manual system's table, with the given keys over its instructions."""
    return {"name": "desk", "kind": "manual", "instructions": STEPS, **keys}


def test_a_manual_table_reads_its_instructions_and_types() -> None:
    """Instructions keep their lines and tabs (trimmed); `uses` names the types looked up by."""
    config = system_config(ManualConfig, desk(uses=["email"], instructions=f"  {STEPS}\n"))
    assert (config.instructions, config.uses, config.identifier_types) == (STEPS, ("email",), frozenset({"email"}))


def test_without_uses_every_declared_type_is_looked_up_by() -> None:
    """No `uses`: the person may look the subject up by any declared identifier type."""
    assert manual_connector(desk()).config.identifier_types == frozenset({"email", "user_id"})


def test_loaded_from_the_file_a_manual_system_is_not_training_data_by_default() -> None:
    """As a system of the whole config: kind manual, training false unless the table says so."""
    raw = {"identifiers": IDENTIFIERS, "systems": [desk(), desk(name="labels", training=True)]}
    desk_config, labels = parse(raw, Path("erasure.toml")).systems
    assert isinstance(desk_config, ManualConfig) and (desk_config.training, labels.training) == (False, True)


@pytest.mark.parametrize(("keys", "problem"), [
    ({"instructions": None}, "instructions: missing"),
    ({"instructions": "   "}, "instructions: must not be empty"),
    ({"instructions": "x" * 2001}, "instructions: at most 2000 characters"),
    ({"instructions": "Delete the user\x00 now"}, "instructions: plain text"),
    ({"instructions": "Delete \u202ethe user"}, "instructions: plain text"),
    ({"instructions": "Search {email} in the helpdesk"}, "instructions: names the identifier {email}"),
    ({"uses": []}, "uses: names no identifier type"),
    ({"uses": ["phone"]}, "uses: unknown identifier type 'phone'"),
    ({"uses": "email"}, "uses: must be a list"),
    ({"url": "https://helpdesk"}, "url: unknown key"),
])
def test_a_bad_manual_table_is_one_line_naming_the_key(keys: dict[str, Any], problem: str) -> None:
    """Each mistake stops start-up with one line: the file, the system and the key."""
    raw = {k: v for k, v in desk(**keys).items() if v is not None}
    with pytest.raises(ConfigError) as refused:
        system_config(ManualConfig, raw)
    assert str(refused.value).startswith(f"erasure.toml: system 'desk': {problem}")
    assert "\n" not in str(refused.value)


def test_braces_that_name_no_identifier_are_plain_text() -> None:
    """Only a placeholder of a declared identifier type is refused: `{ticket id}` or `{id}` is text."""
    assert "{id}" in system_config(ManualConfig, desk(instructions="Delete ticket {id} and {ticket id}")).instructions
