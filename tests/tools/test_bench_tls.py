"""The echo benchmark over TLS: minimal TLS servers, the C client with OpenSSL, the TLS rows."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from echochat.bench import tls
from echochat.bench.cserver import build_epoll_client
from echochat.bench.echo import (
    MINIMAL,
    TLS_SUFFIX,
    EchoError,
    EchoResult,
    bench_certificate,
    echo_targets,
    measure,
    run_echo,
    start_echochat,
    start_minimal,
)
from echochat.bench.native import run_native
from echochat.launch import ServerUnderTest, throwaway_certificate
from echochat.registry import BY_NAME, EventLoop, configuration_id

KiB = 1024
CLIENT_BUILD = build_epoll_client()
needs_tls_client = pytest.mark.skipif(
    not CLIENT_BUILD.tls, reason=f"no C client with OpenSSL: {CLIENT_BUILD.reason or 'no gcc'}"
)
# Every minimal server that serves TLS, on every loop it runs on.
MINIMAL_TLS = [
    (impl, loop)
    for impl, minimal in MINIMAL.items()
    if minimal.tls and BY_NAME[impl].drain
    for loop in BY_NAME[impl].loops
]


def c_client(server: ServerUnderTest, size: int, concurrency: int, duration: float) -> EchoResult:
    assert CLIENT_BUILD.binary is not None
    return run_native(CLIENT_BUILD.binary, server, size, concurrency, duration)


@pytest.mark.parametrize(
    ("impl", "loop"), MINIMAL_TLS, ids=[configuration_id(BY_NAME[i], lo) for i, lo in MINIMAL_TLS]
)
def test_minimal_tls_server_echoes_over_tls_and_exits_0_on_sigterm(
    impl: str, loop: EventLoop
) -> None:
    server = start_minimal(MINIMAL[impl], loop, tls=True)
    try:
        assert server.label.endswith(TLS_SUFFIX)
        message = bytes(range(256)) * 400  # 100 KiB: several TLS records each way
        with server.connect(timeout=5) as sock:
            assert isinstance(sock, ssl.SSLSocket)
            assert sock.version() == "TLSv1.3"
            sock.sendall(message)
            echoed = b""
            while len(echoed) < len(message) and (chunk := sock.recv(65536)):
                echoed += chunk
            assert echoed == message
            # Signalled with the connection still open: the hard case for a clean exit.
            _, stdout, stderr = server.finish(signal.SIGTERM, timeout=5)
    finally:
        server.kill()
    assert stdout == ""
    assert stderr == ""


def test_the_minimal_sockets_server_has_no_tls() -> None:
    assert not MINIMAL["asyncio-sockets"].tls
    assert not BY_NAME["asyncio-sockets"].tls
    cert, key = bench_certificate()
    command = [sys.executable, "-m", "echochat.bench.minimal.asyncio_sockets", "--port", "0"]
    command += ["--tls-cert", str(cert), "--tls-key", str(key)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "unrecognized arguments: --tls-cert" in done.stderr


def test_tls_rows_follow_the_plain_rows_for_every_implementation_that_serves_tls() -> None:
    plain = [row.label for row in echo_targets().rows]
    labels = [row.label for row in echo_targets(tls=True).rows]
    served = [label for label in plain if BY_NAME[label.partition("+")[0]].tls]
    assert labels == plain + [label + TLS_SUFFIX for label in served]
    assert "asyncio-sockets TLS" not in labels
    assert "asyncio-protocol+uvloop TLS" in labels
    for impl, minimal in MINIMAL.items():
        assert minimal.tls == BY_NAME[impl].tls, impl


def test_the_python_client_refuses_a_tls_server() -> None:
    with (
        start_minimal(MINIMAL["trio"], tls=True) as server,
        pytest.raises(EchoError, match="TLS needs the C client"),
    ):
        run_echo(server, 1 * KiB, 1, 0.1)


@needs_tls_client
def test_the_c_client_loads_tls_servers_and_checks_every_echo() -> None:
    starts = [
        lambda: start_echochat("asyncio-protocol", tls=True),
        lambda: start_minimal(MINIMAL["trio"], tls=True),
    ]
    results = measure(starts, [1 * KiB, 100 * KiB], concurrency=4, duration=0.5, client=c_client)
    assert sorted((r.label, r.size) for r in results) == sorted(
        (label, size)
        for label in ("asyncio-protocol TLS", "minimal trio TLS")
        for size in (1 * KiB, 100 * KiB)
    )
    for result in results:
        assert result.client == "C"
        assert result.tls.startswith("TLSv1.3 "), result.tls
        assert result.messages > 0
        assert result.verified == result.messages + 4
        assert 0 < result.p50_ms <= result.p99_ms <= result.max_ms
        assert result.server_cpu_s_per_msg > 0
        assert 0 < result.client_cpu_share <= 1.05


# A TLS echo server that flips the first byte of each read: the C client must notice.
CORRUPTING_TLS_SERVER = """
import os, signal, socket, ssl, sys
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
listener = socket.create_server(("127.0.0.1", 0))
print(f"listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)
connection = context.wrap_socket(listener.accept()[0], server_side=True)
while data := bytearray(connection.recv(65536)):
    data[0] ^= 1
    connection.sendall(data)
signal.pause()
"""


@needs_tls_client
def test_a_changed_byte_over_tls_fails_the_run() -> None:
    cert, key = bench_certificate()
    command = [sys.executable, "-c", CORRUPTING_TLS_SERVER, str(cert), str(key)]
    with (
        ServerUnderTest("corrupting TLS", command, ca=cert) as server,
        pytest.raises(EchoError, match="different bytes"),
    ):
        c_client(server, 1 * KiB, 1, 0.5)


@needs_tls_client
def test_the_c_client_refuses_a_certificate_it_was_not_given(tmp_path: Path) -> None:
    other, _ = throwaway_certificate(tmp_path, "other")
    with start_minimal(MINIMAL["trio"], tls=True) as server:
        server.ca = other
        with pytest.raises(EchoError, match="handshake"):
            c_client(server, 1 * KiB, 1, 0.2)


@needs_tls_client
def test_bench_tls_sets_each_implementation_over_tls_beside_itself_on_plain_tcp(
    tmp_path: Path,
) -> None:
    matrix = tls.run(1, 0.3, "c", sizes=(1 * KiB,), configurations={"trio", "asyncio-protocol"})
    assert [(row.label, row.size) for row in matrix.tls] == [
        ("trio", 1 * KiB),
        ("asyncio-protocol", 1 * KiB),
    ]
    labels = {result.label for result in matrix.raw_echo}
    assert labels == {
        "trio",
        "minimal trio",
        "trio TLS",
        "minimal trio TLS",
        "asyncio-protocol",
        "minimal asyncio-protocol",
        "asyncio-protocol TLS",
        "minimal asyncio-protocol TLS",
    }
    runs = {result.label: result for result in matrix.raw_echo}
    for row in matrix.tls:
        plain, over_tls = runs[row.label], runs[row.label + TLS_SUFFIX]
        assert row.ratio == pytest.approx(over_tls.msgs_per_s / plain.msgs_per_s)
        assert row.tls_cpu_us_per_msg == pytest.approx(over_tls.server_cpu_s_per_msg * 1e6)
        assert row.client_cpu_us_per_msg == pytest.approx(
            over_tls.client_cpu_share * over_tls.seconds / over_tls.messages * 1e6
        )
        assert math.isfinite(row.minimal_ratio)
        assert row.minimal_ratio > 0
    assert not runs["trio"].tls
    assert runs["trio TLS"].tls.startswith("TLSv1.3")
    paths = tls.save(matrix, tmp_path)
    document = json.loads((tmp_path / "bench-tls.json").read_text())
    assert len(document["tls"]) == 2
    assert len(document["echo_runs"]) == 8
    summary = (tmp_path / "bench-tls.md").read_text()
    assert "| implementation | size | plain msgs/s | TLS msgs/s | TLS/plain |" in summary
    assert "| trio TLS | 1 KiB |" in summary
    assert "TLS: TLSv1.3 " in summary
    assert paths == [tmp_path / "bench-tls.json", tmp_path / "bench-tls.md"]


def test_bench_tls_refuses_the_python_client() -> None:
    with pytest.raises(RuntimeError, match="TLS rows need the C client built with OpenSSL"):
        tls.run(1, 0.1, "python")


def gcc_without_openssl(directory: Path) -> Path:
    """A ``gcc`` that compiles as on a machine without libssl-dev: the real gcc, searching
    copies of its include directories in which every ``openssl`` directory is left out."""
    gcc = shutil.which("gcc")
    assert gcc is not None
    verbose = subprocess.run(
        [gcc, "-E", "-v", "-x", "c", os.devnull, "-o", os.devnull],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stderr
    searched = verbose.partition("#include <...> search starts here:\n")[2]
    searched = searched.partition("End of search list.")[0]
    options = ["-nostdinc"]
    for number, include in enumerate(Path(line.strip()) for line in searched.splitlines()):
        copy = directory / "include" / str(number)
        copy.mkdir(parents=True)
        for entry in include.iterdir() if include.is_dir() else []:
            if entry.name != "openssl":
                (copy / entry.name).symlink_to(entry)
        options += ["-isystem", str(copy)]
    wrapper = directory / "bin" / "gcc"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec {gcc} {" ".join(options)} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper.parent


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc")
def test_without_openssl_headers_the_c_client_speaks_plain_tcp_and_says_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bin_directory = gcc_without_openssl(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_directory}{os.pathsep}{os.environ['PATH']}")
    build = build_epoll_client(tmp_path / "cache")
    assert build.binary is not None
    assert not build.tls
    assert build.reason == (
        "built without TLS: OpenSSL's headers are missing (Debian: apt-get install libssl-dev)"
    )
    cert, _ = bench_certificate()
    refused = subprocess.run(
        [str(build.binary), "--port", "1", "--size", "1", "--tls-ca", str(cert)],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert refused.returncode == 1
    assert "built without OpenSSL" in refused.stdout
