"""Pieces every service shares: node settings, logging, the gRPC server shell, the run loop."""
