"""Placement: decides what this node runs (solo, RPC worker, pipeline host, MoE shard, standby)."""
