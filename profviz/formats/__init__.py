"""Profile file formats: one module per format, each with ``detect(data)``, ``load(data, ...)`` and,
where the format can hold a profile, ``dump(profile)``.

:data:`FORMATS` lists them in detection order (most specific first); :func:`detect_format`,
:func:`load_any` and :func:`dump` are what the CLI and the server use. Every loader fills its
profile through the model's builders, and every failure is a :class:`FormatError` whose one-line
message says what was wrong where and what to do.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

from ..model import Profile, ProfileError
from .base import FormatError

from . import chrome_trace, collapsed, firefox, pprof, profviz_json, pyinstrument_json, speedscope

try:
    from . import pyspy_chrometrace
except ImportError:  # the attach collector's module; every other format works without it
    pyspy_chrometrace = None

__all__ = ["FORMATS", "Format", "FormatError", "detect_format", "dump", "format_named", "load_any", "names"]

MAX_DECOMPRESSED_BYTES = 1 << 30
HINT = "export from py-spy with --format speedscope or raw, or from pyinstrument with -r session"


@dataclass(frozen=True)
class Format:
    """A registered format: its name, module and what it is; ``can_dump`` when it can be written."""

    name: str
    module: ModuleType
    description: str
    extension: str

    @property
    def can_dump(self) -> bool:
        return hasattr(self.module, "dump")

    def detect(self, data: bytes) -> bool:
        return bool(self.module.detect(data))

    def load(self, data: bytes, options: dict[str, Any]) -> Profile:
        return _LOADERS.get(self.name, _load_plain)(self.module, data, options)


def _load_plain(module: ModuleType, data: bytes, options: dict[str, Any]) -> Profile:
    return module.load(
        data,
        rate_hz=options.get("rate_hz"),
        start_ns=options.get("start_ns") or options.get("file_mtime_ns") or 0,
        pid=options.get("pid") or 0,
    )


def _load_chrometrace(module: ModuleType, data: bytes, options: dict[str, Any]) -> Profile:
    return module.load(data, rate_hz=options.get("rate_hz") or 100.0, origin_ns=options.get("start_ns"), file_mtime_ns=options.get("file_mtime_ns"))


_LOADERS: dict[str, Callable[[ModuleType, bytes, dict[str, Any]], Profile]] = {"chrometrace": _load_chrometrace}

FORMATS: tuple[Format, ...] = (
    Format(profviz_json.NAME, profviz_json, profviz_json.DESCRIPTION, profviz_json.EXTENSION),
    Format(speedscope.NAME, speedscope, speedscope.DESCRIPTION, speedscope.EXTENSION),
    Format(pyinstrument_json.NAME, pyinstrument_json, pyinstrument_json.DESCRIPTION, pyinstrument_json.EXTENSION),
    Format(firefox.NAME, firefox, firefox.DESCRIPTION, firefox.EXTENSION),
) + (
    (Format("chrometrace", pyspy_chrometrace, "py-spy chrome trace JSON (py-spy --format chrometrace)", ".json"),)
    if pyspy_chrometrace is not None else ()
) + (
    Format(chrome_trace.NAME, chrome_trace, chrome_trace.DESCRIPTION, chrome_trace.EXTENSION),
    Format(pprof.NAME, pprof, pprof.DESCRIPTION, pprof.EXTENSION),
    Format(collapsed.NAME, collapsed, collapsed.DESCRIPTION, collapsed.EXTENSION),
)


def names(*, dumpable: bool = False) -> list[str]:
    return [f.name for f in FORMATS if f.can_dump or not dumpable]


def format_named(name: str) -> Format:
    for fmt in FORMATS:
        if fmt.name == name:
            return fmt
    raise FormatError(f"unknown format {name!r}; known formats: {', '.join(names())}")


def _decompress(data: bytes, label: str) -> bytes:
    """Gzip and zstd input (ddtrace's pprof files) are accepted transparently (up to 1 GiB unpacked)."""
    if data[:4] == ZSTD_MAGIC:
        return _unzstd(data, label)
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        unpacker = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = unpacker.decompress(data, MAX_DECOMPRESSED_BYTES)
    except zlib.error as exc:
        raise FormatError(f"cannot read {label}: it starts like gzip but does not unpack ({exc})") from None
    if unpacker.unconsumed_tail:
        raise FormatError(f"cannot read {label}: the gzip data unpacks to more than {MAX_DECOMPRESSED_BYTES >> 20} MiB")
    if not unpacker.eof:
        raise FormatError(f"cannot read {label}: the gzip data is truncated")
    return out


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _unzstd(data: bytes, label: str) -> bytes:
    """Every zstd frame of ``data``, unpacked in bounded steps (a 1 KiB step unpacks to 32 MiB at
    most), refused when it grows past the bound or a frame is cut short."""
    import zstandard  # only zstd input needs it

    chunks: list[bytes] = []
    size, offset, view = 0, 0, memoryview(data)
    decompressor = zstandard.ZstdDecompressor()
    try:
        while offset < len(data):
            unpacker = decompressor.decompressobj()
            at = offset
            while not unpacker.eof and at < len(data):
                piece = unpacker.decompress(view[at:at + 1024])
                at += 1024
                size += len(piece)
                if size > MAX_DECOMPRESSED_BYTES:
                    raise FormatError(f"cannot read {label}: the zstd data unpacks to more than {MAX_DECOMPRESSED_BYTES >> 20} MiB")
                chunks.append(piece)
            if not unpacker.eof:
                raise FormatError(f"cannot read {label}: the zstd data is truncated")
            offset = min(at, len(data)) - len(unpacker.unused_data)  # the next frame starts where this one's input ended
    except zstandard.ZstdError as exc:
        raise FormatError(f"cannot read {label}: it starts like zstd but does not unpack ({exc})") from None
    return b"".join(chunks)


def _first_bytes(data: bytes) -> str:
    return repr(data[:40])[1:] + ("..." if len(data) > 40 else "")


def detect_format(data: bytes, name: str | None = None) -> Format:
    """The first format in :data:`FORMATS` whose ``detect`` accepts ``data``; FormatError if none."""
    label = repr(name) if name else "the input"
    if not data.strip():
        raise FormatError(f"cannot read {label}: the file is empty")
    data = _decompress(data, label)
    for fmt in FORMATS:
        if fmt.detect(data):
            return fmt
    known = ", ".join(f.name for f in FORMATS[:-1]) + f" or {FORMATS[-1].name}"
    raise FormatError(f"cannot read {label}: not a {known} file (first bytes: {_first_bytes(data)}); {HINT}")


def load_any(data: bytes, name: str | None = None, *, format_name: str | None = None, **options: Any) -> Profile:
    """Detect (or take ``format_name``) and load; ``name`` (a file name) only labels errors.

    Options: ``rate_hz`` (prices sample counts), ``start_ns`` (anchors relative times),
    ``file_mtime_ns`` (the file's mtime, used when the format has no absolute times), ``pid``.
    Any failure is a one-line FormatError: "cannot read 'x' as <format>: <what, where>".
    """
    label = repr(name) if name else "the input"
    if not data.strip():
        raise FormatError(f"cannot read {label}: the file is empty")
    fmt = format_named(format_name) if format_name else detect_format(data, name)
    data = _decompress(data, label)
    try:
        return fmt.load(data, options)
    except FormatError as exc:
        raise FormatError(f"cannot read {label} as {fmt.name}: {exc}") from None
    except ProfileError as exc:
        raise FormatError(f"cannot read {label} as {fmt.name}: {exc}") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, RecursionError) as exc:
        raise FormatError(f"cannot read {label} as {fmt.name}: malformed input ({type(exc).__name__}: {str(exc)[:200]})") from None


def dump(profile: Profile, format_name: str, **options: Any) -> bytes:
    """The profile as bytes in ``format_name`` (one of ``names(dumpable=True)``)."""
    fmt = format_named(format_name)
    if not fmt.can_dump:
        raise FormatError(f"profviz cannot write {format_name} files; write one of: {', '.join(names(dumpable=True))}")
    return fmt.module.dump(profile, **options)
