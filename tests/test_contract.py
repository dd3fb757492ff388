"""CONTRACT.md, the code, the README and the shipped model.yaml files must agree."""

from __future__ import annotations

import inspect
import re
import struct
from pathlib import Path

import pytest

from ai_model_container import InferenceHandler
from ai_model_container.contract.model_config import Limits, load_model_config
from ai_model_container.contract.schema import PROTOCOL_VERSION, ErrorCode
from ai_model_container.contract.shm_layout import HEADER_FIELDS, MAGIC, SLOT_FIELDS
from ai_model_container.contract.wire import DEFAULT_MAX_MESSAGE_BYTES
from ruth_model_tools import contract_docs
from ruth_model_tools.example_container import EXAMPLE_MODEL_DIR

ROOT = Path(__file__).resolve().parents[1]
CONTRACT_TEXT = (ROOT / "CONTRACT.md").read_text()


def table_rows(heading: str) -> list[list[str]]:
    """The rows of the first table under ``heading`` as lists of stripped cells."""
    section = CONTRACT_TEXT.split(heading, 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        if rows and not line.startswith("|"):
            break
        if line.startswith("|") and not set(line) <= set("|-: "):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[1:]  # drop the header row


def field_offsets(fields: tuple[tuple[str, str], ...]) -> dict[str, int]:
    offsets, position = {}, 0
    for name, code in fields:
        offsets[name] = position
        position += struct.calcsize("<" + code)
    return offsets


def test_generated_schemas_match_the_pydantic_models() -> None:
    assert contract_docs.updated(CONTRACT_TEXT) == CONTRACT_TEXT, "run: python -m ruth_model_tools.contract_docs --write"


def test_error_code_table_is_exactly_the_enum() -> None:
    documented = {row[0].strip("`") for row in table_rows("## Error codes")}
    assert documented == {code.value for code in ErrorCode}


def test_versions_match() -> None:
    assert f"Contract version: **{PROTOCOL_VERSION}**" in CONTRACT_TEXT
    assert f"`{MAGIC.decode()}`" in CONTRACT_TEXT


@pytest.mark.parametrize("heading, fields", [
    ("### Header, 64 bytes at offset 0", HEADER_FIELDS),
    ("### Slot table", SLOT_FIELDS),
])
def test_layout_tables_match_the_structs(heading: str, fields: tuple[tuple[str, str], ...]) -> None:
    documented = {row[1]: int(row[0]) for row in table_rows(heading)}
    assert documented == field_offsets(fields)


def test_limit_defaults_match_model_yaml_defaults() -> None:
    units = {"MiB": 1 << 20, "ms": 1, "": 1}
    checked = 0
    for _, default, source in table_rows("## Limits"):
        match = re.fullmatch(r"`limits\.(\w+)`", source)
        if not match:
            continue
        number, unit = re.fullmatch(r"(\d+)\s*(MiB|ms|)", default).groups()
        assert int(number) * units[unit] == Limits.model_fields[match.group(1)].default, source
        checked += 1
    assert checked == len(Limits.model_fields)
    assert Limits().max_message_bytes == DEFAULT_MAX_MESSAGE_BYTES


@pytest.mark.parametrize("path", sorted(ROOT.glob("models/*/model.yaml")) + [
    EXAMPLE_MODEL_DIR / "model.yaml"], ids=lambda p: p.parent.name)
def test_shipped_model_yaml_files_are_valid(path: Path) -> None:
    load_model_config(path)


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^```(?:bash|sh)\n(.+?)\n```", readme, re.M | re.S)
    assert "make demo" in commands[0] and "make test" in commands[1]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_the_handler_section_names_every_step_of_the_handler() -> None:
    section = CONTRACT_TEXT.split("## Handler API", 1)[1].split("\n## ", 1)[0]
    steps = ("load", "warmup", "preprocess", "infer", "infer_batch", "postprocess", "close")
    for step in steps:
        assert f"`{step}(" in section, f"CONTRACT.md's handler section does not describe {step}"
        assert callable(getattr(InferenceHandler, step))
    assert list(inspect.signature(InferenceHandler.postprocess).parameters) == [
        "self", "outputs", "inputs", "frame", "request"]
    assert "`postprocess(outputs, inputs, frame, request)" in section


def test_connection_limits_in_the_contract_are_the_code_constants() -> None:
    from ai_model_container.contract.model_config import Batching
    from ai_model_container.contract.wire import DEFAULT_BODY_TIMEOUT_S
    from ai_model_container.daemon.connection import MAX_PIPELINED, WRITE_BUFFER_HIGH
    from ai_model_container.daemon.server import DEFAULT_SEND_TIMEOUT_S

    rows = {row[0]: row[1] for row in table_rows("## Limits")}
    assert rows["answers owed on one connection"] == str(MAX_PIPELINED)
    assert rows["one message, first byte to last"] == f"{DEFAULT_BODY_TIMEOUT_S:g} s"
    assert rows["unread answers buffered"] == f"{WRITE_BUFFER_HIGH >> 20} MiB for {DEFAULT_SEND_TIMEOUT_S:g} s"
    assert rows["wait for a batch to fill"] == f"{Batching.model_fields['max_queue_delay_us'].default} us"
