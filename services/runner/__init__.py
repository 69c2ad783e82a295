"""The runner: models on disk, GGUF work, and supervision of llama-server and rpc-server."""
