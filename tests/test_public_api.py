"""The documented public API of the profviz package resolves, and stays light to import."""

import subprocess
import sys

import pytest

import profviz


def test_every_public_name_resolves():
    for name in profviz.__all__:
        assert getattr(profviz, name) is not None, name
    assert profviz.ProfilerMiddleware.__module__ == "profviz.middleware.wsgi"
    assert callable(profviz.setup_otel) and callable(profviz.load_any) and callable(profviz.create_app)
    with pytest.raises(TypeError, match="open a store with profviz.open_store"):
        profviz.Store("profviz.db")


def test_import_does_not_pull_in_opentelemetry_flask_or_pyinstrument():
    code = "import sys, profviz; print(sorted(m for m in ('opentelemetry', 'flask', 'pyinstrument') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
