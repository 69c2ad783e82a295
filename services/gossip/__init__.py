"""Gossip: this node's record, membership and failure detection, the demand map, the blackboard."""
