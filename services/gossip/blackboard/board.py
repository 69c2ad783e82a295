"""This node's blackboard: the posts it holds (in memory, written through to the Store), a local
post checked as every receiver will check it, peers' posts checked again and dropped when they
fail, and the reads (search, feed, the digest anti-entropy compares).

Owns the in-memory copy and the drop counts; the rules are posts.py's, the file store.py's, the
network sync.py's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from services.common import scrubber
from services.common.logs import event
from services.gossip.blackboard import posts as rules
from services.gossip.blackboard.posts import LIMITS, Floor, Limits, Post, Refusal
from services.gossip.blackboard.store import Store
from services.gossip.metrics import GossipMetrics

log = logging.getLogger(__name__)


class BoardRefused(Exception):
    """A local post refused: why (a Refusal), in a message for the person posting."""

    def __init__(self, reason: Refusal, message: str, findings: tuple[scrubber.Finding, ...] = ()) -> None:
        super().__init__(message)
        self.reason = reason
        self.findings = findings


class BoardOff(Exception):
    """The blackboard is off on this node (a public mesh, without --blackboard)."""


@dataclass(frozen=True)
class Author:
    node_id: str
    name: str


class Board:
    def __init__(self, store: Store, author: Author, on: Callable[[], bool], metrics: GossipMetrics | None = None, limits: Limits = LIMITS) -> None:
        self.store = store
        self.author = author
        self.on = on  # whether the board is on now (a mesh may become public while we run)
        self.metrics = metrics
        self.limits = limits
        self.posts: dict[str, Post] = {p.post_id: p for p in store.load()}
        self._count()

    def post(self, text: str, tags: Iterable[str], now: float) -> Post:
        """Post on this node: scrubbed (home paths rewritten; anything flagged refused), within the
        size and this node's rate; on disk when this returns."""
        self._check_on()
        tags = tuple(tags)
        if problem := rules.tags_refusal(tags, self.limits):
            raise BoardRefused(Refusal.MALFORMED, problem)
        scrubbed = scrubber.scrub(text)
        findings = scrubber.flagged(scrubbed.findings) + scrubber.scrub(" ".join(tags)).findings
        if findings:
            raise BoardRefused(Refusal.FLAGGED, f"the post holds {scrubber.describe(findings)}: remove it and post again", findings)
        if not scrubbed.text.strip():
            raise BoardRefused(Refusal.MALFORMED, "the post is empty")
        if len(scrubbed.text.encode()) > self.limits.max_bytes:
            raise BoardRefused(Refusal.TOO_LARGE, f"a post holds at most {self.limits.max_bytes} bytes (this one {len(scrubbed.text.encode())})")
        post = rules.new_post(self.author.node_id, self.author.name, now, scrubbed.text, tags)
        if rules.over_rate(post, self.posts.values(), self.limits):
            raise BoardRefused(Refusal.RATE, f"a node posts at most {self.limits.rate} times in {self.limits.rate_window:.0f} s: wait and post again")
        self._keep([post], now)
        return post

    def absorb(self, received: Iterable[Post], now: float) -> int:
        """Keep the peer's posts that pass every check; count the others by reason. How many were new."""
        if not self.on():
            return 0
        added: list[Post] = []
        for post in received:
            if post.post_id in self.posts or any(p.post_id == post.post_id for p in added):
                continue
            reason = rules.refusal(post, now, self.limits)
            if reason is None and rules.over_rate(post, [*self.posts.values(), *added], self.limits):
                reason = Refusal.RATE
            if reason is None:
                added.append(post)
            else:
                self._drop(post, reason)
        return len(self._keep(added, now)) if added else 0

    def expire(self, now: float) -> None:
        self._keep([], now)

    def search(self, terms: Iterable[str], limit: int) -> list[Post]:
        self._check_on()
        return rules.search(self.posts.values(), terms, limit)

    def feed(self, since: float, author: str, limit: int) -> list[Post]:
        self._check_on()
        return rules.feed(self.posts.values(), since, author, limit)

    def floor(self) -> Floor:
        return rules.floor(self.posts, self.limits)

    def lacking(self, ids: Iterable[str]) -> list[str]:
        """Of a peer's ids, those we do not hold."""
        return [post_id for post_id in ids if post_id not in self.posts]

    def missing_from(self, ids: Iterable[str], floor_key: Floor, budget: int) -> list[Post]:
        """Our posts a peer holding `ids` lacks and wants, newest first, within `budget` bytes."""
        theirs = set(ids)
        return self._within([p for p in self.posts.values() if p.post_id not in theirs], floor_key, budget)

    def named(self, ids: Iterable[str], floor_key: Floor, budget: int) -> list[Post]:
        """Our posts of these ids that a peer wants, newest first, within `budget` bytes."""
        return self._within([self.posts[i] for i in set(ids) if i in self.posts], floor_key, budget)

    def _within(self, candidates: list[Post], floor_key: Floor, budget: int) -> list[Post]:
        chosen: list[Post] = []
        for post in sorted(candidates, key=lambda p: p.key, reverse=True):
            if not rules.wanted(post, floor_key):
                continue
            budget -= len(post.text.encode()) + 256  # the other fields, generously
            if budget < 0:
                break
            chosen.append(post)
        return chosen

    def _keep(self, added: list[Post], now: float) -> list[Post]:
        """Add posts, trim to what a board keeps, write the difference; the added posts kept."""
        merged = rules.retain({**self.posts, **{p.post_id: p for p in added}}, now, self.limits)
        kept = [p for p in added if p.post_id in merged]
        removed = [post_id for post_id in self.posts if post_id not in merged]
        self.store.apply(kept, removed)
        self.posts = merged
        self._count()
        return kept

    def _drop(self, post: Post, reason: Refusal) -> None:
        event(log, "blackboard post dropped", logging.WARNING, post=post.post_id[:12], author=post.author_id, reason=reason)
        if self.metrics is not None:
            self.metrics.board_dropped.labels(reason).inc()

    def _count(self) -> None:
        if self.metrics is not None:
            self.metrics.board_posts.set(len(self.posts))

    def _check_on(self) -> None:
        if not self.on():
            raise BoardOff("the blackboard is off: this mesh is public (--publish); start the node with --blackboard to use it")
