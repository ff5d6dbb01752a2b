"""The ``echochat`` command: run one service with one implementation."""

from __future__ import annotations

import argparse
import getpass
import importlib
import importlib.util
import logging
import re
import secrets
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from echochat.core import Limits, LinkRefusedError, __version__
from echochat.core.limits import (
    DEFAULT_FLOOD_BURST,
    DEFAULT_FLOOD_RATE,
    DEFAULT_MAX_CLIENTS,
    DEFAULT_MAX_LINE,
    DEFAULT_MAX_PER_IP,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    DEFAULT_RECVQ,
    DEFAULT_REGISTRATION_TIMEOUT,
    DEFAULT_SENDQ,
    DEFAULT_SERVER_NAME,
    DEFAULT_SPLIT_AFTER,
    HEARTBEAT,
)
from echochat.core.passwords import SALT_BYTES, PasswordHash, hash_password
from echochat.core.redislink import RedisAddress, parse_redis_url
from echochat.experiments import DEFAULT_OUT, EXPERIMENTS, Settings
from echochat.options import (
    MAX_BACKLOG,
    RESERVED_FILES,
    ServerOptions,
    allow_open_files,
    system_backlog_limit,
)
from echochat.registry import BY_NAME, MAIN
from echochat.tls import TLSConfigError, server_context

DEFAULT_PORTS = {"chat": 6667, "echo": 7007}
BENCH_KINDS = ["compare", "matrix", "echo", "chat", "idle", "echo-cpu", "storm", "layers",
               "versions", "network"]  # fmt: skip
# What 'bench versions' compares unless --impls says otherwise.
DEFAULT_VERSIONS_IMPLS = tuple(implementation.name for implementation in MAIN)

log = logging.getLogger("echochat")


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show (None)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="echochat",
        description=(
            "A chat server (an IRC subset) and an echo server, each written with asyncio "
            "Streams, trio and anyio on one sans-I/O core, for comparing the three."
        ),
        epilog="Run 'echochat serve --help' for the server's options.",
    )
    parser.add_argument("--version", action="version", version=f"echochat {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run a chat or echo server",
        description=(
            "Run one service with one implementation. Once the socket listens, print exactly "
            "one line to stdout, 'listening on HOST:PORT'; logs go to stderr. SIGINT and "
            "SIGTERM shut down gracefully (chat clients get 'ERROR :Server shutting down')."
        ),
        formatter_class=_DefaultsFormatter,
    )
    serve.add_argument(
        "--impl",
        choices=list(BY_NAME),
        default="asyncio",
        help=(
            "the I/O framework: asyncio Streams, trio, or anyio on its asyncio or trio backend. "
            "Teaching variants, to measure and not to use: asyncio-nodrain (asyncio Streams "
            "with drain() left out, the common mistake), asyncio-protocol (asyncio's "
            "Transport/Protocol layer with pause_writing()/resume_writing()) and "
            "asyncio-sockets (the loop's sock_recv_into()/sock_sendall() on bare sockets)"
        ),
    )
    serve.add_argument(
        "--loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="event loop for the implementations that run on asyncio (uvloop: optional extra)",
    )
    serve.add_argument(
        "--service",
        choices=["chat", "echo"],
        default="chat",
        help="chat: IRC subset (connect with irssi, weechat or nc); echo: bytes back unchanged",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument(
        "--port",
        type=_port,
        default=None,
        help="TCP port; 0 picks a free one (default: 6667 for chat, 7007 for echo)",
    )
    serve.add_argument(
        "--tls-cert",
        default=None,
        metavar="FILE",
        help="serve TLS (1.2 or later) on --port, with this PEM certificate (chain); needs "
        "--tls-key. Connect with: irssi -c HOST -p PORT -tls, or openssl s_client",
    )
    serve.add_argument(
        "--tls-key",
        default=None,
        metavar="FILE",
        help="the PEM private key of --tls-cert (unencrypted: the server cannot ask for a "
        "pass phrase)",
    )
    serve.add_argument(
        "--tls-port",
        type=_port,
        default=None,
        metavar="N",
        help="serve TLS on this port beside plain TCP on --port (IRC's is 6697; 0 picks a "
        "free one); needs --tls-cert and --tls-key",
    )
    serve.add_argument(
        "--max-line",
        type=_positive,
        default=DEFAULT_MAX_LINE,
        help="chat: longest accepted line in bytes, CR LF included; longer lines get 417",
    )
    serve.add_argument(
        "--sendq",
        type=_positive,
        default=DEFAULT_SENDQ,
        help="chat: bytes queued for one client before it is disconnected (SendQ exceeded)",
    )
    serve.add_argument(
        "--max-clients",
        type=_positive,
        default=DEFAULT_MAX_CLIENTS,
        help="connections served at once; more are refused ('Server is full' for chat). "
        f"Each takes an open file: the server needs MAX_CLIENTS + {RESERVED_FILES} and "
        "refuses to start if the hard limit (ulimit -Hn) is lower",
    )
    limit = system_backlog_limit()
    serve.add_argument(
        "--backlog",
        type=_backlog,
        default=None,  # The system's maximum, which its help states.
        metavar="N",
        help="connections the kernel queues for the server to accept (listen(2)'s backlog); "
        "a burst of connections beyond it waits or is refused by the kernel. "
        "Default: the system's maximum"
        + ("" if limit is None else f" (net.core.somaxconn, {limit} here)"),
    )
    serve.add_argument(
        "--server-name",
        default=DEFAULT_SERVER_NAME,
        help="chat: the name numerics and PONG come from; on a network (--redis) it names "
        "this server and must differ from every other server's",
    )
    serve.add_argument(
        "--redis",
        type=_redis_url,
        default=None,
        metavar="URL",
        help="chat: join a network of echochat servers (any implementations) that share "
        "this Redis, redis://HOST:PORT or unix:///PATH: channels, private messages and nicks "
        "then span every server. An unreachable Redis is retried while this server serves "
        "its own users (docs/scale-out.md)",
    )
    serve.add_argument(
        "--split-after",
        type=_split_after,
        default=DEFAULT_SPLIT_AFTER,
        metavar="SECONDS",
        help="chat, with --redis: a server of the network not heard from for this long is "
        "split off, its users quit with '*.net *.split' (every server sends a heartbeat "
        f"each {HEARTBEAT:g} s)",
    )
    serve.add_argument(
        "--max-per-ip",
        type=_at_least_zero,
        default=DEFAULT_MAX_PER_IP,
        help="chat: connections at once from one address; more get 'ERROR :Closing link "
        "(Too many connections from your IP)'. 0: no limit",
    )
    serve.add_argument(
        "--registration-timeout",
        type=_seconds,
        default=DEFAULT_REGISTRATION_TIMEOUT,
        help="chat: seconds to complete NICK and USER, else 'ERROR :Closing link "
        "(Registration timeout)'. 0: no limit",
    )
    serve.add_argument(
        "--ping-interval",
        type=_seconds,
        default=DEFAULT_PING_INTERVAL,
        help="chat: after this many seconds without a line from a client, send it "
        "'PING :SERVER-NAME'. 0: no keepalive",
    )
    serve.add_argument(
        "--ping-timeout",
        type=_seconds,
        default=DEFAULT_PING_TIMEOUT,
        help="chat: seconds to answer that PING (any line will do), else "
        "'ERROR :Closing link (Ping timeout: N seconds)'",
    )
    serve.add_argument(
        "--flood-burst",
        type=_positive,
        default=DEFAULT_FLOOD_BURST,
        help="chat: lines a client may send at once before flood control delays them",
    )
    serve.add_argument(
        "--flood-rate",
        type=_rate,
        default=DEFAULT_FLOOD_RATE,
        help="chat: lines per second a client may send after its burst; faster lines wait "
        "(nothing is dropped). 0: no flood control",
    )
    serve.add_argument(
        "--recvq",
        type=_positive,
        default=DEFAULT_RECVQ,
        help="chat: bytes of delayed lines one client may have waiting; more get "
        "'ERROR :Closing link (Excess Flood)'",
    )
    serve.add_argument(
        "--send-buffer",
        type=_positive,
        default=None,
        metavar="BYTES",
        help="chat: the kernel's send buffer per connection (SO_SNDBUF; Linux doubles it). "
        "Default: the kernel's autotuning, which lets a client that does not read hold "
        "megabytes in the kernel before its SendQ fills",
    )
    serve.add_argument(
        "--motd",
        type=Path,
        default=None,
        metavar="FILE",
        help="chat: the message of the day, read from FILE (UTF-8) at start. Default: 422",
    )
    serve.add_argument(
        "--password-hash",
        type=_password_hash,
        default=None,
        metavar="HASH",
        help="chat: clients must send PASS with this password before registering; HASH is "
        "what 'echochat hash-password' prints (never the password itself)",
    )
    serve.add_argument(
        "--oper",
        type=_oper,
        action="append",
        default=[],
        metavar="NAME:HASH",
        help="chat: a server operator, who becomes one with 'OPER NAME <password>'; HASH "
        "from 'echochat hash-password'. Repeatable",
    )
    serve.add_argument(
        "--inject-fault",
        metavar="TEXT",
        default=None,
        help="for tests only: a chat connection whose input contains TEXT raises an "
        "exception inside the server, to show that only that connection is closed",
    )
    serve.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="how much to log to stderr",
    )
    commands.add_parser(
        "hash-password",
        help="print the hash of a password, for --password-hash and --oper",
        description=(
            "Read a password and print its salted scrypt hash. The password is read from a "
            "prompt that does not echo it, or, when standard input is not a terminal (a "
            "script), from its first line. Never from the command line, where other users "
            "and the shell history could read it."
        ),
    )
    experiment = commands.add_parser(
        "experiment",
        help="measure backpressure, memory, fairness and errors across implementations",
        description=(
            "Run one experiment (or all) over every relevant implementation side by side, on "
            "127.0.0.1. Prints a table and writes NAME.json (raw figures, with the machine) "
            "and NAME.png into --out. Progress goes to stderr."
        ),
        formatter_class=_DefaultsFormatter,
    )
    experiment.add_argument(
        "name",
        choices=[*EXPERIMENTS, "all"],
        help="which experiment; redis-subscriber compares Redis client libraries (redis-py, "
        "coredis) as subscribers that stall, against a private redis-server",
    )
    experiment.add_argument(
        "--quick", action="store_true", help="a short run (seconds), as the tests do"
    )
    experiment.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="directory for the JSON and PNG files"
    )
    demo = commands.add_parser(
        "demo",
        help="watch every implementation with a fast and a stalled reader (make demo)",
        description=(
            "Start every implementation's chat server, flood a channel on each, and show live "
            "each server's memory and what it holds for a member that never reads, until the "
            "SendQ drops it (or, without drain(), never); then one verdict per implementation."
        ),
        formatter_class=_DefaultsFormatter,
    )
    demo.add_argument("--seconds", type=_positive_seconds, default=20.0, help="how long to flood")
    _add_bench_parser(commands)
    return parser


def _add_bench_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = commands.add_parser(
        "bench",
        help="benchmark the implementations side by side (make compare, make bench)",
        description=(
            "Load generators that run in this process, apart from the servers, against "
            "127.0.0.1 only, bounded in time and count. 'compare' runs the shared contract "
            "suite and a quick matrix; 'matrix' the full one. 'versions --against PATH_OR_REF' "
            "compares this checkout's servers with another checkout's, before and after a "
            "change: echo at 1 KiB and 100 KiB and chat fan-out, on every implementation of "
            "--impls, both trees' servers alternating in --rounds rounds; it prints one row per "
            "implementation and load (medians, this/base per round with its lowest and "
            "highest, server CPU per message, and a verdict: within 10 %, slower by X %, "
            "faster by X %, or within noise when the rounds disagree) and writes "
            "build/versions/versions.json. With the defaults it takes about 5 minutes."
        ),
        formatter_class=_DefaultsFormatter,
    )
    bench.add_argument(
        "kind",
        choices=[
            "compare",
            "matrix",
            "echo",
            "chat",
            "idle",
            "echo-cpu",
            "storm",
            "layers",
            "versions",
            "tls",
            "network",
        ],
        help="compare: contract suite + quick matrix; matrix: every implementation and load; "
        "echo/chat/idle: one load against one implementation; echo-cpu: asyncio's echo beside "
        "its minimal server, warmed or cold, with glibc's default mmap threshold or a fixed one; "
        "storm: every implementation under a connect/close storm, with the PING round trips "
        "of clients already connected; layers: asyncio's socket API, Streams and Protocol "
        "minimal servers on asyncio and uvloop, echo and an accept storm; versions: this "
        "checkout against --against, echo and fan-out on both, interleaved; tls: echo over "
        "TLS beside plain TCP, every implementation that serves TLS and its minimal server "
        "(the C client with OpenSSL); network: the chat fan-out on one server alone, one "
        "server on Redis (the hop alone) and two servers on one Redis with the members split "
        "between them, interleaved: deliveries/s, latency and each process's CPU per "
        "delivery (needs redis-server; about 1.5 minutes with the defaults)",
    )
    bench.add_argument(
        "--impl",
        choices=list(BY_NAME),
        default="asyncio",
        help="echo/chat/idle/network: the implementation to load (as for 'serve --impl')",
    )
    bench.add_argument(
        "--loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="echo/chat/idle/network: the event loop, for the implementations that run on asyncio",
    )
    bench.add_argument(
        "--quick",
        action="store_true",
        help="matrix: the short plan (no TLS rows); storm: 1 s per server; layers: one round; "
        "tls: one round of 0.5 s",
    )
    bench.add_argument(
        "--size",
        type=_positive,
        default=None,
        help="echo: message bytes (default 1024); echo-cpu: the same (default 102400)",
    )
    bench.add_argument(
        "--rounds",
        type=_positive,
        default=5,
        help="echo-cpu, layers, versions, tls, network: interleaved rounds, each with fresh "
        "servers (network: and a fresh Redis)",
    )
    bench.add_argument(
        "--strace",
        action="store_true",
        help="echo-cpu: also count the servers' memory system calls per message (strace -c)",
    )
    bench.add_argument("--concurrency", type=_positive, default=10, help="echo: connections")
    bench.add_argument(
        "--duration",
        type=_positive_seconds,
        default=None,
        help="seconds per run. echo, echo-cpu: each run (default 3); versions: each echo "
        "window and each fan-out's posting (default 2); network: each fan-out's posting "
        "(default 3)",
    )
    bench.add_argument(
        "--client",
        choices=["auto", "c", "python"],
        default="auto",
        help="echo load generator: c (epoll_client.c, compiled with gcc; auto uses it when gcc "
        "is there) or python (echo.py, the one to read; at 95-99 %% of a core it limits the "
        "fastest servers)",
    )
    bench.add_argument(
        "--contract-filter",
        metavar="EXPR",
        default=None,
        help="compare: run only the contract tests pytest's -k EXPR selects (a quick check)",
    )
    bench.add_argument(
        "--contract-only", action="store_true", help="compare: the contract suite, no matrix"
    )
    bench.add_argument(
        "--members",
        type=_at_least_two,
        default=100,
        help="chat, versions, network: the channel's members",
    )
    bench.add_argument(
        "--senders",
        type=_positive,
        default=None,
        help="network: members who post, fewer than --members (default: as 'bench chat')",
    )
    bench.add_argument(
        "--window",
        type=_positive,
        default=None,
        help="network: messages each sender may have on their way, so that the servers' own "
        "speed paces the senders (a closed loop); default: as 'bench chat'",
    )
    bench.add_argument(
        "--redis-transport",
        choices=["tcp", "unix"],
        default="tcp",
        help="network: how the servers reach Redis, 127.0.0.1 or a unix socket",
    )
    bench.add_argument("--clients", type=_positive, default=1000, help="idle: clients")
    bench.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where JSON, PNG and Markdown go (default: build/compare for compare, "
        "build/bench for matrix, build for storm and network, build/layers for layers, "
        "build/versions for versions, build/tls for tls)",
    )
    bench.add_argument(
        "--against",
        metavar="PATH_OR_REF",
        default=None,
        help="versions: the other checkout (base). A directory: a checkout of echochat with "
        "its own venv (DIR/.venv, or --against-python). Otherwise a git ref of this "
        "repository (a commit, branch or tag), exported into build/checkouts/COMMIT with a "
        "venv installed there by pip, with the versions of trio, anyio etc. installed here "
        "(about a minute, shown as it goes; later runs reuse it). Its servers run with its "
        "own Python; options its 'serve' lacks are detected from its --help, and loads or "
        "implementations it cannot run are left out with a note",
    )
    bench.add_argument(
        "--against-python",
        type=Path,
        metavar="PYTHON",
        default=None,
        help="versions: the Python that runs the --against directory's servers "
        "(default: DIR/.venv/bin/python); it must import echochat from that directory",
    )
    bench.add_argument(
        "--impls",
        type=_impl_list,
        default=None,
        metavar="IMPL,...",
        help="versions: the implementations to compare, comma-separated (default: "
        f"{','.join(DEFAULT_VERSIONS_IMPLS)}); network: the two servers of the two-server "
        "configuration, ONE,TWO, e.g. asyncio,trio (default: --impl twice), the one-server "
        "configurations running ONE; --loop applies to those that run on asyncio",
    )
    bench.add_argument(
        "--serve-option",
        action="append",
        default=None,
        metavar="OPTION",
        help="versions: an option for this checkout's servers only (repeatable; write "
        "--serve-option=--send-buffer=65536), to measure what it changes against --against . "
        "without it",
    )
    bench.add_argument(
        "--docs",
        action="store_true",
        help="matrix: write the figures into docs/figures and the table into "
        "docs/performance.md (what 'make bench' does)",
    )


def _impl_list(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in BY_NAME]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"must name implementations among {', '.join(BY_NAME)}, not {text!r}"
        )
    return names


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None


def _positive(text: str) -> int:
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _at_least_two(text: str) -> int:
    value = _whole_number(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2, not {value}")
    return value


def _backlog(text: str) -> int:
    value = _whole_number(text)
    if not 1 <= value <= MAX_BACKLOG:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_BACKLOG}, not {value}")
    return value


def _at_least_zero(text: str) -> int:
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _seconds(text: str) -> float:
    value = _number(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more, not {text}")
    return value


def _positive_seconds(text: str) -> float:
    value = _number(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text}")
    return value


def _rate(text: str) -> float:
    value = _number(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(
            f"must be a number of lines per second, 0 or more, not {text}"
        )
    return value


def _split_after(text: str) -> float:
    seconds = _seconds(text)
    if seconds < 3 * HEARTBEAT:
        raise argparse.ArgumentTypeError(
            f"at least {3 * HEARTBEAT:g} s (three heartbeats), not {text}"
        )
    return seconds


def _redis_url(text: str) -> RedisAddress:
    try:
        return parse_redis_url(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _password_hash(text: str) -> PasswordHash:
    try:
        return PasswordHash.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _oper(text: str) -> tuple[str, PasswordHash]:
    name, colon, encoded = text.partition(":")
    if not colon or not name:
        raise argparse.ArgumentTypeError("must be NAME:HASH")
    return name, _password_hash(encoded)


def hash_password_command() -> int:
    """``echochat hash-password``: one password in, its hash out."""
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("echochat: the passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not password:
        print("echochat: empty password", file=sys.stderr)
        return 1
    print(hash_password(password, secrets.token_bytes(SALT_BYTES)))
    return 0


def _read_motd(path: Path) -> tuple[str, ...]:
    return tuple(path.read_text(encoding="utf-8").splitlines())


def _port(text: str) -> int:
    value = _whole_number(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 0 to 65535, not {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "experiment":
        return run_experiments(args.name, Settings(quick=args.quick, out=args.out))
    if args.command == "demo":
        from echochat.demo import run_demo  # noqa: PLC0415  (optional extras)

        run_demo(args.seconds)
        return 0
    if args.command == "bench":
        return bench(parser, args)
    if args.command == "hash-password":
        return hash_password_command()
    if args.command != "serve":
        parser.print_help(sys.stderr)
        return 2
    return serve(parser, args)


def serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``echochat serve``: check the options, then run the server until a signal stops it."""
    try:
        limits = _limits_from(args)
    except (ValueError, OSError) as error:
        parser.error(_option_names(str(error)))
    implementation = BY_NAME[args.impl]
    check_loop(parser, args.impl, args.loop)
    port = DEFAULT_PORTS[args.service] if args.port is None else args.port
    check_tls_options(parser, args, port)
    check_redis_option(parser, args)
    if args.tls_cert is not None and not implementation.tls:
        parser.error(
            f"--impl {args.impl} has no TLS: asyncio's loop.sock_*() methods refuse ssl "
            "sockets, so TLS there would have to be home-made; use --impl asyncio"
        )
    try:
        tls = None if args.tls_cert is None else server_context(args.tls_cert, args.tls_key)
    except TLSConfigError as error:
        # One line, before anything listens: which file, and what is wrong with it.
        print(f"echochat: {error}", file=sys.stderr)
        return 2
    options = ServerOptions(
        service=args.service,
        host=args.host,
        port=port,
        limits=limits,
        loop=args.loop,
        backend=implementation.backend,
        drain=implementation.drain,
        inject_fault=None if args.inject_fault is None else args.inject_fault.encode(),
        send_buffer=args.send_buffer,
        backlog=MAX_BACKLOG if args.backlog is None else args.backlog,
        tls=tls,
        tls_port=args.tls_port,
        redis=args.redis,
    )
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    wanted = limits.max_clients + RESERVED_FILES
    if (allowed := allow_open_files(wanted)) < wanted:
        # Refused rather than warned about: a server that runs out of
        # descriptors stops accepting until some are free again.
        print(
            f"echochat: --max-clients {limits.max_clients} needs {wanted} open files "
            f"({RESERVED_FILES} for the server itself), but at most {allowed} are allowed, "
            f"so {max(allowed - RESERVED_FILES, 0)} clients fit: raise the limit "
            f"(ulimit -n {wanted} in the shell, LimitNOFILE={wanted} in a systemd unit) "
            "or lower --max-clients",
            file=sys.stderr,
        )
        return 2
    run: Callable[[ServerOptions], None] = importlib.import_module(
        implementation.adapter.server_module
    ).run
    # trio runs on its own loop; the anyio-trio backend too (--loop is for asyncio's).
    loop = args.loop if implementation.backend == "asyncio" else "trio"
    log.info("starting %s service with %s on %s's event loop", args.service, args.impl, loop)
    failed = refused = False
    try:
        run(options)
    except* OSError as group:
        # Typically the port is taken; say so in one line, not a traceback.
        where = f"{args.host}:{port}"
        if args.tls_port is not None:
            where += f" and {args.host}:{args.tls_port}"
        for failure in _leaves(group):
            print(f"echochat: cannot serve on {where}: {failure}", file=sys.stderr)
        failed = True
    except* LinkRefusedError as group:
        # Another live server has this name: refused, before serving anyone.
        for failure in _leaves(group):
            print(f"echochat: cannot join the network: {failure}", file=sys.stderr)
        refused = True
    except* KeyboardInterrupt:
        # Ctrl-C before the signal handlers were installed: nothing to clean up.
        failed = True
    if refused:
        return 2
    if failed:
        return 1
    log.info("stopped")
    return 0


def bench(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """`echochat bench`: options checked, then the load; a failure in one line, no traceback."""
    check_loop(parser, args.impl, args.loop)
    if (args.kind == "versions") != (args.against is not None):
        parser.error("--against goes with 'bench versions', which needs it")
    if args.kind == "idle":
        check_open_files(parser, "--clients", args.clients, args.clients + 64)
    if args.kind == "versions" and args.impls is None:
        args.impls = DEFAULT_VERSIONS_IMPLS
    if args.kind == "network":
        if args.impls is not None and len(args.impls) != 2:
            parser.error(f"--impls: network needs two implementations, ONE,TWO, not {args.impls}")
        if args.senders is not None and args.senders >= args.members:
            parser.error(f"--senders {args.senders} must be fewer than --members {args.members}")
    from echochat.bench.command import run_bench  # noqa: PLC0415  (optional extras)

    try:
        return run_bench(args)
    except (OSError, RuntimeError) as error:
        # A server that did not start or a load that could not run: say
        # what happened in the server's own words, without a traceback.
        print(f"echochat bench: {error}", file=sys.stderr)
        return 1


def check_loop(parser: argparse.ArgumentParser, impl: str, loop: str) -> None:
    """Refuse an event loop the implementation cannot run on, or one that is not installed."""
    if loop not in BY_NAME[impl].loops:
        parser.error(f"--loop {loop} needs an implementation on asyncio, not {impl}")
    if loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        parser.error("--loop uvloop needs uvloop: pip install 'echochat[uvloop]'")


def check_tls_options(parser: argparse.ArgumentParser, args: argparse.Namespace, port: int) -> None:
    """Refuse TLS options that do not make a whole: a certificate needs its key, and so on."""
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together: give both, or neither")
    if args.tls_port is not None and args.tls_cert is None:
        parser.error("--tls-port needs --tls-cert and --tls-key")
    if args.tls_port is not None and args.tls_port == port != 0:
        parser.error(f"--tls-port {port} is --port too: TLS and plain TCP need a port each")


def check_redis_option(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse --redis where it would mean nothing: an echo server has no network."""
    if args.redis is not None and args.service != "chat":
        parser.error("--redis joins chat servers into a network: it needs --service chat")


def check_open_files(parser: argparse.ArgumentParser, option: str, value: int, wanted: int) -> None:
    """Refuse a count that this process may not open that many files for."""
    if (allowed := allow_open_files(wanted)) < wanted:
        parser.error(
            f"{option} {value} needs about {wanted} open files, but this process may open "
            f"{allowed}; raise the limit (ulimit -n) or ask for fewer"
        )


def _option_names(message: str) -> str:
    """A message about a Limits field, with the field named as its command-line option."""
    for field_name in Limits.__dataclass_fields__:
        option = "--" + field_name.replace("_", "-")
        message = re.sub(rf"(?<![-\w]){field_name}\b", option, message)
    return message


def _limits_from(args: argparse.Namespace) -> Limits:
    """The chat limits of ``echochat serve``; reads the MOTD file (OSError if it cannot)."""
    return Limits(
        max_line=args.max_line,
        sendq=args.sendq,
        max_clients=args.max_clients,
        server_name=args.server_name,
        registration_timeout=args.registration_timeout,
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
        flood_burst=args.flood_burst,
        flood_rate=args.flood_rate,
        recvq=args.recvq,
        max_per_ip=args.max_per_ip,
        motd=None if args.motd is None else _read_motd(args.motd),
        password_hash=args.password_hash,
        opers=tuple(args.oper),
        split_after=args.split_after,
    )


def run_experiments(name: str, settings: Settings) -> int:
    for experiment in EXPERIMENTS if name == "all" else [name]:
        module = importlib.import_module(EXPERIMENTS[experiment])
        report = module.run(settings)
        print(report.table())
        print(f"raw figures: {report.save_json(settings.out, settings)}\n", flush=True)
    return 0


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions inside nested groups (trio's nurseries nest them)."""
    leaves: list[BaseException] = []
    for error in group.exceptions:
        leaves += _leaves(error) if isinstance(error, BaseExceptionGroup) else [error]
    return leaves


if __name__ == "__main__":
    sys.exit(main())
