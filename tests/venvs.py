"""Child virtual environments for tests that need a fresh ``python`` (an install, a PATH without py-spy)."""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path


def child_venv(path: Path, *, with_pip: bool = True) -> Path:
    """A venv at ``path`` that also sees this interpreter's packages, returned as its ``bin`` dir.

    ``--system-site-packages`` alone gives the *base* interpreter's packages, which are not this
    one's when the suite itself runs in a venv; a ``.pth`` file adds this interpreter's site
    directories (their own ``.pth`` files, editable installs included, are processed too) after
    the child's own, so what the child installs comes first.
    """
    command = [sys.executable, "-m", "venv", "--system-site-packages", *([] if with_pip else ["--without-pip"]), str(path)]
    subprocess.run(command, check=True, timeout=120)
    python = path / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    ours = [d for d in [*site.getsitepackages(), site.getusersitepackages()] if os.path.isdir(d)]
    Path(purelib, "_profviz_tests_parent.pth").write_text("".join(f"import site; site.addsitedir({d!r})\n" for d in ours))
    return path / "bin"
