"""Walking a large JSON text without building it whole: the containers a reader names are entered,
everything else is decoded value by value (``json.JSONDecoder.raw_decode``). Memory is the text
plus one value at a time, and no single call holds the GIL for the whole document."""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Iterator

_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


class JsonStreamError(ValueError):
    """The text is not valid JSON at ``position``."""

    def __init__(self, message: str, position: int):
        super().__init__(f"{message} at character {position}")
        self.position = position


class Cursor:
    """A position in a JSON text."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        self.pos = _SPACE.match(self.text, self.pos).end()
        return self.text[self.pos:self.pos + 1]

    def take(self, expected: str) -> None:
        if self.peek() != expected:
            found = self.text[self.pos:self.pos + 1] or "the end"
            raise JsonStreamError(f"expected {expected!r}, found {found!r}", self.pos)
        self.pos += 1

    def value(self) -> Any:
        """The next whole value."""
        self.peek()
        try:
            found, self.pos = _DECODER.raw_decode(self.text, self.pos)
        except json.JSONDecodeError as exc:
            raise JsonStreamError(exc.msg, exc.pos) from None
        except RecursionError:
            raise JsonStreamError("nested too deeply", self.pos) from None
        return found

    def end(self) -> None:
        if self.peek():
            raise JsonStreamError("extra data after the document", self.pos)


def object_keys(cursor: Cursor) -> Iterator[str]:
    """The keys of the object at the cursor; after each, the caller reads its value (``cursor.value()``
    or a walk of its own) before asking for the next."""
    cursor.take("{")
    if cursor.peek() == "}":
        cursor.pos += 1
        return
    while True:
        key = cursor.value()
        if not isinstance(key, str):
            raise JsonStreamError("expected a key string", cursor.pos)
        cursor.take(":")
        yield key
        if cursor.peek() == ",":
            cursor.pos += 1
            continue
        cursor.take("}")
        return


def array_items(cursor: Cursor) -> Iterator[int]:
    """The indices of the array at the cursor; after each, the caller reads that item."""
    cursor.take("[")
    if cursor.peek() == "]":
        cursor.pos += 1
        return
    index = 0
    while True:
        yield index
        index += 1
        if cursor.peek() == ",":
            cursor.pos += 1
            continue
        cursor.take("]")
        return


def walk_object(cursor: Cursor, entered: dict[str, Callable[[Cursor], None]]) -> dict[str, Any]:
    """Read the object at the cursor: each key in ``entered`` is handed to its function (which reads
    its value); the other keys' values are decoded and returned."""
    rest: dict[str, Any] = {}
    for key in object_keys(cursor):
        walk = entered.get(key)
        if walk is None:
            rest[key] = cursor.value()
        else:
            walk(cursor)
    return rest
