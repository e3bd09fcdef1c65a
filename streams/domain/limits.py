"""Limits that hold before any work on an input: nesting depth and finite numbers.

Pure functions, no Faust and no I/O. Everything that recurses into a document
(orjson's encoder stops at 255 levels, jsonschema's explanations and Python's
`repr` at the interpreter's recursion limit) runs only on events that passed
`json_depth_exceeds`, and nothing here recurses: an event nested a thousand levels
deep is encoded (`encode_json`) and measured with loops, not a call per level.

The cheap path matters: every event of the router passes through here. Its depth is
measured on its JSON bytes (the message's own, or its encoding when it came in a
batch or from Avro): a count of brackets, and only when that is over the limit a
handful of C-speed passes.
"""

from __future__ import annotations

import base64
import math
import re
from typing import Any

import orjson

# Events of the contract nest at most four levels (a comparison's candidate's
# metrics); anything near this is no event of ours.
DEFAULT_MAX_DEPTH = 32

_KEEP_STRUCTURE = bytes(range(256)).translate(None, b'"[]{}')  # bytes to delete
_INNERMOST_PAIR = re.compile(rb"\[\]|\{\}")


def json_depth_exceeds(raw: bytes, limit: int) -> bool:
    """Whether the valid JSON text `raw` nests deeper than `limit` levels.

    `raw` must be text that a JSON parser accepted (brackets balanced, strings
    closed); the answer for anything else means nothing. Escaped backslashes and
    quotes are dropped first, then everything but quotes and brackets, then the
    strings (every other piece between quotes); what is left is the bare bracket
    structure, whose depth is the number of passes that remove innermost pairs.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # cannot nest deeper than it has brackets
    text = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    text = text.translate(None, _KEEP_STRUCTURE)
    structure = b"".join(text.split(b'"')[::2])
    for _ in range(limit):
        if not structure:
            return False
        # One pass of re.sub removes exactly the pairs that are innermost now.
        structure = _INNERMOST_PAIR.sub(b"", structure)
    return bool(structure)


def non_finite_path(value: Any) -> str | None:
    """The JSON pointer of the first NaN or infinite number in `value`, or None.

    JSON text cannot hold them (the parser refuses them), but a binary wire can:
    an Avro double is IEEE 754. Call only on documents within the depth limit."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, float):
            if not math.isfinite(node):
                return path
        elif isinstance(node, dict):
            for key, child in node.items():
                step = str(key).replace("~", "~0").replace("/", "~1")
                stack.append((child, f"{path}/{step}"))
        elif isinstance(node, list):
            for index, child in enumerate(node):
                stack.append((child, f"{path}/{index}"))
    return None


def _fallback(value: Any) -> Any:
    """What orjson cannot encode by itself (an Avro `bytes` field, a set)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def encode_json(value: Any) -> bytes:
    """`value` as JSON bytes, whatever it holds and however deep it nests.

    orjson for everything it can encode; a loop of our own for documents deeper
    than orjson's limit (they are refused, and their dead letters still keep them
    whole)."""
    try:
        return orjson.dumps(value, default=_fallback)
    except (TypeError, orjson.JSONEncodeError):
        return _encode_deep(value)


class _Text(bytes):
    """Bytes already encoded (punctuation, a key): written as they are."""


_CLOSE_OBJECT, _CLOSE_ARRAY, _COMMA = _Text(b"}"), _Text(b"]"), _Text(b",")


def _encode_deep(value: Any) -> bytes:
    """JSON of `value` without recursion: a stack of what is still to be written."""
    out: list[bytes] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Text):
            out.append(item)
        elif isinstance(item, dict):
            out.append(b"{")
            stack.append(_CLOSE_OBJECT)
            entries = list(item.items())
            for position in range(len(entries) - 1, -1, -1):
                key, child = entries[position]
                stack.append(child)
                stack.append(_Text(orjson.dumps(str(key)) + b":"))
                if position:
                    stack.append(_COMMA)
        elif isinstance(item, list):
            out.append(b"[")
            stack.append(_CLOSE_ARRAY)
            for position in range(len(item) - 1, -1, -1):
                stack.append(item[position])
                if position:
                    stack.append(_COMMA)
        else:
            out.append(orjson.dumps(item, default=_fallback))
    return b"".join(out)
