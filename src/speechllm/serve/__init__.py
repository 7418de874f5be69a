"""`speechllm serve`: an OpenAI-compatible HTTP API, realtime voice over WebSocket, a web page."""
