"""Experiment ``cancel-tls``: the ``cancel`` experiment over TLS, each framework with its own TLS.

Per model, in a process of its own (``probes.py``, the ``-tls`` models): the
framework sends one 8 MiB line over TLS to a peer that does not read, under
the framework's own timeout; then the peer decrypts what it can of what the
kernels hold, without letting the framework run; then a thread reads to the
end while the framework sends a marker line and closes. A cut-off TLS send
differs from a plain one: the kernel has part of the encrypted stream, and
the peer can decrypt only whole records, and only in order, so a stream that
dropped the rest of a record can never send again. What the peer decrypted,
whether the next send works, and how the peer's stream ends show it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from echochat.experiments import Settings
from echochat.experiments.cancel import SIZE, agree, outcome_cells, probe_models
from echochat.experiments.common import MiB, Report
from echochat.experiments.probes import MODELS, KiB, available
from echochat.launch import throwaway_certificate

NAME = "cancel-tls"
ORDER = [
    "asyncio-drain-tls",
    "uvloop-drain-tls",
    "trio-tls",
    "anyio-asyncio-tls",
    "anyio-trio-tls",
]


def run(settings: Settings) -> Report:
    timeout, repeats = (0.25, 1) if settings.quick else (0.5, 3)
    models, skipped = available(ORDER)
    with tempfile.TemporaryDirectory() as directory:
        cert, key = throwaway_certificate(Path(directory))
        runs = probe_models(NAME, models, timeout, repeats, "--cert", str(cert), "--key", str(key))
    rows = [
        [
            MODELS[model].label,
            agree([send_under_timeout(result) for result in results]),
            *outcome_cells(results, peer_reads, state),
        ]
        for model, results in runs.items()
    ]
    notes = [
        f"One {SIZE // MiB} MiB line over TLS to a peer that does not read, under a timeout "
        f"of {timeout} s; then a marker line on the same stream, then close. {repeats} run(s) "
        "per model: median (min-max) in KiB of plaintext the peer decrypted.",
        "'decrypted before' is what the peer could decrypt of what the kernels held when the "
        "timeout fired, before the framework ran again; 'after' is what arrived later.",
        "trio and anyio encrypt the whole 8 MiB into the SSL object's memory BIO, then send "
        "the encrypted bytes in one call; the timeout cuts that send off inside a record, so "
        "the stream is marked broken and the next send raises BrokenResourceError (trio "
        "_ssl.py, SSLStream._retry: 'This stream is doomed'; anyio streams/tls.py, "
        "TLSStream._flush_write_bio). Closing sends no close_notify, so the peer's read ends in "
        "SSLEOFError: it can tell the stream was cut, but not what it missed. trio's peer "
        "decrypts far less than anyio's because trio's SocketStream sets TCP_NOTSENT_LOWAT "
        "(the NOTSENT_LOWAT column; trio#72), so its kernel had taken little when the timeout "
        "fired; anyio's sockets have no such limit.",
        "asyncio and uvloop: write() encrypts the whole 8 MiB and hands it to the socket "
        "transport beneath while that one is not paused, so the TLS transport's own buffer, "
        "all drain() waits on, is empty again at once: drain() returns before the timeout and "
        "there is nothing to cancel; the rest goes out as the peer reads, then the marker "
        "(CPython Lib/asyncio/sslproto.py, _SSLProtocolTransport.write, "
        "SSLProtocol._do_write and _process_outgoing).",
    ]
    if skipped:
        notes.append(f"skipped (uvloop not installed): {', '.join(skipped)}")
    return Report(
        name=NAME,
        title="A send over TLS under a timeout: 8 MiB to a peer that does not read",
        columns=[
            "model",
            "send under the timeout",
            "decrypted before (KiB)",
            "decrypted after (KiB)",
            "whole message",
            "next send",
            "peer reads",
            "stream after",
            "NOTSENT_LOWAT",
        ],
        rows=rows,
        raw={"size": SIZE, "timeout": timeout, "repeats": repeats, "runs": runs},
        notes=notes,
    )


def send_under_timeout(result: dict[str, Any]) -> str:
    if not result["finished"]:
        return "cut off"
    buffered = result["buffered_at_cancel"]
    if buffered is None:
        return "returned"
    return f"returned, TLS transport holds {buffered / KiB:,.0f} KiB"


def peer_reads(result: dict[str, Any]) -> str:
    if result["intact"]:
        return "message, marker, close_notify"
    body = result["taken_at_cancel"] + result["delivered_later"]
    marker = ", the marker" if result["marker_received"] else ", no marker"
    end = result["peer_error"].partition(":")[0] if result["peer_error"] else "a clean end"
    return f"{body / KiB:,.0f} KiB of the message{marker}, then {end}"


def state(result: dict[str, Any]) -> str:
    if result["next_send_error"] is not None:
        return "broken"
    return "open"
