"""The ``stack_nodes`` table: the in-process sampler's shared stack nodes, keyed by source."""

from __future__ import annotations

import json
import sqlite3

from .database import Database
from ...model import StackNodes


_NODES_REACHING = """
WITH RECURSIVE need(node) AS (
    SELECT value FROM json_each(?2)
    UNION
    SELECT n.prefix FROM stack_nodes AS n JOIN need ON n.source = ?1 AND n.node = need.node WHERE n.prefix >= 0
)
SELECT n.node, n.prefix, n.function, n.file, n.line
FROM stack_nodes AS n JOIN need ON n.source = ?1 AND n.node = need.node ORDER BY n.node
"""


def insert(conn: sqlite3.Connection, nodes: StackNodes) -> None:
    """Add the nodes (rows already there are kept)."""
    source = nodes.source
    conn.executemany(
        "INSERT OR IGNORE INTO stack_nodes VALUES (?, ?, ?, ?, ?, ?)",
        [(source, node, prefix, function, file, line) for node, prefix, function, file, line in nodes.nodes],
    )


def reaching(store: Database, source: str, node_ids: list[int]) -> list[tuple[int, int, str, str, int]]:
    """The nodes of ``source`` that ``node_ids`` reach through their prefixes, by node id."""
    return [tuple(row) for row in store.read(_NODES_REACHING, (source, json.dumps(node_ids)))]
