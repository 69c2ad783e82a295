"""The `mesh-llm` command: flags to settings, the four services as children, a clean stop."""
