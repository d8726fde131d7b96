"""The ``functions`` table of a response: functions used by its nodes, each once, in first-use order."""

from __future__ import annotations

from ..analysis.calltree import FunctionTable
from ..analysis.common import classify_file


def function_row(functions: FunctionTable, function_id: int) -> dict:
    """One function: name, file, line, and the package and origin it comes from."""
    file = functions.files[function_id]
    package, origin = classify_file(file)
    return {"name": functions.names[function_id], "file": file, "line": int(functions.lines[function_id]),
            "package": package, "origin": origin}


class FunctionRows:
    """The ``functions`` table of one response: function ids of ``functions`` -> local indexes."""

    def __init__(self, functions: FunctionTable):
        self._functions = functions
        self._local: dict[int, int] = {}
        self.rows: list[dict] = []

    def local(self, function_id: int) -> int:
        """Local index of a function id; -1 stays -1 (the root and "other" entries)."""
        if function_id < 0:
            return -1
        index = self._local.get(function_id)
        if index is None:
            index = self._local[function_id] = len(self.rows)
            self.rows.append(function_row(self._functions, function_id))
        return index
