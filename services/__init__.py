"""mesh-llm: four cooperating services per node (gateway, gossip, placement, runner) and the CLI."""
