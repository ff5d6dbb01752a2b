"""The ``cancel-tls`` experiment: what a send cut off by a timeout leaves over TLS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from echochat.experiments import Settings
from echochat.experiments.cancel_tls import run

KiB = 1024
RECORD = 16 * KiB  # the most plaintext one TLS record carries


def test_a_cut_off_tls_send_breaks_trio_and_anyio_and_asyncio_has_none_to_cut(
    tmp_path: Path,
) -> None:
    report = run(Settings(quick=True, out=tmp_path))
    size = report.raw["size"]
    runs: dict[str, list[dict[str, Any]]] = report.raw["runs"]

    # trio's SSLStream and anyio's TLSStream, on both backends: the send was cut
    # off inside the encrypted stream, so the peer decrypts whole records only,
    # the stream is broken for good, and the peer's read ends without close_notify.
    for model in ("trio-tls", "anyio-asyncio-tls", "anyio-trio-tls"):
        for result in runs[model]:
            assert not result["finished"], model
            assert 0 < result["taken_at_cancel"] < size, model
            assert result["taken_at_cancel"] % RECORD == 0, model
            assert result["delivered_later"] == 0, model
            assert result["next_send_error"] == "BrokenResourceError", model
            assert not result["marker_received"], model
            assert result["peer_error"].startswith("SSLEOFError"), model
            # trio's SocketStream limits what the kernel holds unsent; anyio's sockets do not.
            assert result["notsent_lowat"] == (16 * KiB if model == "trio-tls" else 0), model

    # asyncio's TLS transport, on asyncio's loop and on uvloop: write() took the
    # whole message and drain() returned before the timeout, with the TLS
    # transport's buffer empty; every byte and the marker arrive, then close_notify.
    for model in ("asyncio-drain-tls", "uvloop-drain-tls"):
        for result in runs[model]:
            assert result["finished"], model
            assert result["buffered_at_cancel"] == 0, model
            assert result["taken_at_cancel"] + result["delivered_later"] == size, model
            assert result["next_send_ok"], model
            assert result["intact"], model
            assert result["peer_error"] is None, model

    rows = {row[0]: row for row in report.rows}
    assert rows["trio SSLStream.send_all()"][-2:] == ["broken", "16 KiB"]
    assert report.save_json(tmp_path, Settings(quick=True, out=tmp_path)).exists()
