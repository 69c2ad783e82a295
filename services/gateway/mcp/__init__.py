"""The MCP server (official `mcp` SDK): the blackboard and the mesh's state as tools for agents,
one definition served on stdio (`mesh-llm blackboard --mcp`) and at the console's /mcp."""
