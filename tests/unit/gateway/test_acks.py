"""When an ACK becomes due under peers/acks.py: later, at once on a loss, with data going out."""

from __future__ import annotations

from types import SimpleNamespace

from aioquic import tls
from aioquic.quic.rangeset import RangeSet

from services.gateway.peers.acks import ACK_DELAY, ACK_EVERY, AckPolicy


def connection() -> SimpleNamespace:
    """What AckPolicy reads of aioquic's QuicConnection: the 1-RTT packet space and the streams."""
    space = SimpleNamespace(ack_at=None, largest_received_packet=-1, ack_queue=RangeSet())
    return SimpleNamespace(_spaces={tls.Epoch.ONE_RTT: space}, _streams_queue=[], _ack_delay=0.001)


def arrive(quic: SimpleNamespace, policy: AckPolicy, number: int, now: float) -> None:
    """As aioquic's receive_datagram does for an ack-eliciting packet, then the policy."""
    space = quic._spaces[tls.Epoch.ONE_RTT]
    space.largest_received_packet = max(space.largest_received_packet, number)
    space.ack_queue.add(number)
    if space.ack_at is None:
        space.ack_at = now + quic._ack_delay
    policy.received(now)


def ack_sent(quic: SimpleNamespace, policy: AckPolicy) -> None:
    space = quic._spaces[tls.Epoch.ONE_RTT]
    space.ack_at = None
    space.ack_queue = RangeSet()  # the peer has our ACK
    policy.sent()


def test_in_order_packets_wait_then_the_tenth_makes_the_ack_due() -> None:
    quic = connection()
    policy = AckPolicy(quic, ACK_DELAY)
    assert quic._ack_delay == ACK_DELAY
    for number in range(ACK_EVERY - 1):
        arrive(quic, policy, number, now=1.0)
        assert quic._spaces[tls.Epoch.ONE_RTT].ack_at == 1.0 + ACK_DELAY
    arrive(quic, policy, ACK_EVERY - 1, now=1.0)
    assert quic._spaces[tls.Epoch.ONE_RTT].ack_at == 1.0


def test_a_missing_packet_makes_the_ack_due_at_once() -> None:
    # The sender is waiting to learn of the loss; holding the ACK would cost it the whole delay.
    quic = connection()
    policy = AckPolicy(quic, ACK_DELAY)
    arrive(quic, policy, 0, now=1.0)
    ack_sent(quic, policy)
    arrive(quic, policy, 1, now=2.0)
    assert quic._spaces[tls.Epoch.ONE_RTT].ack_at == 2.0 + ACK_DELAY
    arrive(quic, policy, 3, now=2.0)  # 2 is missing
    assert quic._spaces[tls.Epoch.ONE_RTT].ack_at == 2.0


def test_a_late_packet_makes_the_ack_due_at_once() -> None:
    quic = connection()
    policy = AckPolicy(quic, ACK_DELAY)
    arrive(quic, policy, 0, now=1.0)
    arrive(quic, policy, 2, now=1.0)  # a gap: due now
    ack_sent(quic, policy)
    arrive(quic, policy, 1, now=3.0)  # the one that was missing, out of order
    assert quic._spaces[tls.Epoch.ONE_RTT].ack_at == 3.0


def test_an_owed_ack_rides_on_data_about_to_go() -> None:
    quic = connection()
    policy = AckPolicy(quic, ACK_DELAY)
    arrive(quic, policy, 0, now=1.0)
    policy.sending(1.001)  # nothing to send: the ACK keeps waiting
    assert quic._spaces[tls.Epoch.ONE_RTT].ack_at == 1.0 + ACK_DELAY
    quic._streams_queue.append(SimpleNamespace(sender=SimpleNamespace(buffer_is_empty=False)))
    policy.sending(1.002)
    assert quic._spaces[tls.Epoch.ONE_RTT].ack_at == 1.002


def test_off_leaves_aioquics_timing() -> None:
    quic = connection()
    policy = AckPolicy(quic, 0.0)
    assert quic._ack_delay == 0.001
    arrive(quic, policy, 0, now=1.0)
    arrive(quic, policy, 2, now=1.0)
    quic._streams_queue.append(SimpleNamespace(sender=SimpleNamespace(buffer_is_empty=False)))
    policy.sending(1.0005)
    assert quic._spaces[tls.Epoch.ONE_RTT].ack_at == 1.001
