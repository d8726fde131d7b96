"""Profile model: interned tables of strings, frames, stacks, threads, samples and spans; request records."""

from .profile import (
    FORMAT_VERSION,
    NO_REASON,
    NO_STACK,
    Frame,
    Profile,
    ProfileError,
    TableLists,
    Thread,
    profile_from_tables,
)
from .requests import FIELD_COUNT, REQUEST_FIELDS, RequestBatch, RequestRow, StackNodes
from .shared_stacks import SharedStackProfile
from .span import SPAN_KINDS, SPAN_SOURCES, SPAN_STATUSES, Span, SpanError
from .span_facts import SpanFacts, SpanKey
from .state import STATE_NAMES, State

__all__ = [
    "FIELD_COUNT", "FORMAT_VERSION", "NO_REASON", "NO_STACK", "REQUEST_FIELDS", "SPAN_KINDS", "SPAN_SOURCES",
    "SPAN_STATUSES", "STATE_NAMES", "Frame", "Profile", "ProfileError", "RequestBatch", "RequestRow", "SharedStackProfile",
    "Span", "SpanError", "SpanFacts", "SpanKey", "StackNodes", "State", "TableLists", "Thread", "profile_from_tables",
]
