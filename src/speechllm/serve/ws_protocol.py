"""uvicorn's WebSocket protocol, with one fix: a handshake that websockets refuses is answered.

websockets refuses a handshake whose header line is over 8 KB (431) or whose request line is
too long (414) by queueing the response in its sans-I/O state, but uvicorn (0.54) writes that
state's output only when a handshake event or a protocol error arrives, so the response is
never sent and the client waits with the connection open. Here it is sent and the connection
closed.
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class AnsweringWebSocketProtocol(WebSocketsSansIOProtocol):
    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if (not self.handshake_initiated and self.conn.handshake_exc is not None
                and not self.transport.is_closing()):
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()
