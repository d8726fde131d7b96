"""The engine's options are written once: the README's table, the adapters' docstrings and the
checks all agree with profviz/middleware/options.py."""

from __future__ import annotations

import socket

import re
from dataclasses import fields
from pathlib import Path

import pytest

from profviz.middleware.options import Options, defaults, options_from
from profviz.wsgi import ProfilerMiddleware

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_table_lists_every_option_with_its_default_and_meaning():
    rows = re.findall(r"^\| `(\w+)` \| `([^`]*)` \| (.*) \|$", README.read_text(encoding="utf-8"), flags=re.M)
    assert [(name, default, doc) for name, default, doc in rows] == [
        (f.name, repr(f.default), f.metadata["doc"]) for f in fields(Options)
    ]


def test_the_middleware_docstring_lists_every_option():
    for f in fields(Options):
        assert f"``{f.name}={f.default!r}``: {f.metadata['doc']}" in ProfilerMiddleware.__doc__


def test_unknown_and_out_of_range_options_are_refused_with_the_reason():
    with pytest.raises(TypeError, match="unknown profviz option 'sample_rate'; the options are: .*sample_hz"):
        options_from(None, sample_rate=10)
    for bad, message in (({"sample_hz": 0}, "sample_hz"), ({"deep_fraction": 2}, "deep_fraction"),
                         ({"tail_percentile": 100}, "tail_percentile"), ({"deep_trigger_secret": "short"}, "8 characters"),
                         ({"otel": "yes"}, "otel"), ({"queue_size": 0}, "queue_size")):
        with pytest.raises(ValueError, match=message):
            options_from(None, **bad)
    assert options_from("x.db", labels={"env": "ci"}).labels == {"env": "ci", "host": socket.gethostname()}
    assert defaults()["sample_hz"] == 100.0
