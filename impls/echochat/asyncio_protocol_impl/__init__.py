"""echochat on asyncio Transports and Protocols: a teaching variant, to measure and not to use.

``loop.create_server`` with one Protocol per connection, ``transport.write()``
and the ``pause_writing()``/``resume_writing()`` callbacks; no tasks at all.
"""
