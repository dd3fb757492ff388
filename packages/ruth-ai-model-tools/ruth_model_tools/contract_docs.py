"""Keeps CONTRACT.md's JSON Schemas generated from the pydantic models.

    python -m ruth_model_tools.contract_docs [CONTRACT.md]          # exit 1 if the file is stale
    python -m ruth_model_tools.contract_docs --write [CONTRACT.md]  # regenerate its schema section

The file defaults to CONTRACT.md in the current directory (the repository root).

The test suite runs the check, so the contract and the code cannot drift.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from ai_model_container.contract.schema import (
    REQUEST_ADAPTER,
    DescribeResponse,
    HealthResponse,
    InferenceResponse,
    StatsResponse,
)

BEGIN = "<!-- BEGIN GENERATED SCHEMAS: python -m ruth_model_tools.contract_docs --write -->"
END = "<!-- END GENERATED SCHEMAS -->"
DEFAULT_CONTRACT = Path("CONTRACT.md")

RESPONSES: tuple[type[BaseModel], ...] = (InferenceResponse, HealthResponse, DescribeResponse, StatsResponse)


def schemas() -> dict[str, dict]:
    """The JSON Schema of every request and response, keyed by title."""
    generated = {"Request": REQUEST_ADAPTER.json_schema()}
    for model in RESPONSES:
        generated[model.__name__] = model.model_json_schema()
    return generated


def render() -> str:
    blocks = [BEGIN]
    for title, schema in schemas().items():
        blocks.append(f"#### {title}\n\n```json\n{json.dumps(schema, indent=2, sort_keys=True)}\n```")
    blocks.append(END)
    return "\n\n".join(blocks)


def updated(text: str) -> str:
    """``text`` with its generated section replaced by the current schemas."""
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + render() + text[end:]


def main(argv: list[str]) -> int:
    write = "--write" in argv
    paths = [Path(argument) for argument in argv if argument != "--write"]
    contract = paths[0] if paths else DEFAULT_CONTRACT
    text = contract.read_text(encoding="utf-8")
    fresh = updated(text)
    if write:
        contract.write_text(fresh, encoding="utf-8")
        return 0
    if fresh != text:
        print(f"{contract} is out of date: run python -m ruth_model_tools.contract_docs --write {contract}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
