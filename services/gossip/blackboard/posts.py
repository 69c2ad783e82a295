"""The blackboard's rules: what a post is, which posts a node keeps, which it refuses, how search
ranks and the feed reads.

A board is a set of posts keyed by id, union-merged: the newest MAX_POSTS not older than LIFETIME.
A post's id is a hash of its content, so a post cannot change under its id and every node agrees
on it. Every node checks every post it receives as the node it was posted on did (size, dates,
scrubbed text, the author's rate), so a buggy or hostile peer cannot fill the mesh's boards.

Pure: posts and `now` in, decisions out. Must not touch SQLite, gRPC or the clock.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from services.common.scrubber import scrub


@dataclass(frozen=True)
class Limits:
    """What every node enforces alike (a mesh-wide agreement, so constants, not settings)."""

    max_posts: int = 500  # posts a board keeps: the newest
    lifetime: float = 48 * 3600.0  # seconds a post lives after it was posted
    max_bytes: int = 4096  # bytes of a post's text (UTF-8)
    rate: int = 10  # posts an author may make ...
    rate_window: float = 60.0  # ... within this many seconds
    max_tags: int = 8
    max_tag_chars: int = 32
    max_name_chars: int = 64  # an author's node name
    max_future: float = 300.0  # seconds a post may be dated ahead of our clock (clock skew between machines)


LIMITS = Limits()
SEARCH_LIMIT = 20  # results of a search when the caller names no limit
FEED_LIMIT = 50  # posts of a feed when the caller names no limit


class Refusal(StrEnum):
    """Why a post is refused (where it is made) or dropped (on receipt); the metric's label."""

    MALFORMED = "malformed"  # an id that is not its content's, no text, bad tags or author, a date that is no number
    TOO_LARGE = "too_large"
    EXPIRED = "expired"
    FUTURE = "future"  # dated too far ahead of our clock
    FLAGGED = "flagged"  # the scrubber finds something in it
    RATE = "rate"  # its author posted too many within the window


@dataclass(frozen=True)
class Post:
    post_id: str
    author_id: str
    author_name: str
    created_at: float  # unix time
    text: str
    tags: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[float, str]:
        """Its place in time: newest last; the id breaks ties alike everywhere."""
        return (self.created_at, self.post_id)


Floor = tuple[float, str] | None  # a full board's oldest key: posts at or below it are not wanted


def post_id(author_id: str, created_at: float, text: str, tags: Iterable[str]) -> str:
    """The id every node derives from the content: 32 hex digits of its SHA-256."""
    content = "\0".join([author_id, f"{created_at:.6f}", text, *tags])
    return hashlib.sha256(content.encode()).hexdigest()[:32]


def new_post(author_id: str, author_name: str, created_at: float, text: str, tags: Iterable[str] = ()) -> Post:
    tags = tuple(tags)
    return Post(post_id(author_id, created_at, text, tags), author_id, author_name, created_at, text, tags)


def refusal(post: Post, now: float, limits: Limits = LIMITS) -> Refusal | None:
    """Why this post must not be kept, without looking at the others (rate_refusal does), or None."""
    if (
        not post.text.strip()
        or not post.author_id
        or not _printable(post.author_name, limits.max_name_chars)
        or _tags_refusal(post.tags, limits)
        or post.post_id != post_id(post.author_id, post.created_at, post.text, post.tags)
        or not math.isfinite(post.created_at)  # NaN is neither expired nor in the future, and no board keeps it
    ):
        return Refusal.MALFORMED
    if len(post.text.encode()) > limits.max_bytes:
        return Refusal.TOO_LARGE
    if post.created_at <= now - limits.lifetime:
        return Refusal.EXPIRED
    if post.created_at > now + limits.max_future:
        return Refusal.FUTURE
    # Anything at all, home paths included: the node it was posted on rewrote those.
    if scrub(post.text).findings or scrub(" ".join(post.tags)).findings:
        return Refusal.FLAGGED
    return None


def tags_refusal(tags: Iterable[str], limits: Limits = LIMITS) -> str:
    """What is wrong with these tags, for the person posting; '' when nothing."""
    return _tags_refusal(tuple(tags), limits)


def _tags_refusal(tags: tuple[str, ...], limits: Limits) -> str:
    if len(tags) > limits.max_tags:
        return f"at most {limits.max_tags} tags"
    for tag in tags:
        if not tag or len(tag) > limits.max_tag_chars or not tag.isprintable() or any(c.isspace() for c in tag):
            return f"a tag is one word of at most {limits.max_tag_chars} printable characters ({tag!r} is not)"
    return ""


def over_rate(post: Post, held: Iterable[Post], limits: Limits = LIMITS) -> bool:
    """Whether the author already has `rate` posts in the window ending at this post's time.

    An honest node refuses its user's post past the rate, so no window of its posts holds more:
    receivers that check the same window drop nothing of its, in whatever order posts arrive."""
    start = post.created_at - limits.rate_window
    same = sum(1 for p in held if p.author_id == post.author_id and p.post_id != post.post_id and start < p.created_at <= post.created_at)
    return same >= limits.rate


def retain(posts: Mapping[str, Post], now: float, limits: Limits = LIMITS) -> dict[str, Post]:
    """The posts a board keeps: unexpired, the newest max_posts."""
    alive = sorted((p for p in posts.values() if p.created_at > now - limits.lifetime), key=lambda p: p.key)
    return {p.post_id: p for p in alive[-limits.max_posts :]}


def floor(posts: Mapping[str, Post], limits: Limits = LIMITS) -> Floor:
    """A full board's oldest key: a post no newer would be dropped at once, so it is not wanted."""
    if len(posts) < limits.max_posts:
        return None
    return min(p.key for p in posts.values())


def wanted(post: Post, floor_key: Floor) -> bool:
    return floor_key is None or post.key > floor_key


def search(posts: Iterable[Post], terms: Iterable[str], limit: int = SEARCH_LIMIT) -> list[Post]:
    """Posts holding any of the terms (case-insensitive, in the text, tags and author), ranked by
    how many times they occur, then newest first."""
    words = [t.lower() for t in terms if t.strip()]
    scored: list[tuple[int, Post]] = []
    for post in posts:
        haystack = " ".join([post.text, *post.tags, post.author_name, post.author_id]).lower()
        hits = sum(haystack.count(word) for word in words)
        if hits:
            scored.append((hits, post))
    scored.sort(key=lambda item: (-item[0], -item[1].created_at, item[1].post_id))
    return [post for _, post in scored[: limit or SEARCH_LIMIT]]


def feed(posts: Iterable[Post], since: float = 0.0, author: str = "", limit: int = FEED_LIMIT) -> list[Post]:
    """Posts after `since` (by `author`, its node id or name, when given), newest first."""
    chosen = [p for p in posts if p.created_at > since and (not author or author in (p.author_id, p.author_name))]
    chosen.sort(key=lambda p: p.key, reverse=True)
    return chosen[: limit or FEED_LIMIT]


def board_on(publish: bool, forced: bool) -> bool:
    """On in a private mesh; in a public one (listed with --publish) only on nodes given --blackboard."""
    return forced or not publish


def _printable(text: str, most: int) -> bool:
    return len(text) <= most and text.isprintable()
