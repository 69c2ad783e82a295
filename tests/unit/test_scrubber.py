"""The scrubber: each class of secret and personal data is found and replaced; ordinary text and
code pass untouched; scrubbed text scrubs to itself (what a receiving node checks)."""

from __future__ import annotations

import pytest

from services.common.scrubber import Kind, counts, describe, flagged, scrub

PEM = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----"
JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"

# (text, the class found, what the scrubbed text must read)
CAUGHT = [
    ("key AKIAIOSFODNN7EXAMPLE in the env", Kind.SECRET, "key [secret] in the env"),
    ("use ghp_1234567890abcdefghijklmnopqrstuvwxyzAB", Kind.SECRET, "use [secret]"),
    ("OPENAI sk-abcdefghijklmnopqrstT3BlbkFJabcdefghijklmnopqrst", Kind.SECRET, "OPENAI [secret]"),
    ("slack xoxb-123456789012-1234567890123-abcdefghijklmnopqrstuvwx", Kind.SECRET, "slack [secret]"),
    (
        "pypi pypi-AgEIcHlwaS5vcmcCJGQ4ZjM2YjQ5LTg4ZGItNDQ5Mi1hMzVlLTk3NTNjYjQwNDk5MAACKlszLCJlN2E0ZmQ5ZC1hZGQ2LTQ0ODctOWYzNy1mNjg0NzEwZjc3YzIiXQAABiDg",
        Kind.SECRET,
        "pypi [secret]",
    ),
    ("the jwt " + JWT, Kind.SECRET, "the jwt [secret]"),
    ("password: hunter22", Kind.SECRET, "password: [secret]"),
    ("db postgres://admin:s3cretpw@db.internal/app", Kind.SECRET, "db postgres://admin:[secret]/app"),
    (f"my key\n{PEM}\nthanks", Kind.PRIVATE_KEY, "my key\n[private key]\nthanks"),
    ("write to alice.smith@example.com", Kind.EMAIL, "write to [email]"),
    ("peer 192.168.1.20:9337 is slow", Kind.IP_ADDRESS, "peer [ip address]:9337 is slow"),
    ("v6 at fe80::1ff:fe23:4567:890a now", Kind.IP_ADDRESS, "v6 at [ip address] now"),
    ("docs 2001:db8::1", Kind.IP_ADDRESS, "docs [ip address]"),
    ("built in /home/alice/projects/mesh", Kind.HOME_PATH, "built in ~/projects/mesh"),
    ("on a mac /Users/bob/x.txt", Kind.HOME_PATH, "on a mac ~/x.txt"),
    ("windows C:\\Users\\carol\\y", Kind.HOME_PATH, "windows ~\\y"),
    ("random 9fK2xQ7vLp3ZtR8wYb1NcM4s6HdJ0gEa", Kind.HIGH_ENTROPY, "random [random string]"),
    ("sha 803e78c5af5c6a12b4e0c9d1f7a2b3c4d5e6f708", Kind.HIGH_ENTROPY, "sha [random string]"),
]

UNTOUCHED = [
    "QUESTION: who serves Qwen3-8B? STATUS: split over 2 nodes, 14 tok/s",
    "def add(a, b):\n    return a + b  # std::vector<int> a::b dead::beef",
    "see services/gossip/blackboard/store.py and https://huggingface.co/unsloth/Qwen3-8B-GGUF/resolve/main/Qwen3-8B-Q4_K_M.gguf",
    "Qwen3-Coder-30B-A3B-Instruct-Q4_K_M and SmolLM2-135M-Instruct-Q8_0 and test_three_nodes_form_a_mesh_within_five_seconds",
    "node 803e78c5af5c6a12, commit 3b23129, version 1.2.3",
    "the password reset is done; the secret to speed is batching; token: use the invite token",
    "password=true in config; api_key = os.environ['KEY']; token = get_token()",
    "loopback 127.0.0.1:9337, ::1 and 0.0.0.0 tell nothing",
    "~/projects holds [email] [secret] [ip address] [private key] [random string]",
    "2024-11-05T12:30:45Z   TIP: pass --profile test",
    "",
]


@pytest.mark.parametrize(("text", "kind", "scrubbed"), CAUGHT)
def test_each_class_is_found_and_replaced(text: str, kind: Kind, scrubbed: str) -> None:
    result = scrub(text)
    assert result.text == scrubbed
    assert kind in {f.kind for f in result.findings}
    assert bool(flagged(result.findings)) == (kind != Kind.HOME_PATH)
    # A receiving node scrubs again: an honest sender's text finds nothing.
    assert scrub(result.text).findings == ()


@pytest.mark.parametrize("text", UNTOUCHED)
def test_ordinary_text_and_code_pass_untouched(text: str) -> None:
    result = scrub(text)
    assert (result.text, result.findings) == (text, ())


def test_findings_are_named_and_counted() -> None:
    result = scrub("mail a@example.com and b@example.org from 10.1.2.3 with AKIAIOSFODNN7EXAMPLE in /home/eve/x")
    assert counts(result.findings) == {"secret": 1, "email": 2, "ip_address": 1, "home_path": 1}
    assert describe(result.findings) == "a secret (AWS Access Key), an email address (2), an IP address, a home path"
    assert describe(flagged(result.findings)) == "a secret (AWS Access Key), an email address (2), an IP address"
    assert result.text == "mail [email] and [email] from [ip address] with [secret] in ~/x"
