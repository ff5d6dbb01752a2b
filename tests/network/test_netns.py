"""The hosts' own promises (tests/netns.py): nothing is left behind, even by a run that died."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import netns
from echochat.launch_redis import RedisClient
from netns import Network, unavailable
from redisserver import PrivateRedis

UNAVAILABLE = unavailable()
pytestmark = pytest.mark.skipif(UNAVAILABLE is not None, reason=str(UNAVAILABLE))

# A run that builds a host, starts a process on it, says what it made and waits to be killed.
_DYING_RUN = """
import sys
from netns import Network
network = Network()
host = network.add_host("h")
process = host.start("sleep", "600")
print(network.prefix, *network.root_links, process.pid, flush=True)
sys.stdin.read()
"""


def our_namespaces(prefix: str) -> list[str]:
    return [name for name in netns.namespaces() if name.startswith(prefix)]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has exited: only its exit status is left)."""
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def test_a_run_killed_before_closing_is_swept_by_the_next_and_close_leaves_nothing() -> None:
    tests = str(Path(netns.__file__).parent)
    with subprocess.Popen(
        [sys.executable, "-c", _DYING_RUN],
        env={**os.environ, "PYTHONPATH": tests},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as dying:
        assert dying.stdout is not None
        prefix, *links, pid_text = dying.stdout.readline().split()
        dying.send_signal(signal.SIGKILL)
    left_pid = int(pid_text)
    try:
        # Killed: nobody closed its network, and its process on the host lives on.
        assert len(our_namespaces(prefix)) == 2
        assert alive(left_pid)
        network = Network()
        with contextlib.closing(network):
            assert our_namespaces(prefix) == []
            assert not alive(left_pid)
            assert not set(links) & netns.links()
            network.add_host("h").start("sleep", "600")
            assert len(our_namespaces(network.prefix)) == 2
        assert our_namespaces(network.prefix) == []
        assert not set(network.root_links) & netns.links()
    finally:
        if alive(left_pid):
            os.kill(left_pid, signal.SIGKILL)


def test_the_delay_relay_holds_bytes_each_way_and_keeps_their_order(tmp_path: Path) -> None:
    delay = 0.2
    with contextlib.closing(Network()) as network:
        host = network.add_host("redis", users=False)
        with PrivateRedis(tmp_path, tcp=True, bind=host.address, port=6379, wrapper=host.wrapper):
            host.delay_relay(6380, (host.address, 6379), delay)
            with RedisClient((host.address, 6380)) as client:
                started = time.monotonic()
                assert client.command("PING") == b"PONG"
                # Never sooner than the delay both ways (it can only add to it).
                assert time.monotonic() - started >= 2 * delay
                client.send_many(("ECHO", str(n)) for n in range(1000))
                assert [client.read() for _ in range(1000)] == [b"%d" % n for n in range(1000)]
