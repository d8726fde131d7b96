"""Suite-wide setup: the same environment whether the suite runs in a terminal, a venv, CI or a background job."""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path

# A suite started as a background job (or by some CI runners) inherits SIGINT ignored, and so would
# every child it starts: Python then installs no KeyboardInterrupt handler, and the tests that stop a
# child with SIGINT (as a user's Ctrl-C would) would wait for nothing.
signal.signal(signal.SIGINT, signal.default_int_handler)

# Nothing the suite runs writes into the user's home: profviz's default store and the sample
# shop's database cache go under the temp dir (kept between runs, so the shop's database is built once).
_ROOT = Path(tempfile.gettempdir()) / f"profviz-tests-{os.getuid()}"
os.environ["XDG_DATA_HOME"] = str(_ROOT / "data")
os.environ["XDG_CACHE_HOME"] = str(_ROOT / "cache")
os.environ.pop("PROFVIZ_STORE", None)
