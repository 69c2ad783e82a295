"""The blackboard's HTTP API (/v1/blackboard/…): scrubbed here, then posted and read through gossip."""
