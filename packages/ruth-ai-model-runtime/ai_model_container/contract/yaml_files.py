"""YAML files (model.yaml, routing, assignments) read into pydantic models, errors naming the field.

Every configuration file of the project goes through here, so a mistake is reported the same way
everywhere: the file, then where (line and column, or the field path) and what is wrong. Whatever
bytes a file holds, the only exception that leaves is the caller's ``error`` type: a live Ruth AI
Core keeps its subscriptions through a bad reload and ``serve-all`` skips one bad model.yaml
instead of dying on it. That takes bounds the plain YAML loader does not have:

- the file: at most ``MAX_YAML_BYTES``, a regular file, opened without blocking (a FIFO in its
  place must not hang a reload), strict UTF-8;
- nesting: at most ``MAX_YAML_DEPTH`` levels, checked while composing, so deep brackets cost a
  clean error instead of a RecursionError;
- anchors and aliases: the document's size with every alias expanded is at most
  ``MAX_YAML_EXPANDED`` (a 500-byte file of nested aliases used to become a 131 MB request), and
  an alias may not contain itself;
- integers: one too long for Python to convert is an error at its line, not a ValueError.

Messages never quote the file's content, since a line may hold a credential: a YAML error gives
the line and column, a schema error the field path and what was expected, never the value.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path
from typing import Any, Optional, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

MAX_YAML_BYTES = 1 << 20
"""Largest configuration file read (1 MiB); a bigger one is refused unread."""
MAX_YAML_DEPTH = 64
"""Deepest nesting of mappings and sequences, aliases followed."""
MAX_YAML_EXPANDED = 4 << 20
"""Budget for the document with every alias expanded: one unit per node plus one per scalar character."""
_MAX_PROBLEM_CHARS = 120
_SHOWN_FIELD = re.compile(r"^[\w\-\[\]]{1,64}$")


class YamlRefused(Exception):
    """A YAML file that cannot be used; ``location`` is ``line:column`` when known."""

    def __init__(self, problem: str, location: Optional[str] = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.location = location


def parse_yaml_model(path: Path, model: type[M], error: type[Exception]) -> M:
    """Validate the YAML file at ``path`` into ``model``; raise ``error`` naming the file and where."""
    try:
        raw = load_yaml_file(path)
    except YamlRefused as exc:
        where = f"{path}:{exc.location}" if exc.location else str(path)
        raise error(f"{where}: {exc.problem}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise error(f"{path}: the top level must be a mapping")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise error(f"{path}: {validation_problems(exc)}") from None


def validation_problems(exc: ValidationError) -> str:
    """Each field path and what is wrong with it, never the offending value (it may be a credential)."""
    return "; ".join(
        f"{_field_path(e['loc'])}: {e['msg']}"
        for e in exc.errors(include_url=False, include_input=False, include_context=False)
    )


def load_yaml_file(path: Path) -> Any:
    """The one YAML document in ``path``, within the bounds above; YamlRefused otherwise."""
    text = _read_text(path)
    try:
        loader = _BoundedLoader(text)  # checks every character at once
    except yaml.reader.ReaderError as exc:
        raise YamlRefused(f"unacceptable character #x{exc.character:04x}", _location_of_offset(text, exc.position)) from None
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        _check_expansion(root)
        return loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        raise YamlRefused(_problem(exc), _location(exc.problem_mark or exc.context_mark)) from None
    except yaml.YAMLError as exc:
        raise YamlRefused(f"not valid YAML ({type(exc).__name__})") from None
    finally:
        loader.dispose()


def _read_text(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise YamlRefused(f"cannot read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise YamlRefused("cannot read: not a regular file")
        if info.st_size > MAX_YAML_BYTES:
            raise YamlRefused(f"{info.st_size} bytes, over the {MAX_YAML_BYTES}-byte limit of a configuration file")
        data = _read_at_most(fd, MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise YamlRefused(f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_YAML_BYTES:
        raise YamlRefused(f"over the {MAX_YAML_BYTES}-byte limit of a configuration file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise YamlRefused(f"not valid UTF-8 (byte offset {exc.start})", f"{line}:{column}") from None


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses nesting deeper than MAX_YAML_DEPTH while it composes."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0

    def compose_node(self, parent: Optional[yaml.Node], index: object) -> Optional[yaml.Node]:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise YamlRefused(f"nested deeper than {MAX_YAML_DEPTH} levels", _location(self.peek_event().start_mark))
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_bounded_int(self, node: yaml.ScalarNode) -> int:
        try:
            return self.construct_yaml_int(node)
        except ValueError:  # longer than sys.get_int_max_str_digits() allows
            raise YamlRefused(f"an integer of more than {sys.get_int_max_str_digits()} digits",
                              _location(node.start_mark)) from None


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_bounded_int)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a node graph too big or too deep once aliases are expanded, or one that contains itself.

    Aliases make the composed graph a DAG (or a cycle) whose expansion can be exponential in the
    file's size, and everything downstream (validation, JSON for the wire) expands it. Sizes are
    memoised per node, so the walk costs the graph's size, not the expansion's; it is iterative,
    since the depth it guards against is the point.
    """
    cost: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            children = _children(node)
            own = len(node.value) if isinstance(node, yaml.ScalarNode) else 0
            cost[key] = 1 + own + sum(cost[id(child)] for child in children)
            depth[key] = 1 + max((depth[id(child)] for child in children), default=0)
            if cost[key] > MAX_YAML_EXPANDED:
                raise YamlRefused(f"expands to more than {MAX_YAML_EXPANDED} nodes and characters once its aliases "
                                  "are followed", _location(node.start_mark))
            if depth[key] > MAX_YAML_DEPTH:
                raise YamlRefused(f"nested deeper than {MAX_YAML_DEPTH} levels once its aliases are followed",
                                  _location(node.start_mark))
            continue
        if key in cost:
            continue
        if key in on_path:
            raise YamlRefused("an alias refers to a node that contains it", _location(node.start_mark))
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in cost)


def _location(mark: Optional[yaml.Mark]) -> Optional[str]:
    return None if mark is None else f"{mark.line + 1}:{mark.column + 1}"


def _location_of_offset(text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    return f"{line}:{offset - (text.rfind(chr(10), 0, offset) + 1) + 1}"


def _problem(exc: yaml.MarkedYAMLError) -> str:
    """PyYAML's description of the problem, without the snippet of the line it normally appends."""
    problem = f"not valid YAML: {(exc.problem or exc.context or 'unreadable')[:_MAX_PROBLEM_CHARS]}"
    if exc.problem and exc.context and exc.context_mark is not None:
        return f"{problem} ({exc.context[:_MAX_PROBLEM_CHARS]} at {_location(exc.context_mark)})"
    return problem


def _field_path(loc: tuple[Any, ...]) -> str:
    """A validation error's location, with any key that is not a plain name left out (keys are content too)."""
    parts = [str(part) if isinstance(part, int) or _SHOWN_FIELD.match(str(part)) else "<key>" for part in loc]
    return ".".join(parts) or "<root>"
