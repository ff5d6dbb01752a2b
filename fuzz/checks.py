"""What every line the server sends must satisfy, shared by the fuzz targets."""

from __future__ import annotations


def check_line(line: bytes, max_line: int) -> str:
    """The invariants of one server line; returns it decoded, without its CR LF.

    It ends with CR LF, holds no other CR, LF or NUL (which would let one
    client's text start a line of its own at another client), fits in
    ``max_line`` bytes and is valid UTF-8 (a multi-byte character cut in two
    would make the decoding raise).
    """
    assert line.endswith(b"\r\n"), line
    assert len(line) <= max_line, (max_line, line)
    body = line[:-2]
    assert not any(byte in body for byte in b"\r\n\0"), line
    return body.decode("utf-8")


def check_middle(word: str) -> None:
    """A middle parameter: one word that cannot be taken for the trailing one."""
    assert word, word
    assert " " not in word, word
    assert not word.startswith(":"), word
