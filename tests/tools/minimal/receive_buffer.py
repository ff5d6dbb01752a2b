"""Where glibc puts the buffer of asyncio's ``sock.recv(max_size)``, in a fresh process.

asyncio's selector transport reads with ``self._sock.recv(self.max_size)``,
256 KiB (``_SelectorTransport.max_size``, Lib/asyncio/selector_events.py).
``recv`` allocates a bytes object of that size and shrinks it to what
arrived. glibc serves a malloc of 128 KiB or more (its initial
``M_MMAP_THRESHOLD``) with its own ``mmap``, which the shrinking ``realloc``
keeps as an ``mremap``ped mapping, and ``free`` then unmaps: a system call
or three per read. Freeing such a chunk *whole* raises the threshold to its
size (glibc's dynamic threshold, malloc/malloc.c ``__libc_free``), and a
``recv`` that returns ``b""`` at end of stream frees its 256 KiB whole. From
then on the buffer comes from the heap.

So this script reads a short message three times on loopback and prints, as
JSON, whether each result lies inside the ``[heap]`` mapping of
``/proc/self/maps``: before any end of stream, after one, and under
``MALLOC_MMAP_THRESHOLD_`` if the caller set it (tests/tools/test_framework_traps.py).
Standard library only, so nothing else has moved the threshold first; Linux only.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket

MESSAGE = b"x" * 1000


def heap_range() -> tuple[int, int]:
    with open("/proc/self/maps") as maps:
        for line in maps:
            if line.rstrip().endswith("[heap]"):
                start, end = line.split()[0].split("-")
                return int(start, 16), int(end, 16)
    return 0, 0


def received_on_heap(size: int) -> bool:
    """Receive MESSAGE with ``recv(size)``; is the bytes object in the brk heap?"""
    left, right = socket.socketpair()
    with left, right:
        left.sendall(MESSAGE)
        data = right.recv(size)
        assert data == MESSAGE
        start, end = heap_range()
        # id() is the object's address (CPython), and a bytes object is one allocation.
        return start <= id(data) < end


def end_of_stream(size: int) -> None:
    """A ``recv(size)`` that returns b"" frees its whole buffer."""
    left, right = socket.socketpair()
    with left, right:
        left.shutdown(socket.SHUT_WR)
        assert right.recv(size) == b""


def main() -> dict[str, object]:
    size = asyncio.selector_events._SelectorTransport.max_size  # type: ignore[attr-defined]
    cold = received_on_heap(size)
    end_of_stream(size)
    warm = received_on_heap(size)
    return {
        "max_size": size,
        "cold_on_heap": cold,
        "after_eof_on_heap": warm,
        "MALLOC_MMAP_THRESHOLD_": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
    }


if __name__ == "__main__":
    print(json.dumps(main()))
