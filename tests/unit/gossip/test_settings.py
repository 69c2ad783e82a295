"""A join token in gossip's settings (honcho, compose): checked at load, its mesh stored, its addresses dialled."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.common import mesh_identity
from services.common.invite import InviteToken, new_secret
from services.gossip.settings import GossipSettings

TOKEN = InviteToken("abcdef0123456789", new_secret(), ("10.0.0.2:7447", "[fd00::2]:7447"), "ab" * 32)
ROOT = Path(__file__).resolve().parents[3]


def test_a_join_token_becomes_the_bootstrap_after_the_seeds() -> None:
    settings = GossipSettings(join=f"  {TOKEN.encode()}\n", address="10.0.0.3:7447", seeds=["10.0.0.9:7447", "10.0.0.2:7447"])
    assert settings.token() == TOKEN
    assert settings.bootstrap() == ["10.0.0.9:7447", "10.0.0.2:7447", "[fd00::2]:7447"]


def test_no_join_token_joins_through_the_seeds_only() -> None:
    settings = GossipSettings(seeds=["10.0.0.9:7447"], join="")
    assert settings.token() is None and settings.bootstrap() == ["10.0.0.9:7447"]


@pytest.mark.parametrize(
    ("join", "address", "fragment"),
    [
        ("hello", "10.0.0.3:7447", "not a mesh-llm invite token"),
        (TOKEN.encode()[:-4], "10.0.0.3:7447", "truncated"),
        (TOKEN.encode(), "", "needs MESH_GOSSIP_ADDRESS"),
    ],
)
def test_a_join_that_cannot_work_is_refused_at_load(join: str, address: str, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        GossipSettings(join=join, address=address)


def test_a_bad_token_in_the_environment_stops_gossip_with_one_line(tmp_path: Path) -> None:
    """What honcho shows for a bad MESH_GOSSIP_JOIN in .env: one line, exit 2, no traceback, no secret."""
    env = {"MESH_NODE_HOME": str(tmp_path), "MESH_GOSSIP_ADDRESS": "127.0.0.1:7447", "MESH_GOSSIP_JOIN": TOKEN.encode()[:-4], "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "services.gossip"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "mesh-llm gossip: bad setting MESH_GOSSIP_JOIN: Value error, invite token is truncated or altered (checksum mismatch): copy it again"
    ]
    assert TOKEN.secret.hex() not in done.stderr


def test_joining_stores_the_tokens_mesh_and_keeps_a_newer_secret_of_it(tmp_path: Path) -> None:
    own = mesh_identity.mesh_of(tmp_path, None)
    assert mesh_identity.mesh_of(tmp_path, None) == own
    joined = mesh_identity.mesh_of(tmp_path, TOKEN)
    assert (joined.mesh_id, joined.secret) == (TOKEN.mesh_id, TOKEN.secret) and mesh_identity.load(tmp_path) == joined
    # A restart with the same token keeps what the mesh has taught since (a later secret version).
    mesh_identity.save(tmp_path, mesh_identity.MeshIdentity(TOKEN.mesh_id, TOKEN.secret, 3))
    assert mesh_identity.mesh_of(tmp_path, TOKEN).secret_version == 3


def test_share_stores_the_first_homes_mesh_in_the_others(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    mesh_identity.save(second, mesh_identity.MeshIdentity("0123456789abcdef", new_secret()))
    shared = mesh_identity.share(first, [second])
    assert mesh_identity.load(first) == mesh_identity.load(second) == shared
    # Run again (compose up after a restart): the first's mesh stays, whatever it has become.
    assert mesh_identity.share(first, [second]) == shared
