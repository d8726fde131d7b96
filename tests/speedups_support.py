"""Runs a test once with each implementation of the request-path hot spots: the C extension
``profviz._speedups`` and the pure Python fallbacks used when it was not built.

Not a conftest: test modules import ``implementation`` (a fixture) and use it.
"""

from __future__ import annotations

import pytest

from profviz import wsgi
from profviz.collect import sampler

from profviz.accel import speedups as _speedups  # None: not built (tests/test_speedups.py fails), or PROFVIZ_NO_SPEEDUPS


@pytest.fixture(params=["c", "python"])
def implementation(request, monkeypatch) -> str:
    """``"c"`` or ``"python"``: which response wrapper, request clocks and stack walker this run of the test uses."""
    if request.param == "c":
        if _speedups is None:
            pytest.skip("profviz._speedups was not built")
        monkeypatch.setattr(wsgi, "_observe_response", _speedups.observe_response)
        monkeypatch.setattr(sampler, "_walk_fresh", _speedups.walk_fresh)
        monkeypatch.setattr(wsgi, "_start_request", _speedups.start_request)
        monkeypatch.setattr(wsgi, "_stop_clocks", _speedups.stop_clocks)
    else:
        monkeypatch.setattr(wsgi, "_observe_response", wsgi._observe_response_python)
        monkeypatch.setattr(sampler, "_walk_fresh", sampler._walk_fresh_python)
        monkeypatch.setattr(wsgi, "_start_request", wsgi._start_request_python)
        monkeypatch.setattr(wsgi, "_stop_clocks", wsgi._stop_clocks_python)
    return request.param
