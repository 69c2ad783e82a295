"""The blackboard's file: every post this node keeps, in SQLite under the node's home.

WAL journal with synchronous=FULL: each change is on disk when its commit returns, so a post a
user was told is posted survives kill -9 and a power cut alike. FULL costs one fsync per commit;
posts come at most ten a minute per node and a sync round writes once, so that is nothing.

Owns the file and its schema; which posts to keep is posts.py's.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from services.gossip.blackboard.posts import Post

FILE = "blackboard.sqlite3"
SCHEMA = """
CREATE TABLE IF NOT EXISTS posts (
    id TEXT PRIMARY KEY,
    author_id TEXT NOT NULL,
    author_name TEXT NOT NULL,
    created_at REAL NOT NULL,
    text TEXT NOT NULL,
    tags TEXT NOT NULL  -- a JSON list
)
"""


class Store:
    def __init__(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.path = home / FILE
        # Autocommit: each apply() is one explicit transaction.
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(SCHEMA)

    def load(self) -> list[Post]:
        rows = self.db.execute("SELECT id, author_id, author_name, created_at, text, tags FROM posts").fetchall()
        return [Post(row[0], row[1], row[2], row[3], row[4], tuple(json.loads(row[5]))) for row in rows]

    def apply(self, added: Iterable[Post], removed: Iterable[str]) -> None:
        """Add and remove posts in one transaction (on disk when this returns)."""
        added, removed = list(added), list(removed)
        if not (added or removed):
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany(
                "INSERT OR IGNORE INTO posts VALUES (?, ?, ?, ?, ?, ?)",
                [(p.post_id, p.author_id, p.author_name, p.created_at, p.text, json.dumps(list(p.tags))) for p in added],
            )
            self.db.executemany("DELETE FROM posts WHERE id = ?", [(post_id,) for post_id in removed])
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()
