"""The ``cancel`` experiment: what a send cut off by a timeout leaves on the wire."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from echochat.experiments import Settings
from echochat.experiments.cancel import run


def test_a_cancelled_send_truncates_on_trio_and_completes_on_asyncio(tmp_path: Path) -> None:
    report = run(Settings(quick=True, out=tmp_path))
    size = report.raw["size"]
    runs: dict[str, list[dict[str, Any]]] = report.raw["runs"]

    # trio, and asyncio's socket API on either loop: part of the message went,
    # the rest never does, and the next send works, so the marker lands on the
    # truncated line.
    for model in ("trio", "anyio-trio", "asyncio-sockets", "uvloop-sockets"):
        for result in runs[model]:
            assert not result["finished"], model
            assert 0 < result["taken_at_cancel"] < size, model
            assert result["delivered_later"] == 0, model
            assert result["next_send_ok"], model
            assert result["marker_received"], model
            assert not result["intact"], model

    # asyncio: drain() was cancelled, but write() had queued the whole
    # message, which still arrives, followed by the marker.
    for model in ("asyncio-drain", "anyio-asyncio"):
        for result in runs[model]:
            assert not result["finished"], model
            assert 0 < result["taken_at_cancel"] < size, model
            assert result["taken_at_cancel"] + result["delivered_later"] == size, model
            assert result["intact"], model

    for result in runs["asyncio-drain"]:
        assert result["buffered_at_cancel"] == size - result["taken_at_cancel"]

    assert (tmp_path / "cancel.png").stat().st_size > 0
    assert f"plot: {tmp_path / 'cancel.png'}" in report.notes
