"""HTTP/WebSocket server: FastAPI app, one router per API area."""
