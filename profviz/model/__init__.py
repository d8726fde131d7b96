"""Profile model: interned tables of strings, frames, stacks, threads, samples and spans."""

from .profile import (
    FORMAT_VERSION,
    NO_REASON,
    NO_STACK,
    Frame,
    Profile,
    ProfileError,
    Span,
    TableLists,
    Thread,
    profile_from_tables,
)
from .state import State

__all__ = [
    "FORMAT_VERSION", "NO_REASON", "NO_STACK", "Frame", "Profile", "ProfileError", "Span", "State", "TableLists",
    "Thread", "profile_from_tables",
]
