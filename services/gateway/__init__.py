"""The gateway: the OpenAI API (:9337), the console (:3131), and the node's QUIC endpoint to peers."""
