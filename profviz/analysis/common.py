"""Helpers every view shares: shares of a total, and where a source file comes from."""

from __future__ import annotations

import re


def fraction(part: float, whole: float) -> float:
    """``part / whole`` rounded to 9 digits; 0 for an empty whole."""
    return round(float(part) / float(whole), 9) if whole else 0.0


_SITE_DIRS = ("site-packages", "dist-packages")


def classify_file(file: str) -> tuple[str, str]:
    """(package, origin) of a source file, for colouring.

    origin is ``site-packages`` (third-party), ``stdlib``, ``native`` (no Python file, e.g. a
    py-spy native frame), ``app`` (anything else with a path) or ``unknown`` (empty).
    """
    if not file:
        return "", "unknown"
    if file.startswith("<frozen "):
        module = file[len("<frozen "):].rstrip(">")
        return module.split(".")[0], "stdlib"
    if file.startswith("<") or "/" not in file and "\\" not in file and not file.endswith(".py"):
        return file, "native"
    parts = [p for p in re.split(r"[\\/]+", file) if p]
    for index in range(len(parts) - 1, -1, -1):
        if parts[index] in _SITE_DIRS and index + 1 < len(parts):
            return _strip_py(parts[index + 1]), "site-packages"
    for index, part in enumerate(parts):
        if re.fullmatch(r"python\d+(\.\d+)?", part) and index > 0 and parts[index - 1] in ("lib", "lib64", "Lib") \
                and index + 1 < len(parts):
            return _strip_py(parts[index + 1]), "stdlib"
    if len(parts) >= 2:
        return parts[-2], "app"
    return _strip_py(parts[-1]), "app"


def _strip_py(name: str) -> str:
    return name[:-3] if name.endswith(".py") else name
