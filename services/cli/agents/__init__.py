"""`mesh-llm claude|goose|opencode|pi`: coding agents pointed at the mesh's gateway.

configs.py knows what each agent reads (pure), choice.py which served model to give it (pure),
launcher.py finds or starts a node, writes and launches.
"""
