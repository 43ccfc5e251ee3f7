"""Read a policy file's YAML and remember the line of every key, so errors can point at it.

``yaml.safe_load`` loses line numbers and silently keeps the last of two duplicate keys, which in
a policy could drop a whole ``deny:`` list. Here the document is first composed into PyYAML's
node tree (with the safe loader), the tree is walked once to record ``key path → line`` and to
refuse duplicate keys, non-string keys and empty values, and only then are Python objects
constructed from the same nodes.

Imported only on the slow path (no cached compiled policy): it imports PyYAML.
"""

from __future__ import annotations

from typing import Any

import yaml

from portcullis._exceptions import PolicyError

__all__ = ["KeyPath", "SourceMap", "format_path", "read_yaml"]

KeyPath = tuple[str | int, ...]

_STR_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"
# Aliases share nodes, so a "billion laughs" file is small but expands exponentially when walked
# (and again when validated). No honest policy comes near this many nodes.
_MAX_NODES = 200_000


def format_path(path: KeyPath) -> str:
    """Render a key path as written in error messages: ``servers.files.tools.allow[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


class SourceMap:
    """The line on which each key (or list item) of a policy file starts."""

    def __init__(self, lines: dict[KeyPath, int]) -> None:
        self._lines = lines

    def line_of(self, path: KeyPath) -> int | None:
        """Return the line of ``path``, or of its nearest ancestor present in the file."""
        for n in range(len(path), -1, -1):
            line = self._lines.get(path[:n])
            if line is not None:
                return line
        return None

    def __contains__(self, path: object) -> bool:
        return path in self._lines


def read_yaml(data: bytes, filename: str) -> tuple[dict[str, Any], SourceMap]:
    """Parse a policy file's bytes into a mapping and its :class:`SourceMap`.

    Raises :class:`PolicyError` (with the line where known) for undecodable bytes, YAML syntax
    errors, an empty file, a top level that is not a mapping, duplicate keys, keys that are not
    strings, empty values and alias bombs.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PolicyError("the file is not UTF-8 text", path=filename, line=line) from None
    loader_cls: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_cls(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            raise _yaml_error(exc, filename, text) from None
        except RecursionError:
            raise PolicyError("the YAML is nested too deeply", path=filename) from None
        if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == _NULL_TAG):
            raise PolicyError(
                "the policy file is empty; it needs at least `version: 1`", path=filename
            )
        if not isinstance(root, yaml.MappingNode):
            raise PolicyError(
                "the top level must be a mapping (version:, defaults:, servers: …), "
                f"not a {_node_kind(root)}",
                path=filename,
                line=root.start_mark.line + 1,
            )
        walker = _Walker(filename)
        walker.walk(root, ())
        try:
            value = loader.construct_document(root)
        except yaml.MarkedYAMLError as exc:
            raise _yaml_error(exc, filename, text) from None
    finally:
        loader.dispose()
    return value, SourceMap(walker.lines)


def _yaml_error(exc: yaml.MarkedYAMLError, filename: str, text: str) -> PolicyError:
    mark = exc.problem_mark or exc.context_mark
    # At end of file the mark sits on the empty line after the last newline; name the last line.
    last = max(1, len(text.splitlines()))
    line = min(mark.line + 1, last) if mark is not None else None
    problem = exc.problem or exc.context or "invalid YAML"
    context = f" ({exc.context})" if exc.context and exc.problem else ""
    return PolicyError(f"YAML syntax error: {problem}{context}", path=filename, line=line)


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "list"
    return "single value"


class _Walker:
    """Records key lines and refuses what ``safe_load`` would silently accept."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.lines: dict[KeyPath, int] = {}
        self._visited = 0
        self._stack: set[int] = set()

    def _error(self, message: str, node: yaml.Node, path: KeyPath) -> PolicyError:
        return PolicyError(
            message,
            path=self.filename,
            line=node.start_mark.line + 1,
            key=format_path(path) or None,
        )

    def walk(self, node: yaml.Node, path: KeyPath) -> None:
        self._visited += 1
        if self._visited > _MAX_NODES:
            raise self._error(
                f"the file expands to more than {_MAX_NODES} values (anchors and aliases?)",
                node,
                path,
            )
        if id(node) in self._stack:
            raise self._error(
                "a YAML alias refers to the mapping or list that contains it", node, path
            )
        if path not in self.lines:
            self.lines[path] = node.start_mark.line + 1
        self._stack.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                self._mapping(node, path)
            elif isinstance(node, yaml.SequenceNode):
                for i, item in enumerate(node.value):
                    self.lines[(*path, i)] = item.start_mark.line + 1
                    self.walk(item, (*path, i))
        finally:
            self._stack.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> None:
        seen: dict[str, int] = {}
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            key = self._key(key_node, path)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise self._error(
                    f"duplicate key {key!r} (first at line {seen[key]}); YAML would silently "
                    "keep only the last one: merge the two",
                    key_node,
                    (*path, key),
                )
            seen[key] = line
            self.lines[(*path, key)] = line
            if isinstance(value_node, yaml.ScalarNode) and value_node.tag == _NULL_TAG:
                raise self._error(
                    "has no value (YAML reads an empty value, `null` and `~` as null): give it "
                    'a value or remove the key; quote "~" to mean the home directory',
                    key_node,
                    (*path, key),
                )
            self.walk(value_node, (*path, key))
        # `<<: *anchor` merges: keys written in this mapping win over merged ones, as in YAML.
        for merged in merges:
            sources = merged.value if isinstance(merged, yaml.SequenceNode) else [merged]
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    continue  # construction reports this with its own message
                for key_node, value_node in source.value:
                    if key_node.tag == _MERGE_TAG or key_node.tag != _STR_TAG:
                        continue
                    key = str(key_node.value)
                    if key in seen:
                        continue
                    seen[key] = key_node.start_mark.line + 1
                    self.lines[(*path, key)] = key_node.start_mark.line + 1
                    self.walk(value_node, (*path, key))

    def _key(self, node: yaml.Node, path: KeyPath) -> str:
        if isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG:
            return str(node.value)
        if isinstance(node, yaml.ScalarNode):
            raise self._error(
                f"the key {node.value!r} is not read as text by YAML "
                f"({node.tag.rsplit(':', 1)[-1]}): quote it",
                node,
                path,
            )
        raise self._error("a key must be plain text, not a list or mapping", node, path)
