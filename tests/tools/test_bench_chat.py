"""The chat fan-out and idle benchmarks, quick, and the fan-out's verifier on bad input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy
import pytest
from matplotlib.patches import Rectangle

from echochat.bench.chat import ChatResult, DeliveryError, Verifier, run_chat
from echochat.bench.idle import run_idle
from echochat.bench.matrix import fanout_figure
from echochat.launch import ServerUnderTest

FIGURES = Path(__file__).resolve().parents[2] / "docs" / "figures"
QUICK = ["trio", "asyncio"]


@pytest.mark.parametrize("impl", QUICK)
def test_fan_out_delivers_every_message_once_and_in_order(impl: str) -> None:
    with ServerUnderTest.echochat(impl, "chat") as server:
        # run_chat raises DeliveryError itself on any loss, duplicate or reordering.
        result = run_chat(server, members=20, senders=2, messages=200, duration=10.0)
    assert result.messages == 200
    assert result.deliveries == 200 * 19
    assert result.deliveries_per_s == pytest.approx(result.deliveries / result.duration_s, 0.01)
    assert 0 < result.p50_ms <= result.p99_ms <= result.max_ms < 10_000
    # psutil reads CPU in ticks of 10 ms: a run this short may read none.
    assert 0 <= result.server_cpu_s < 10
    assert 10 < result.server_rss_before_mib <= result.server_rss_peak_mib < 500
    assert 0 < result.client_cpu_share < 2
    assert json.loads(json.dumps(dataclasses.asdict(result)))["server"] == impl


@pytest.mark.parametrize("impl", QUICK)
def test_idle_clients_cost_some_memory_each(impl: str) -> None:
    with ServerUnderTest.echochat(impl, "chat") as server:
        result = run_idle(server, clients=50)
    assert result.clients == 50
    assert 0 < result.connect_s < 10
    assert 10 < result.rss_before_mib <= result.rss_after_mib < 500
    # Each client costs something, but far below a MiB.
    assert 0 <= result.per_client_kib < 1024
    assert json.loads(json.dumps(dataclasses.asdict(result)))["clients"] == 50


def line(sender: int, seq: int, nick: int | None = None) -> bytes:
    """A relayed message as echochat sends it (the nick is the sender's unless forged)."""
    nick = sender if nick is None else nick
    return f":m{nick}!u@127.0.0.1 PRIVMSG #bench :{sender} {seq} 100.000000\r\n".encode()


def posted(verifier: Verifier, **messages: int) -> Verifier:
    """Announce ``s0=2, s1=3``: two messages posted by sender 0, three by sender 1."""
    for name, count in messages.items():
        for _ in range(count):
            verifier.posted(int(name[1:]))
    return verifier


def test_verifier_accepts_interleaved_senders_split_anywhere() -> None:
    verifier = posted(Verifier(members=3, senders=2), s0=2, s1=2)
    stream = line(1, 0) + line(0, 0) + line(0, 1) + line(1, 1)
    for start in range(0, len(stream), 7):  # in pieces that cut lines anywhere
        verifier.receive(2, stream[start : start + 7], now=100.5)
    verifier.receive(0, line(1, 0) + line(1, 1), now=100.5)
    verifier.receive(1, line(0, 0) + line(0, 1), now=100.5)
    verifier.finish()
    assert verifier.deliveries == 8
    assert verifier.complete == [2, 2]
    assert set(verifier.latencies) == {0.5}


@pytest.mark.parametrize(
    ("stream", "error"),
    [
        (line(0, 0) + line(0, 0), r"m2 got m0's #0 when #1 was due: duplicated or reordered"),
        (line(0, 1) + line(0, 0), r"m2 got m0's #1 when #0 was due: lost or reordered"),
        (line(0, 0, nick=1), r"m2 got message 0 #0 from m1"),
        (line(0, 5), r"m2 got m0's #5, which was never posted"),
        (line(2, 0), r"m2 got m2's #0, which was never posted"),
        (b":m1!u@127.0.0.1 QUIT :SendQ exceeded\r\n", r"m2 got an unexpected line"),
    ],
    ids=["duplicate", "reordered", "forged-prefix", "never-posted", "unknown-sender", "quit"],
)
def test_verifier_rejects_a_bad_delivery_at_once(stream: bytes, error: str) -> None:
    verifier = posted(Verifier(members=3, senders=2), s0=2, s1=1)
    with pytest.raises(DeliveryError, match=error):
        verifier.receive(2, stream, now=100.5)


def test_verifier_rejects_own_message() -> None:
    verifier = posted(Verifier(members=3, senders=2), s0=1)
    with pytest.raises(DeliveryError, match="m0 got its own message #0 back"):
        verifier.receive(0, line(0, 0), now=100.5)


def test_verifier_finds_messages_lost_at_the_end() -> None:
    verifier = posted(Verifier(members=3, senders=2), s0=2)
    verifier.receive(1, line(0, 0) + line(0, 1), now=100.5)
    verifier.receive(2, line(0, 0), now=100.5)
    assert verifier.complete == [1, 0]
    with pytest.raises(
        DeliveryError, match=r"m2 got m0's messages up to #0 of #0\.\.#1: 1 missing"
    ):
        verifier.finish()


def test_verifier_wants_each_stalled_client_to_leave_once_and_nothing_else() -> None:
    quit_line = b":stalled0!u@127.0.0.1 QUIT :SendQ exceeded\r\n"
    heard_once = posted(Verifier(members=2, senders=1, stalled=1), s0=1)
    heard_once.receive(1, line(0, 0) + quit_line, 100.0)
    heard_once.receive(0, quit_line, 100.0)
    heard_once.finish()
    never_heard = posted(Verifier(members=2, senders=1, stalled=1), s0=1)
    never_heard.receive(1, line(0, 0) + quit_line, 100.0)
    with pytest.raises(DeliveryError, match="m0 heard stalled0 leave 0 times"):
        never_heard.finish()
    other_quit = Verifier(members=2, senders=1, stalled=1)
    with pytest.raises(DeliveryError, match="unexpected line"):
        other_quit.receive(0, b":stalled0!u@127.0.0.1 QUIT :Ping timeout\r\n", 100.0)


@pytest.mark.parametrize("sizes", [(100,), (100, 500, 1000)])
def test_the_fan_out_figure_draws_bars_for_one_channel_size_and_lines_for_several(
    sizes: tuple[int, ...],
) -> None:
    """From the saved full run (docs/figures/bench.json), all of it or one size of it."""
    saved = json.loads((FIGURES / "bench.json").read_text())["chat"]
    chat = [ChatResult(**row) for row in saved if row["members"] in sizes]
    servers = {result.server for result in chat}
    (axes,) = fanout_figure(chat).axes
    # The lines of servers (the target's line aside): one each, or none beside bars.
    series = [line for line in axes.get_lines() if str(line.get_label()) in servers]
    if len(sizes) == 1:
        bars = [patch for patch in axes.patches if isinstance(patch, Rectangle)]
        assert len(bars) == len(axes.patches) == len(servers)
        assert series == []
        heights = sorted(bar.get_height() for bar in bars)
        assert heights == sorted(result.deliveries_per_s for result in chat)
    else:
        assert len(axes.patches) == 0
        assert len(series) == len(servers)
        assert all(len(numpy.asarray(line.get_xdata())) == len(sizes) for line in series)
