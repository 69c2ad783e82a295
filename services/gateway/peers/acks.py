"""When this endpoint acknowledges what a peer sent: a little later, and with data where it can.

aioquic acknowledges an ack-eliciting packet 1 ms after it arrives, in a datagram of its own when
nothing else is due. On a split that is a pure-ACK datagram per token each way (each side
acknowledges the other's burst while the other computes): on both gateways a timer wake-up, a
packet built, encrypted and sent, and one read and parsed, in the middle of llama's compute on
the same cores (bench/rpc_tunnel.py counts the gateways' CPU per token). RFC 9000 (13.2.1) lets a
receiver wait up to the max_ack_delay it advertises (aioquic: 25 ms), so here:

- an ACK waits up to ACK_DELAY; at once when a packet is missing or out of order (a loss);
- it goes at once when ACK_EVERY packets await it, so congestion control keeps growing on bulk
  transfers (loading weights, a long HTTP body). RFC 9000 (13.2.2) advises two; a token's burst
  on a LAN is 8 datagrams of 1452 bytes, and with two its ACK would again leave on its own;
- it rides on the next stream data we send: the worker's answer carries the ACK of the burst,
  the host's next burst the ACK of the answer.

Handshake packets are acknowledged as aioquic does (they are not in the 1-RTT space).

Off by default (MESH_GATEWAY_PEER_ACK_DELAY=0): measured, it saves the gateways 20-40% of their CPU
per token (bench/rpc_tunnel.py) but the split was no faster on separate cores (bench/split_cores.py:
0.856 vs 0.851 of stock), and with one datagram lost every fourth turn the turns between losses
took ~23 instead of ~8.7 ms (bench/ack_loss.py: the sender's window shrinks below a burst and
waits on held ACKs).
"""

from __future__ import annotations

from aioquic import tls
from aioquic.quic.connection import QuicConnection

# Seconds. The peer's loss timer allows for the 25 ms max_ack_delay aioquic advertises, counted from
# its send; an ACK's own timer starts at arrival and may fire late (a busy event loop): keep 10 ms spare.
ACK_DELAY = 0.015
MAX_ACK_DELAY = 0.015
ACK_EVERY = 10  # packets; more than a token's burst or answer takes in LAN-sized datagrams (8 and 6)


class AckPolicy:
    """The ACK timing of one connection; reaches into aioquic's packet space (it has no setting).
    A delay of 0 leaves aioquic's own timing."""

    def __init__(self, quic: QuicConnection, delay: float = ACK_DELAY) -> None:
        self.quic = quic
        self.on = delay > 0
        if self.on:
            quic._ack_delay = delay  # noqa: SLF001 - Initial and Handshake ACKs go out with every transmit regardless
        self._first_unacked: int | None = None  # the newest packet when an ACK first became owed
        self._largest = -1  # the newest 1-RTT packet number seen after the previous datagram

    def received(self, now: float) -> None:
        """After a datagram is read: the ACK is due now when a packet is missing or came out of
        order (RFC 9000 13.2.1: the sender is waiting to learn of a loss, and with no answer to
        ride on the ACK would wait its whole delay on every window), and after ACK_EVERY packets."""
        space = self._space()
        if not self.on or space is None:
            return
        largest, previous = space.largest_received_packet, self._largest
        self._largest = largest
        if space.ack_at is None:
            self._first_unacked = None
            return
        if self._first_unacked is None:
            self._first_unacked = largest
        out_of_order = largest != previous + 1  # a gap before this packet, or it is an older one
        if out_of_order or len(space.ack_queue) > 1 or largest - self._first_unacked >= ACK_EVERY - 1:
            space.ack_at = now

    def sending(self, now: float) -> None:
        """Before a transmit: an owed ACK leaves with the stream data about to go."""
        space = self._space()
        if self.on and space is not None and space.ack_at is not None and space.ack_at > now and self._data_waiting():
            space.ack_at = now

    def sent(self) -> None:
        """After a transmit: an ACK that went out owes nothing more."""
        space = self._space()
        if space is None or space.ack_at is None:
            self._first_unacked = None

    def _space(self):
        return self.quic._spaces.get(tls.Epoch.ONE_RTT)  # noqa: SLF001

    def _data_waiting(self) -> bool:
        return any(not stream.sender.buffer_is_empty for stream in self.quic._streams_queue)  # noqa: SLF001
