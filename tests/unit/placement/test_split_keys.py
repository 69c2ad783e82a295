"""A split's TLS key: the same while the split stands, another when its workers or the mesh's
revocations change or the host's secret is another, none unless every node speaks TLS."""

from __future__ import annotations

from services.common.records import Assignment, Mode, NodeRecord
from services.placement.split_keys import keyed, split_key

SECRET = bytes(range(32))


def test_a_key_is_32_bytes_in_hex_and_stable() -> None:
    key = split_key(SECRET, "m", ("b", "c"), {"r1"})
    assert len(key) == 64 and int(key, 16) >= 0
    assert split_key(SECRET, "m", ("b", "c"), ["r1"]) == key


def test_a_key_changes_with_the_workers_the_revocations_the_model_and_the_secret() -> None:
    key = split_key(SECRET, "m", ("b", "c"), ())
    others = {
        split_key(SECRET, "m", ("c", "b"), ()),
        split_key(SECRET, "m", ("b",), ()),
        split_key(SECRET, "m", ("b", "c"), ("a-revoked-credential",)),
        split_key(SECRET, "n", ("b", "c"), ()),
        split_key(bytes(32), "m", ("b", "c"), ()),
    }
    assert key not in others and len(others) == 5


def test_no_secret_no_key() -> None:
    assert split_key(b"", "m", ("b",), ()) == ""


def host_plan() -> Assignment:
    return Assignment("m", Mode.SPLIT_HOST, "split", "a", ("b", "c"), (10, 10, 10))


def test_only_the_splits_this_node_hosts_get_a_key_and_only_when_every_node_speaks_tls() -> None:
    own = NodeRecord("a", "a", rpc_tls=True)
    records = {"b": NodeRecord("b", "b", rpc_tls=True), "c": NodeRecord("c", "c", rpc_tls=True)}
    worker_part = Assignment("n", Mode.SPLIT_WORKER, "works for d", "d", ("a",), (5, 5), rpc_key="from-d")
    solo = Assignment("s", Mode.SOLO, "fits")
    hosted, working, alone = keyed((host_plan(), worker_part, solo), own, records, SECRET, ())
    assert hosted.rpc_key == split_key(SECRET, "m", ("b", "c"), ())
    assert (working, alone) == (worker_part, solo)  # a worker's key is its host's; a solo model has none
    assert keyed((host_plan(),), own, {**records, "c": NodeRecord("c", "c")}, SECRET, ())[0].rpc_key == ""  # c cannot
    assert keyed((host_plan(),), NodeRecord("a", "a"), records, SECRET, ())[0].rpc_key == ""  # the host cannot
    assert keyed((host_plan(),), own, {"b": records["b"]}, SECRET, ())[0].rpc_key == ""  # c's record not known


def test_the_console_never_shows_a_key() -> None:
    from services.gateway.console.status import assignment_status

    shown = assignment_status(
        keyed(
            (host_plan(),), NodeRecord("a", "a", rpc_tls=True), {"b": NodeRecord("b", "b", rpc_tls=True), "c": NodeRecord("c", "c", rpc_tls=True)}, SECRET, ()
        )[0]
    )
    assert shown["rpc_tls"] is True and "rpc_key" not in shown and not any(isinstance(v, str) and len(v) == 64 for v in shown.values())
