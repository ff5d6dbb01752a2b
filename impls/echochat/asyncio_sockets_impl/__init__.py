"""echochat on asyncio's socket API: ``sock_accept``, ``sock_recv_into``, ``sock_sendall``."""
