"""Inserting encoded profiles into the ``profiles`` and ``profile_data`` tables."""

from __future__ import annotations

import sqlite3

from ..summary import SUMMARY_FIELDS

_INSERT_PROFILE = f"INSERT INTO profiles ({', '.join(SUMMARY_FIELDS)}) VALUES ({', '.join('?' * len(SUMMARY_FIELDS))})"
_INSERT_PROFILE_WITH_ID = f"INSERT INTO profiles (id, {', '.join(SUMMARY_FIELDS)}) VALUES "
_PROFILE_ROW_WITH_ID = "(" + ", ".join(["?"] * (len(SUMMARY_FIELDS) + 1)) + ")"
_PROFILES_PER_STATEMENT = 50  # 17 parameters a profile row: 850, under every SQLite's variable limit


def insert_encoded(c: sqlite3.Connection, encoded: list) -> list[int]:
    """Insert encoded profiles with a few multi-row statements (one commit, a few GIL releases,
    whatever the count); their new ids."""
    if not encoded:
        return []
    first = int(c.execute(_INSERT_PROFILE, encoded[0].summary).lastrowid)
    # the insert holds the write lock, and AUTOINCREMENT gave ``first`` above every id ever used:
    # the next ids are free, and explicit ids keep AUTOINCREMENT's sequence past them
    ids = list(range(first, first + len(encoded)))
    for start in range(1, len(encoded), _PROFILES_PER_STATEMENT):
        chunk = encoded[start:start + _PROFILES_PER_STATEMENT]
        c.execute(
            _INSERT_PROFILE_WITH_ID + ", ".join([_PROFILE_ROW_WITH_ID] * len(chunk)),
            [value for offset, item in enumerate(chunk) for value in (first + start + offset, *item.summary)],
        )
    for start in range(0, len(encoded), _PROFILES_PER_STATEMENT):
        chunk = encoded[start:start + _PROFILES_PER_STATEMENT]
        c.execute(
            "INSERT INTO profile_data VALUES " + ", ".join(["(?, ?, ?)"] * len(chunk)),
            [value for offset, item in enumerate(chunk) for value in (ids[start + offset], item.tables, item.samples)],
        )
    return ids
