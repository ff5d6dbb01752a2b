"""echochat on asyncio Streams: ``start_server``, ``StreamWriter.write()`` + ``drain()``, queues."""
