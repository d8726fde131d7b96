"""Where a CPython process keeps its GIL, so a thread blocked on it is told from one blocked on a lock.

A thread waiting for the GIL sleeps in ``futex()`` on a condition variable inside the interpreter's
runtime state, the static ``_PyRuntime`` object of the python executable or of libpython (3.10-3.12:
``_PyRuntime.ceval.gil``; 3.13: the main interpreter's ``_gil``, itself inside ``_PyRuntime``). A
``threading.Lock``, ``Condition``, ``Queue`` or ``Event`` is a heap-allocated semaphore, never
inside it. So a futex wait whose address lies in ``_PyRuntime`` is a GIL wait: :func:`gil_range`
finds that object's address range from the process's memory map and the ELF symbol table of the
file it comes from (read with pyelftools). Limits: docs/attach.md.
"""

from __future__ import annotations

import ctypes
import functools
import os

RUNTIME_SYMBOL = "_PyRuntime"


def gil_range(pid: int) -> tuple[int, int] | None:
    """[start, end) of ``_PyRuntime`` in process ``pid``'s memory, or None when it cannot be found
    (not CPython, a stripped build, an unreadable map or file)."""
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as maps:
            lines = maps.read().splitlines()
    except OSError:
        return None
    mappings: dict[str, list[tuple[int, int]]] = {}
    for line in lines:
        fields = line.split(None, 5)
        if len(fields) < 6 or not fields[5].startswith("/"):
            continue
        start = int(fields[0].split("-")[0], 16)
        mappings.setdefault(fields[5], []).append((start, int(fields[2], 16)))
    try:
        executable = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        executable = None
    candidates = [path for path in mappings if os.path.basename(path).startswith("libpython")]
    if executable in mappings:
        candidates.append(executable)
    for path in candidates:
        found = _runtime_symbol(_readable(pid, path))
        if found is None:
            continue
        value, size, first_vaddr = found
        base = min(start for start, offset in mappings[path] if offset == 0) - first_vaddr
        return base + value, base + value + size
    return None


def _readable(pid: int, path: str) -> str:
    """The path under the process's own root (another container's files), when it exists there."""
    rooted = f"/proc/{pid}/root{path}"
    return rooted if os.path.exists(rooted) else path


@functools.lru_cache(maxsize=16)
def _runtime_symbol(path: str) -> tuple[int, int, int] | None:
    """(st_value, st_size of ``_PyRuntime``, vaddr of the first PT_LOAD segment) of an ELF file, or None."""
    try:
        from elftools.elf.elffile import ELFFile
        from elftools.common.exceptions import ELFError
    except ImportError:
        return None
    try:
        with open(path, "rb") as handle:
            elf = ELFFile(handle)
            loads = [segment["p_vaddr"] - segment["p_offset"] for segment in elf.iter_segments() if segment["p_type"] == "PT_LOAD"]
            for name in (".dynsym", ".symtab"):
                table = elf.get_section_by_name(name)
                if table is None:
                    continue
                for symbol in table.get_symbol_by_name(RUNTIME_SYMBOL) or ():
                    if symbol["st_value"] and symbol["st_size"]:
                        return int(symbol["st_value"]), int(symbol["st_size"]), int(loads[0]) if loads else 0
    except (OSError, ELFError, ValueError, KeyError):
        return None
    return None


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p), ("dli_sname", ctypes.c_char_p),
                ("dli_saddr", ctypes.c_void_p)]


class _Elf64Sym(ctypes.Structure):
    _fields_ = [("st_name", ctypes.c_uint32), ("st_info", ctypes.c_ubyte), ("st_other", ctypes.c_ubyte),
                ("st_shndx", ctypes.c_uint16), ("st_value", ctypes.c_uint64), ("st_size", ctypes.c_uint64)]


_RTLD_DL_SYMENT = 1


def own_gil_range() -> tuple[int, int] | None:
    """:func:`gil_range` of this process, from the dynamic linker (``dlsym`` and glibc's
    ``dladdr1``, microseconds) instead of parsing an ELF file in Python, which would hold the GIL
    for a fifth of a second inside the app it profiles. None where that is not available."""
    try:
        address = ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, RUNTIME_SYMBOL))
        dladdr1 = ctypes.CDLL(None).dladdr1
    except (ValueError, AttributeError, OSError):
        return None
    dladdr1.argtypes = (ctypes.c_void_p, ctypes.POINTER(_DlInfo), ctypes.POINTER(ctypes.c_void_p), ctypes.c_int)
    dladdr1.restype = ctypes.c_int
    info, entry = _DlInfo(), ctypes.c_void_p()
    if not dladdr1(address, ctypes.byref(info), ctypes.byref(entry), _RTLD_DL_SYMENT) or not entry.value or ctypes.sizeof(ctypes.c_void_p) != 8:
        return None
    symbol = ctypes.cast(entry, ctypes.POINTER(_Elf64Sym)).contents
    if info.dli_saddr != address or not symbol.st_size:
        return None
    return address, address + int(symbol.st_size)
