"""Machines for the network tests, simulated: Linux network namespaces joined by veth pairs.

A ``Network`` is one test's hosts (iproute2's ``ip`` and ``tc``; root only):

* a *switch* namespace holds two bridges: ``users``, on which the users'
  clients reach the chat servers, and ``backbone``, on which the chat servers
  reach Redis;
* each ``Host`` is a namespace with loopback up, a veth pair to the backbone
  and, for a chat server's host, one to the users' bridge, with an address
  on each: ``10.77.N.x/24``;
* the test process, in the namespace it started in, has a veth into each
  bridge, so its IrcClients connect to the servers' addresses directly and it
  can ask Redis what it sees.

A host's *link* is its veth pair to the backbone: ``throttle()`` puts a token
bucket (tbf) on both ends, ``cut()`` sets both ends down and ``heal()`` up
again. A cut host keeps its users (their bridge is another) and loses Redis.
Latency comes from delay_relay.py, since not every kernel has netem (this
CI's has neither netem nor fq_codel; tbf and htb it has).

Every name holds the test process's PID and a random token
(``echochat-PID-TOKEN-ROLE``, veths ``ecTOKENu``/``ecTOKENb``) and the subnets
are chosen where no route of the machine is, under a lock, so parallel runs
never collide. ``close()`` kills what runs in the namespaces, deletes them and
the veths, and checks that nothing is left; a run that died before its
``close()`` is swept by the next one, once its PID is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Lines of the users' and the backbone's networks: 10.77.2k.0/24 and 10.77.2k+1.0/24.
SUBNET_PAIRS = range(1, 128)
# The test process's address on each bridge; hosts count up from .1.
ROOT_HOST = 254
# How long a packet may wait in a throttled link's queue before tbf drops it.
TBF_LATENCY = "1s"
COMMAND_TIMEOUT = 10.0
STARTUP_TIMEOUT = 10.0
DELAY_RELAY = Path(__file__).with_name("delay_relay.py")
# Taken while one run reads the routes and claims its subnets.
LOCK_PATH = Path(tempfile.gettempdir()) / "echochat-netns.lock"
_OUR_NAMESPACE = re.compile(r"echochat-(\d+)-([0-9a-f]{6})-[a-z0-9]+")


class NetnsError(RuntimeError):
    """An ip or tc command failed; the message has the command and its stderr."""


def run(*command: str) -> str:
    """Run one command (ip, tc) to its end; its stdout, or NetnsError with its stderr."""
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
    )
    if result.returncode != 0:
        raise NetnsError(f"{' '.join(command)}: {result.stderr.strip()}")
    return result.stdout


def unavailable() -> str | None:
    """Why network namespaces cannot be used here, or None: decided once, at collection."""
    if os.geteuid() != 0:
        return "needs root, for ip netns (CI runs as root)"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "needs ip and tc (Debian's iproute2)"
    probe = f"echochat-{os.getpid()}-{secrets.token_hex(3)}-probe"
    try:
        run("ip", "netns", "add", probe)
        try:
            run("ip", "-n", probe, "link", "add", "p0", "type", "veth", "peer", "name", "p1")
            run("ip", "-n", probe, "link", "add", "br0", "type", "bridge")
            run("tc", "-n", probe, "qdisc", "add", "dev", "p0", "root", "tbf", "rate", "1mbit",
                "burst", "4kb", "latency", TBF_LATENCY)  # fmt: skip
        finally:
            run("ip", "netns", "del", probe)
    except NetnsError as error:
        return f"network namespaces, veth, bridges or tbf do not work here: {error}"
    return None


class Network:
    """One test's hosts on two bridges; ``close()`` removes everything."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(3)
        self.prefix = f"echochat-{os.getpid()}-{self.token}"
        self.namespaces: list[str] = []
        self.root_links: list[str] = []
        self.processes: list[subprocess.Popen[str]] = []
        self.hosts: list[Host] = []
        try:
            with _lock():
                _sweep_dead_runs()
                self.users, self.backbone = _free_subnets()
                self.switch = self._namespace("switch")
                for bridge in ("users", "backbone"):
                    run("ip", "-n", self.switch, "link", "add", bridge, "type", "bridge")
                    run("ip", "-n", self.switch, "link", "set", bridge, "up")
                # The test process's own veths, added last: its routes claim the subnets.
                for bridge, subnet in (("users", self.users), ("backbone", self.backbone)):
                    name = f"ec{self.token}{bridge[0]}"
                    self.root_links.append(name)
                    run("ip", "-n", self.switch, "link", "add", f"root-{bridge}", "type", "veth",
                        "peer", "name", name, "netns", str(os.getpid()))  # fmt: skip
                    self._plug(f"root-{bridge}", bridge)
                    run("ip", "addr", "add", f"{subnet[ROOT_HOST]}/24", "dev", name)
                    run("ip", "link", "set", name, "up")
        except BaseException:
            self.close()
            raise

    def _namespace(self, role: str) -> str:
        name = f"{self.prefix}-{role}"
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def _plug(self, port: str, bridge: str) -> None:
        """A veth end in the switch becomes a port of ``bridge``."""
        run("ip", "-n", self.switch, "link", "set", port, "master", bridge, "up")

    def add_host(self, role: str, *, users: bool = True) -> Host:
        """A new host on the backbone and, with ``users``, on the users' bridge."""
        if not re.fullmatch(r"[a-z0-9]{1,8}", role):
            raise ValueError(f"a host's role is 1 to 8 lowercase letters or digits: {role!r}")
        namespace = self._namespace(role)
        number = len(self.hosts) + 1
        addresses = {}
        for bridge, subnet in (("backbone", self.backbone), ("users", self.users)):
            if bridge == "users" and not users:
                continue
            port = f"{bridge[0]}-{role}"
            run("ip", "-n", self.switch, "link", "add", port, "type", "veth", "peer", "name",
                bridge, "netns", namespace)  # fmt: skip
            self._plug(port, bridge)
            run("ip", "-n", namespace, "addr", "add", f"{subnet[number]}/24", "dev", bridge)
            run("ip", "-n", namespace, "link", "set", bridge, "up")
            addresses[bridge] = str(subnet[number])
        host = Host(self, role, namespace, addresses["backbone"], addresses.get("users"))
        self.hosts.append(host)
        return host

    def close(self) -> None:
        """Kill every process in the namespaces, delete them and the veths; check none is left."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()
        errors: list[str] = []
        present = links()
        for name in self.root_links:
            # Deleting one end of a veth pair deletes the other, at once; a
            # namespace's own veths go with it, but in the background.
            if name in present:
                _record(errors, "ip", "link", "del", name)
        for namespace in reversed(self.namespaces):
            try:
                _remove_namespace(namespace)
            except NetnsError as error:
                errors.append(str(error))
        left = [name for name in namespaces() if name.startswith(self.prefix)]
        left += sorted(links() & set(self.root_links))
        if left:
            errors.append(f"left behind: {left}")
        if errors:
            raise NetnsError("; ".join(errors))


class Host:
    """One machine of a Network: a namespace with an address on the backbone (and the users')."""

    def __init__(
        self, network: Network, role: str, namespace: str, address: str, users_address: str | None
    ) -> None:
        self.network = network
        self.role = role
        self.namespace = namespace
        self.address = address
        self.users_address = users_address

    @property
    def wrapper(self) -> tuple[str, ...]:
        """The command that runs a command on this host."""
        return ("ip", "netns", "exec", self.namespace)

    def _link_ends(self) -> list[tuple[str, str]]:
        """(namespace, device) of both ends of this host's veth pair to the backbone."""
        return [(self.namespace, "backbone"), (self.network.switch, f"b-{self.role}")]

    def throttle(self, rate: str, burst: str) -> None:
        """Both directions of the host's link at ``rate`` (tc's units: ``256kbit``), each
        with a token bucket of ``burst`` bytes (at least a packet: ``4kb``); what waits
        longer than TBF_LATENCY in the queue is dropped, and TCP sends it again."""
        for namespace, device in self._link_ends():
            run("tc", "-n", namespace, "qdisc", "replace", "dev", device, "root", "tbf",
                "rate", rate, "burst", burst, "latency", TBF_LATENCY)  # fmt: skip

    def cut(self) -> None:
        """The host's link goes down at both ends: nothing crosses between it and the backbone."""
        for namespace, device in self._link_ends():
            run("ip", "-n", namespace, "link", "set", device, "down")

    def heal(self) -> None:
        """Both ends up again: the kernel restores the host's route to the backbone."""
        for namespace, device in self._link_ends():
            run("ip", "-n", namespace, "link", "set", device, "up")

    def start(self, *command: str) -> subprocess.Popen[str]:
        """Run ``command`` on this host until the network closes; its stdout is a pipe."""
        process = subprocess.Popen(
            [*self.wrapper, *command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
        )
        self.network.processes.append(process)
        return process

    def delay_relay(self, port: int, target: tuple[str, int], delay: float) -> None:
        """A relay on this host's address and ``port`` to ``target`` that holds every byte
        ``delay`` seconds each way (delay_relay.py); returns once it accepts."""
        relay = self.start(sys.executable, str(DELAY_RELAY), self.address, str(port),
                           target[0], str(target[1]), str(delay))  # fmt: skip
        assert relay.stdout is not None
        ready, _, _ = select.select([relay.stdout], [], [], STARTUP_TIMEOUT)
        line = relay.stdout.readline() if ready else ""
        if line != f"listening on {self.address}:{port}\n":
            raise NetnsError(f"the delay relay on {self.role} did not start: {line!r}")


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    with LOCK_PATH.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _free_subnets() -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Network]:
    """The first pair of /24s in 10.77.0.0/16 that no route of this machine touches."""
    routes = [
        ipaddress.ip_network(route["dst"], strict=False)
        for route in json.loads(run("ip", "-j", "-4", "route", "show", "table", "all"))
        if route["dst"] != "default"
    ]
    for pair in SUBNET_PAIRS:
        users = ipaddress.IPv4Network(f"10.77.{2 * pair}.0/24")
        backbone = ipaddress.IPv4Network(f"10.77.{2 * pair + 1}.0/24")
        if not any(route.overlaps(users) or route.overlaps(backbone) for route in routes):
            return users, backbone
    raise NetnsError("no free pair of subnets left in 10.77.0.0/16")


def namespaces() -> list[str]:
    # Lines are "NAME" or "NAME (id: N)".
    return [line.split()[0] for line in run("ip", "netns", "list").splitlines() if line]


def links() -> set[str]:
    """The names of the test process's network interfaces."""
    return {link["ifname"] for link in json.loads(run("ip", "-j", "link", "show"))}


def _record(errors: list[str], *command: str) -> None:
    try:
        run(*command)
    except NetnsError as error:
        errors.append(str(error))


def _remove_namespace(namespace: str) -> None:
    """Kill what runs in ``namespace``, then delete it (a process would keep it alive)."""
    for pid in run("ip", "netns", "pids", namespace).split():
        _kill(int(pid))
    run("ip", "netns", "del", namespace)


def _kill(pid: int) -> None:
    """SIGKILL through a pidfd (no other process can have taken the PID), and wait for the exit."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        # Readable once the process has exited, whoever's child it is.
        ready, _, _ = select.select([pidfd], [], [], COMMAND_TIMEOUT)
        if not ready:
            raise NetnsError(f"process {pid} did not exit after SIGKILL")
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)


def _sweep_dead_runs() -> None:
    """Remove what runs that died without closing left: their namespaces and veths."""
    present = links()
    for namespace in namespaces():
        match = _OUR_NAMESPACE.fullmatch(namespace)
        if match is None or _alive(int(match[1])):
            continue
        for kind in "ub":
            if (link := f"ec{match[2]}{kind}") in present:
                run("ip", "link", "del", link)
                present.discard(link)
        _remove_namespace(namespace)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
