"""echochat on trio: ``serve_tcp``, ``send_all``, memory channels."""
