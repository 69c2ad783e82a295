"""Tunnel credit (tunnel/credit.py): the requester grants what its consumer took, in steps; the
server never runs more than a window ahead, and a full window always reopens once the consumer
has taken what was sent."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.gateway.tunnel.credit import CHUNK_BYTES, CREDIT_STEP, WINDOW_BYTES, Credits, Window, decode_credit, encode_credit


def test_grants_come_in_steps_not_per_chunk() -> None:
    credits = Credits(step=100)
    assert [credits.taken(size) for size in (40, 40, 40, 10, 100)] == [0, 0, 120, 0, 110]


def test_the_window_is_full_at_its_size() -> None:
    window = Window(size=100, sent=99)
    assert not window.full()
    window.sent += 1
    assert window.full()
    window.granted += 1
    assert not window.full()


def test_a_credit_frame_round_trips() -> None:
    assert decode_credit(encode_credit(CREDIT_STEP)) == CREDIT_STEP


@given(st.lists(st.integers(1, CHUNK_BYTES), min_size=1, max_size=200))
def test_the_server_stays_within_a_window_and_never_waits_forever(chunks: list[int]) -> None:
    """The server sends while its window has room; the consumer takes whatever arrived. Every
    chunk gets through, and nothing sent but not granted ever exceeds a window plus a chunk."""
    window, credits = Window(WINDOW_BYTES), Credits(CREDIT_STEP)
    arrived: list[int] = []
    queue = list(chunks)
    while queue or arrived:
        while queue and not window.full():
            window.sent += queue[0]
            arrived.append(queue.pop(0))
            assert window.outstanding < WINDOW_BYTES + CHUNK_BYTES
        assert arrived, "the window is full and nothing is left for the consumer to take: a deadlock"
        for size in arrived:
            window.granted += credits.taken(size)
        arrived.clear()
    assert window.sent == sum(chunks)
