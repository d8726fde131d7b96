"""profviz: a sampling profiler and flame-graph viewer for Python backends.

Public API:

* :class:`Profile`, :class:`State`, :class:`Span`: the profile model (interned tables).
* :class:`Store`: the SQLite store of profiles, requests and spans.
* :func:`build_call_tree`, :class:`SampleFilter`: merged call trees over any subset of samples.
* :class:`ProfvizError`: every error whose message says what failed and what to do.
"""

from .analysis.calltree import SampleFilter, build_call_tree
from .errors import ProfvizError
from .model import FORMAT_VERSION, Profile, Span, State
from .store import Store

__version__ = "0.1.0"

__all__ = ["FORMAT_VERSION", "Profile", "ProfvizError", "SampleFilter", "Span", "State", "Store", "build_call_tree"]
