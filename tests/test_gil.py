"""Where the interpreter keeps its GIL: the ELF symbol table of another process's python, and the
dynamic linker's answer for this one, agree."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

from profviz.collect.gil import gil_range, own_gil_range


def test_this_process_by_the_linker_and_by_the_elf_symbols_agree():
    own = own_gil_range()
    assert own is not None and own == gil_range(os.getpid())
    assert own[0] == ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, "_PyRuntime")) and own[1] - own[0] > 1000


def test_another_python_process_and_a_non_python_one():
    child = subprocess.Popen([sys.executable, "-c", "import ctypes, sys; print(ctypes.addressof(ctypes.c_char.in_dll("
                              "ctypes.pythonapi, '_PyRuntime')), flush=True); sys.stdin.read()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        address = int(child.stdout.readline())
        found = gil_range(child.pid)
        assert found is not None and found[0] == address
    finally:
        child.stdin.close()
        child.wait(timeout=10)
    sleeper = subprocess.Popen(["sleep", "5"])
    try:
        assert gil_range(sleeper.pid) is None  # no _PyRuntime: every futex wait stays a lock wait
    finally:
        sleeper.kill()
        sleeper.wait()
    assert gil_range(2**22 + 12345) is None  # no such process
