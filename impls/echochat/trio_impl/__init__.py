"""echochat on trio: ``serve_tcp``, ``SocketStream.send_all`` and memory channels."""
