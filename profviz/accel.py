"""profviz's optional C extension, :mod:`profviz._speedups`: ``speedups`` is the module, or None.

The extension holds the WSGI middleware's request-path hot spots (the request's fields and
clocks, the observed response iterable, the sampler's stack walk); every piece has a pure
Python version that behaves the same. ``pip install`` builds it when a C compiler and Python's
headers are there (setup.py); without them profviz runs on the Python versions, only slower.
Setting ``PROFVIZ_NO_SPEEDUPS=1`` in the environment before profviz is imported uses the Python
versions even when the extension is built.
"""

from __future__ import annotations

import os
from types import ModuleType

speedups: ModuleType | None = None
if not os.environ.get("PROFVIZ_NO_SPEEDUPS"):
    try:
        from . import _speedups as speedups
    except ImportError:
        speedups = None
