"""Configuration files that once crashed their readers, built around any valid file's text.

Each variant keeps the valid content and adds what breaks it, so one list serves model.yaml,
assignments and routing files alike; the phrase is what the error must say instead of crashing.
"""

from __future__ import annotations

from typing import Callable

ALIAS_LEVELS = 7
"""``a0`` holds ten scalars and each level ten aliases of the one below: about 10**7 once expanded."""


def alias_bomb(indent: str = "") -> str:
    """Nested aliases: a few hundred bytes that expand to ten million scalars."""
    lines = [f"{indent}a0: &a0 [{', '.join(['x'] * 10)}]"]
    for level in range(1, ALIAS_LEVELS):
        lines.append(f"{indent}a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 10)}]")
    return "\n".join(lines) + "\n"


BAD_YAML: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "Latin-1 text": (lambda valid: b"# caf\xe9\n" + valid, "not valid UTF-8"),
    "100k nested brackets": (lambda valid: valid + b"\nextra: " + b"[" * 100_000 + b"]" * 100_000 + b"\n",
                             "nested deeper than"),
    "5,000-digit integer": (lambda valid: valid + b"\nextra: " + b"9" * 5000 + b"\n", "digits"),
    "alias bomb": (lambda valid: valid + b"\nextra:\n" + alias_bomb("  ").encode(), "expands to more than"),
    "alias that contains itself": (lambda valid: valid + b"\nextra: &loop [1, *loop]\n", "contains it"),
    "NUL byte": (lambda valid: valid + b"\n\x00\n", "unacceptable character"),
    "2 MiB file": (lambda valid: valid + b"\n# " + b"x" * (2 << 20) + b"\n", "limit of a configuration file"),
    "a list at the top": (lambda valid: b"- a\n- list\n", "top level must be a mapping"),
    "two documents": (lambda valid: valid + b"\n---\n" + valid, "single document"),
}

CRASHED_BEFORE = ("Latin-1 text", "100k nested brackets", "5,000-digit integer")
"""The variants that made every reader raise (UnicodeDecodeError, RecursionError, ValueError) at 4ec124c."""
