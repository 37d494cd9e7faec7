"""Reading a YAML file a user wrote: parsed once, the node tree kept for line numbers, and a key
given twice in one mapping refused (YAML keeps the last one silently, so half of what the user
wrote would be ignored)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class YamlFileError(ValueError):
    """Not valid YAML, or a duplicated key; the message starts with file:line."""


def load_yaml(text: str, path: Path | str) -> tuple[Any, yaml.Node | None]:
    """The document and its node tree (None for an empty document)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _refuse_duplicate_keys(node, path)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise YamlFileError(f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from exc
    finally:
        loader.dispose()
    return data, node


def _refuse_duplicate_keys(root: yaml.Node, path: Path | str) -> None:
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            first_line: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    line = key.start_mark.line + 1
                    if key.value in first_line:
                        raise YamlFileError(
                            f"{path}:{line}: key {key.value!r} appears twice in one mapping (first at line "
                            f"{first_line[key.value]}); YAML would keep only the last one. Keep one of them."
                        )
                    first_line[key.value] = line
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
