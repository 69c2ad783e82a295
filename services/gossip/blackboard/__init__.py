"""The blackboard: short posts every member of the mesh holds (posts.py the rules, store.py the
SQLite file, board.py this node's copy, sync.py anti-entropy with peers through the gateway)."""
