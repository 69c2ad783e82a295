"""The scrubber: what a blackboard post must not carry off this node, found and replaced.

One function every path calls (the gossip service on a local post and again on a peer's, the
gateway's HTTP API, the CLI, the MCP server): `scrub(text)` returns the text with every finding
replaced, and the findings by class. Secrets (API keys, tokens, passwords, private keys) are found
by the `detect-secrets` package's plugins, not a list of ours; emails, IP addresses, home paths and
high-entropy strings by the rules below. Home paths are rewritten to `~` and are not `flagged`: the
rewrite removes the user's name and keeps the post useful. Every other class is flagged: the API
refuses it (422), the MCP server refuses it, the CLI warns and posts the scrubbed text, and a
receiving node drops any post in which the scrubber finds anything at all (an honest sender
scrubbed it: scrubbing scrubbed text finds nothing).

Pure: text in, text and findings out. Must not know who posts or where the text goes.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from detect_secrets.plugins.base import RegexBasedDetector
    from detect_secrets.plugins.high_entropy_strings import HighEntropyStringsPlugin
    from detect_secrets.plugins.keyword import KeywordDetector
    from detect_secrets.plugins.private_key import PrivateKeyDetector


class Kind(StrEnum):
    """The classes of what a post must not carry; the order is the precedence where two overlap."""

    PRIVATE_KEY = "private_key"
    SECRET = "secret"
    EMAIL = "email"
    IP_ADDRESS = "ip_address"
    HIGH_ENTROPY = "high_entropy"
    HOME_PATH = "home_path"


# What each class becomes in the scrubbed text: words in brackets, which nothing here finds again.
REPLACEMENT = {
    Kind.PRIVATE_KEY: "[private key]",
    Kind.SECRET: "[secret]",
    Kind.EMAIL: "[email]",
    Kind.IP_ADDRESS: "[ip address]",
    Kind.HIGH_ENTROPY: "[random string]",
    Kind.HOME_PATH: "~",
}
# How a message names each class.
NAMES = {
    Kind.PRIVATE_KEY: "a private key",
    Kind.SECRET: "a secret",
    Kind.EMAIL: "an email address",
    Kind.IP_ADDRESS: "an IP address",
    Kind.HIGH_ENTROPY: "a high-entropy string",
    Kind.HOME_PATH: "a home path",
}
REWRITTEN = frozenset({Kind.HOME_PATH})  # found and rewritten harmlessly: not flagged


@dataclass(frozen=True)
class Detectors:
    """detect-secrets' plugins: made on the first scrub, so that a process that never scrubs (most of
    a node's starts) does not import the package (~0.15 s of CPU: it pulls in `requests`)."""

    secrets: tuple[RegexBasedDetector, ...]  # those that name a provider's key or token by its shape (their regular expressions)
    keyword: KeywordDetector
    denylists: tuple[dict[re.Pattern[str], int], ...]  # the keyword plugin's patterns: quoted values, then config lines
    private_key: PrivateKeyDetector
    base64: HighEntropyStringsPlugin  # its default limit, 4.5 bits a character
    hex: HighEntropyStringsPlugin  # 3.0 bits a character


@cache
def detectors() -> Detectors:
    from detect_secrets.plugins.artifactory import ArtifactoryDetector
    from detect_secrets.plugins.aws import AWSKeyDetector
    from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
    from detect_secrets.plugins.basic_auth import BasicAuthDetector
    from detect_secrets.plugins.cloudant import CloudantDetector
    from detect_secrets.plugins.discord import DiscordBotTokenDetector
    from detect_secrets.plugins.github_token import GitHubTokenDetector
    from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
    from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString, HexHighEntropyString
    from detect_secrets.plugins.ibm_cloud_iam import IbmCloudIamDetector
    from detect_secrets.plugins.ibm_cos_hmac import IbmCosHmacDetector
    from detect_secrets.plugins.jwt import JwtTokenDetector
    from detect_secrets.plugins.keyword import CONFIG_DENYLIST_REGEX_TO_GROUP, QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP, KeywordDetector
    from detect_secrets.plugins.mailchimp import MailchimpDetector
    from detect_secrets.plugins.npm import NpmDetector
    from detect_secrets.plugins.openai import OpenAIDetector
    from detect_secrets.plugins.private_key import PrivateKeyDetector
    from detect_secrets.plugins.pypi_token import PypiTokenDetector
    from detect_secrets.plugins.sendgrid import SendGridDetector
    from detect_secrets.plugins.slack import SlackDetector
    from detect_secrets.plugins.softlayer import SoftlayerDetector
    from detect_secrets.plugins.square_oauth import SquareOAuthDetector
    from detect_secrets.plugins.stripe import StripeDetector
    from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
    from detect_secrets.plugins.twilio import TwilioKeyDetector

    return Detectors(
        secrets=(
            ArtifactoryDetector(),
            AWSKeyDetector(),
            AzureStorageKeyDetector(),
            BasicAuthDetector(),
            CloudantDetector(),
            DiscordBotTokenDetector(),
            GitHubTokenDetector(),
            GitLabTokenDetector(),
            IbmCloudIamDetector(),
            IbmCosHmacDetector(),
            JwtTokenDetector(),
            MailchimpDetector(),
            NpmDetector(),
            OpenAIDetector(),
            PypiTokenDetector(),
            SendGridDetector(),
            SlackDetector(),
            SoftlayerDetector(),
            SquareOAuthDetector(),
            StripeDetector(),
            TelegramBotTokenDetector(),
            TwilioKeyDetector(),
        ),
        keyword=KeywordDetector(),
        denylists=(QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP, CONFIG_DENYLIST_REGEX_TO_GROUP),
        private_key=PrivateKeyDetector(),
        base64=Base64HighEntropyString(),
        hex=HexHighEntropyString(),
    )


# A keyword's value (`password: VALUE`) is a secret when it could be one: no spaces, no code
# (a call, an index, a template), not a placeholder word. detect-secrets' config rule alone takes
# "password=true in config" for one.
NOT_A_VALUE = frozenset({"true", "false", "none", "null", "nil", "yes", "no", "empty", "redacted", "secret", "required", "changeme", "xxx", "***"})
CODE_MARKS = re.compile(r"[\s()\[\]{}$<>]")
MIN_KEYWORD_VALUE = 6  # characters: shorter values are words like "set" or "on"
# Random-looking strings shorter than this are ids (our node ids are 16 hex digits, short commit
# hashes 7-12), not keys: a key worth stealing is longer.
MIN_RANDOM = 20
# Runs of base64 (url-safe too) without "/" and ".": paths and host names are words joined by those.
TOKEN = re.compile(rf"[A-Za-z0-9+=_\-]{{{MIN_RANDOM},}}")
# Identifiers join words with - and _ (Qwen3-Coder-30B-A3B-Instruct-Q4_K_M); a random run has a long piece.
MIN_RANDOM_PIECE = 12
PIECES = re.compile(r"[-_]")
EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]*\d)")
IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%\w+)?(?![\w:])")
# /home/NAME, /Users/NAME (macOS), C:\Users\NAME: the user's name, rewritten to ~.
HOME_PATH = re.compile(r"(?<![\w/.~-])(?:/home|/Users)/[^/\s'\"`:;,)\]]+|(?<![\w])[A-Za-z]:\\Users\\[^\\\s'\"`:;,)\]]+", re.IGNORECASE)
PEM_BLOCK = re.compile(r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY[A-Z0-9 ]*-----.*?(?:-----END[A-Z0-9 ]*-----|\Z)", re.DOTALL)


@dataclass(frozen=True)
class Finding:
    """One thing found: its class, what found it (a detect-secrets plugin's secret type, or ours), where."""

    kind: Kind
    label: str
    start: int
    end: int


@dataclass(frozen=True)
class Scrubbed:
    """The text with every finding replaced, and the findings (positions in the original text)."""

    text: str
    findings: tuple[Finding, ...]


def scrub(text: str) -> Scrubbed:
    """The text with secrets and personal data replaced, and what was found."""
    findings = sorted(set(_find(text)), key=lambda f: (f.start, -f.end, list(Kind).index(f.kind)))
    pieces: list[str] = []
    cursor = 0
    for start, end, kind in _merge(findings):
        pieces += [text[cursor:start], REPLACEMENT[kind]]
        cursor = end
    pieces.append(text[cursor:])
    return Scrubbed("".join(pieces), tuple(findings))


def flagged(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """The findings that stop a post as written (all but home paths, which the rewrite makes harmless)."""
    return tuple(f for f in findings if f.kind not in REWRITTEN)


def counts(findings: Iterable[Finding]) -> dict[str, int]:
    """How many of each class, for an API answer or a metric: {"email": 2, ...}."""
    return {str(kind): n for kind, n in sorted(Counter(f.kind for f in findings).items(), key=lambda item: list(Kind).index(item[0]))}


def describe(findings: Iterable[Finding]) -> str:
    """The findings in words for a message: 'an email address (2), a secret (AWS Access Key)'."""
    by_kind: dict[Kind, list[Finding]] = {}
    for finding in findings:
        by_kind.setdefault(finding.kind, []).append(finding)
    parts: list[str] = []
    for kind in Kind:
        found = by_kind.get(kind, [])
        if not found:
            continue
        labels = sorted({f.label for f in found} - {NAMES[kind]})
        detail = ", ".join(labels) if kind == Kind.SECRET and labels else str(len(found)) if len(found) > 1 else ""
        parts.append(f"{NAMES[kind]} ({detail})" if detail else NAMES[kind])
    return ", ".join(parts)


def _find(text: str) -> Iterator[Finding]:
    yield from _private_keys(text)
    yield from _secrets(text)
    yield from _matches(EMAIL, text, Kind.EMAIL)
    yield from _ip_addresses(text)
    yield from _random_strings(text)
    yield from _matches(HOME_PATH, text, Kind.HOME_PATH)


def _private_keys(text: str) -> Iterator[Finding]:
    plugin = detectors().private_key
    if any(True for _ in plugin.analyze_string(text)):
        yield from _matches(PEM_BLOCK, text, Kind.PRIVATE_KEY, str(plugin.secret_type))
        # A header without the PEM armour (PuTTY's): the whole text is the key file.
        if not PEM_BLOCK.search(text):
            yield Finding(Kind.PRIVATE_KEY, str(plugin.secret_type), 0, len(text))


def _secrets(text: str) -> Iterator[Finding]:
    plugins = detectors()
    for detector in plugins.secrets:
        for value in detector.analyze_string(text):
            yield from _occurrences(text, value, Kind.SECRET, str(detector.secret_type))
    for denylist in plugins.denylists:
        # detect-secrets types the denylist as Dict[Pattern, int], a bare Pattern strict mode cannot see through.
        for value in plugins.keyword.analyze_string(text, denylist):  # pyright: ignore[reportUnknownMemberType]
            value = value.strip("'\"")
            if len(value) >= MIN_KEYWORD_VALUE and value.lower() not in NOT_A_VALUE and not CODE_MARKS.search(value):
                yield from _occurrences(text, value, Kind.SECRET, "password or key")


def _ip_addresses(text: str) -> Iterator[Finding]:
    for pattern in (IPV4, IPV6):
        for match in pattern.finditer(text):
            candidate = match.group(0).split("%")[0]
            if pattern is IPV6 and not any(c.isdigit() for c in candidate):
                continue  # `a::b` in C++ or Rust is a path, not an address
            try:
                address = ipaddress.ip_address(candidate)
            except ValueError:
                continue
            # Every machine's loopback and the wildcard tell nothing about anyone.
            if not (address.is_loopback or address.is_unspecified):
                yield Finding(Kind.IP_ADDRESS, "IP address", match.start(), match.end())


def _random_strings(text: str) -> Iterator[Finding]:
    for match in TOKEN.finditer(text):
        token = match.group(0).strip("=-_")
        is_hex = all(c in "0123456789abcdefABCDEF" for c in token)
        plugin = detectors().hex if is_hex else detectors().base64
        # A key mixes letters with digits; a word, however long, rarely does.
        random_looking = max(len(piece) for piece in PIECES.split(token)) >= MIN_RANDOM_PIECE and any(c.isdigit() for c in token)
        if len(token) >= MIN_RANDOM and random_looking and plugin.calculate_shannon_entropy(token) > plugin.entropy_limit:
            yield Finding(Kind.HIGH_ENTROPY, str(plugin.secret_type), match.start(), match.end())


def _matches(pattern: re.Pattern[str], text: str, kind: Kind, label: str = "") -> Iterator[Finding]:
    for match in pattern.finditer(text):
        yield Finding(kind, label or NAMES[kind], match.start(), match.end())


def _occurrences(text: str, value: str, kind: Kind, label: str) -> Iterator[Finding]:
    if not value:
        return
    start = text.find(value)
    while start >= 0:
        yield Finding(kind, label, start, start + len(value))
        start = text.find(value, start + len(value))


def _merge(findings: list[Finding]) -> Iterator[tuple[int, int, Kind]]:
    """Overlapping or touching findings as one span, replaced as their most serious class."""
    span: tuple[int, int, Kind] | None = None
    for f in findings:
        if span is not None and f.start <= span[1]:
            kind = min(span[2], f.kind, key=list(Kind).index)
            span = (span[0], max(span[1], f.end), kind)
            continue
        if span is not None:
            yield span
        span = (f.start, f.end, f.kind)
    if span is not None:
        yield span
