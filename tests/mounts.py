"""A small tmpfs mounted for a test (the suite runs as root, as ``bash .ci/run`` does): a full
disk, a read-only filesystem, without touching the machine's own disks."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def tmpfs(size: str = "8m") -> Iterator[Path]:
    """A fresh tmpfs of ``size`` at a temporary directory; unmounted and removed afterwards."""
    where = Path(tempfile.mkdtemp(prefix="profviz-tmpfs-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)], capture_output=True, text=True)
    if done.returncode != 0:
        where.rmdir()
        raise RuntimeError(f"cannot mount a tmpfs ({done.stderr.strip()}): these tests need root (bash .ci/run runs as root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
        with contextlib.suppress(OSError):
            where.rmdir()


def remount(where: Path, option: str) -> None:
    """``mount -o remount,OPTION`` (``ro`` or ``rw``)."""
    subprocess.run(["mount", "-o", f"remount,{option}", str(where)], check=True, capture_output=True, timeout=30)
