"""The ``errors`` experiment: where a peer's reset surfaces in each send primitive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from echochat.experiments import Settings
from echochat.experiments.errors import run


def test_errors_surface_where_each_model_says(tmp_path: Path) -> None:
    report = run(Settings(quick=True, out=tmp_path))
    results: dict[str, dict[str, Any]] = {r["model"]: r for r in report.raw["results"]}

    # write() alone never raises: every write is accepted, and asyncio only logs.
    write_only = results["asyncio-write"]
    assert write_only["exception"] is None
    assert write_only["accepted"] == write_only["attempts"] == report.raw["count"]
    assert write_only["logged"] > 0
    assert "socket.send() raised exception." in write_only["log_messages"][0]

    # drain() is where the reset reaches a Streams writer, within a few writes.
    drained = results["asyncio-drain"]
    assert "ConnectionError" in drained["exception_kinds"]
    assert drained["surfaced_in"] == "drain()"
    assert drained["attempts"] <= 3

    for model in ("trio", "anyio-asyncio", "anyio-trio"):
        assert results[model]["exception_type"] == "BrokenResourceError", model
        assert results[model]["attempts"] <= 3, model
        assert results[model]["logged"] == 0, model

    # asyncio's socket API: the first sock_sendall() after the RST raises the
    # kernel's error itself; no transport logs or swallows it.
    for model in ("asyncio-sockets", "uvloop-sockets"):
        assert results[model]["exception_type"] == "ConnectionResetError", model
        assert results[model]["surfaced_in"] == "sock_sendall()", model
        assert results[model]["attempts"] == 1, model
        assert results[model]["logged"] == 0, model

    assert (tmp_path / "errors.png").stat().st_size > 0
    assert f"plot: {tmp_path / 'errors.png'}" in report.notes
