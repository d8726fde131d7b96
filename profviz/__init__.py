"""profviz: a sampling profiler and flame-graph viewer for Python backends.

Public API:

* :class:`Profile`, :class:`State`, :class:`Span`, :data:`FORMAT_VERSION`: the profile model
  (interned strings, frames, stacks and threads; sample columns; spans). Fill profiles only
  through :meth:`Profile.append_sample`.
* :class:`Store`, :func:`open_store`: the store of profiles, requests and spans (SQLite by default).
* :func:`build_call_tree`, :class:`SampleFilter`: merged call trees over any subset of samples.
* :class:`ProfilerMiddleware`: the WSGI middleware (``profviz.flask.init_app`` and
  ``profviz.django.ProfvizMiddleware`` wrap it).
* :func:`setup_otel`: record this process's OpenTelemetry spans, stamped with their thread.
* :func:`load_any`, :func:`dump`: read and write profile files (speedscope, folded stacks,
  py-spy chrometrace, pyinstrument, profviz JSON).
* :func:`create_app`: the Flask app behind ``profviz serve``.
* :class:`ProfvizError`: every error whose message says what failed and what to do.

The last four are imported on first use, so ``import profviz`` stays light.
"""

from importlib import import_module
from typing import Any

from .analysis.calltree import SampleFilter, build_call_tree
from .errors import ProfvizError
from .model import FORMAT_VERSION, Profile, Span, State
from .store import Store, open_store

__version__ = "0.1.0"

_LAZY = {
    "ProfilerMiddleware": ("profviz.middleware.wsgi", "ProfilerMiddleware"),
    "setup_otel": ("profviz.otel", "setup_otel"),
    "load_any": ("profviz.formats", "load_any"),
    "dump": ("profviz.formats", "dump"),
    "create_app": ("profviz.server", "create_app"),
}

__all__ = [
    "FORMAT_VERSION", "Profile", "ProfilerMiddleware", "ProfvizError", "SampleFilter", "Span", "State", "Store",
    "build_call_tree", "create_app", "dump", "load_any", "open_store", "setup_otel",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'profviz' has no attribute {name!r}")
