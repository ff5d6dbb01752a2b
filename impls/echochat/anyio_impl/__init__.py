"""echochat on anyio, either backend: ``create_tcp_listener``, ``send``, memory object streams."""
