"""Build the shop's SQLite database: authors, posts, products and orders.

``posts.title`` and ``posts.title_indexed`` hold the same text.  Only
``title_indexed`` has an index (declared ``COLLATE NOCASE`` so that ``LIKE
'prefix%'`` can use it), which lets the app run the *same* search with and
without an index.
"""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path

SCHEMA_VERSION = 3
DEFAULT_POST_ROWS = 200_000
AUTHOR_COUNT = 5_000
PRODUCT_COUNT = 2_000
FIRST_POST_TIMESTAMP = 1_600_000_000

ADJECTIVES = (
    "amber", "brass", "cedar", "dusty", "early", "faded", "gentle", "hollow",
    "iron", "jagged", "keen", "lucid", "misty", "narrow", "olive", "pale",
    "quiet", "rusty", "silver", "tidal", "urban", "velvet", "wild", "young",
    "bright", "crisp", "distant", "electric", "frozen", "golden", "humble", "ivory",
)
NOUNS = (
    "anchor", "beacon", "canyon", "delta", "engine", "forest", "garden", "harbor",
    "island", "journal", "kettle", "lantern", "meadow", "needle", "orchard", "pillar",
    "quarry", "river", "signal", "tower", "valley", "window", "yard", "zephyr",
    "bridge", "compass", "ember", "falcon", "glacier", "horizon", "lighthouse", "mirror",
)
TAGS = (
    "python", "databases", "latency", "caching", "queues", "networking", "testing",
    "deploys", "logging", "profiling", "storage", "security", "frontend", "apis",
    "observability", "scaling",
)
BODY_WORDS = ADJECTIVES + NOUNS + TAGS + (
    "the", "a", "of", "and", "with", "under", "over", "into", "slowly", "quickly",
    "request", "response", "thread", "query", "index", "table", "server", "client",
)
SENTENCE_POOL_SIZE = 1_024
SENTENCES_PER_BODY = 3

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE authors (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    bio TEXT NOT NULL
);
CREATE TABLE posts (
    id INTEGER PRIMARY KEY,
    author_id INTEGER NOT NULL REFERENCES authors(id),
    title TEXT NOT NULL,
    title_indexed TEXT NOT NULL COLLATE NOCASE,
    slug TEXT NOT NULL,
    tag TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    sku TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    price_cents INTEGER NOT NULL
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    created_at REAL NOT NULL,
    item_count INTEGER NOT NULL,
    total_cents INTEGER NOT NULL
);
"""

INDEXES = """
CREATE INDEX posts_title_indexed ON posts(title_indexed);
CREATE INDEX posts_created_at ON posts(created_at);
CREATE INDEX posts_author_id ON posts(author_id);
CREATE INDEX posts_tag_created_at ON posts(tag, created_at);
"""


def build_database(path: str | os.PathLike[str], *, rows: int = DEFAULT_POST_ROWS, seed: int = 0) -> None:
    """Create the shop database at ``path`` with ``rows`` posts.

    Deterministic for a given ``(rows, seed)``.  If ``path`` already holds a
    database with the current schema version and the same ``rows``/``seed``
    it is reused untouched; otherwise it is rebuilt in a temporary file and
    atomically moved into place.
    """
    if rows < 1:
        raise ValueError("rows must be >= 1")
    target = Path(path)
    if _is_reusable(target, rows=rows, seed=seed):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f"{target.name}.building-{os.getpid()}")
    _remove_database_files(staging)
    try:
        _write_database(staging, rows=rows, seed=seed)
        _remove_database_files(target, keep_main=True)
        os.replace(staging, target)
    finally:
        _remove_database_files(staging)


def read_build_info(path: str | os.PathLike[str]) -> dict[str, str]:
    """Return the ``meta`` key/value pairs recorded when ``path`` was built."""
    connection = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    try:
        return dict(connection.execute("SELECT key, value FROM meta"))
    finally:
        connection.close()


def _is_reusable(target: Path, *, rows: int, seed: int) -> bool:
    if not target.is_file():
        return False
    try:
        connection = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
        try:
            (version,) = connection.execute("PRAGMA user_version").fetchone()
            meta = dict(connection.execute("SELECT key, value FROM meta"))
        finally:
            connection.close()
    except sqlite3.DatabaseError:
        return False
    return (
        version == SCHEMA_VERSION
        and meta.get("schema_version") == str(SCHEMA_VERSION)
        and meta.get("rows") == str(rows)
        and meta.get("seed") == str(seed)
    )


def _remove_database_files(path: Path, *, keep_main: bool = False) -> None:
    suffixes = ("-wal", "-shm", "-journal") if keep_main else ("", "-wal", "-shm", "-journal")
    for suffix in suffixes:
        try:
            os.remove(f"{path}{suffix}")
        except FileNotFoundError:
            pass


def _write_database(path: Path, *, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("BEGIN")
        for statement in SCHEMA.split(";"):
            if statement.strip():
                connection.execute(statement)
        connection.executemany("INSERT INTO authors VALUES (?, ?, ?, ?)", _author_rows(rng))
        connection.executemany("INSERT INTO posts VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _post_rows(rng, rows))
        connection.executemany("INSERT INTO products VALUES (?, ?, ?, ?)", _product_rows(rng))
        for statement in INDEXES.split(";"):
            if statement.strip():
                connection.execute(statement)
        connection.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [("schema_version", str(SCHEMA_VERSION)), ("rows", str(rows)), ("seed", str(seed))],
        )
        connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        connection.execute("COMMIT")
        connection.execute("ANALYZE")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


def _author_rows(rng: random.Random):
    for author_id in range(1, AUTHOR_COUNT + 1):
        first = rng.choice(ADJECTIVES).capitalize()
        last = rng.choice(NOUNS).capitalize()
        yield (
            author_id,
            f"{first} {last}",
            f"{first.lower()}.{last.lower()}.{author_id}@example.test",
            f"Writes about {rng.choice(TAGS)} and {rng.choice(TAGS)}.",
        )


def _post_rows(rng: random.Random, rows: int):
    sentences = [
        " ".join(rng.choices(BODY_WORDS, k=rng.randint(8, 14))).capitalize() + "."
        for _ in range(SENTENCE_POOL_SIZE)
    ]
    for post_id in range(1, rows + 1):
        title = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {post_id}"
        yield (
            post_id,
            rng.randint(1, AUTHOR_COUNT),
            title,
            title,
            title.replace(" ", "-"),
            rng.choice(TAGS),
            " ".join(rng.choices(sentences, k=SENTENCES_PER_BODY)),
            FIRST_POST_TIMESTAMP + post_id * 60 + rng.randint(0, 59),
        )


def _product_rows(rng: random.Random):
    for product_id in range(1, PRODUCT_COUNT + 1):
        yield (
            product_id,
            f"SKU-{product_id:05d}",
            f"{rng.choice(ADJECTIVES).capitalize()} {rng.choice(NOUNS)}",
            rng.randint(199, 99_999),
        )
