"""The redis-subscriber experiment, quick: stalled subscribers of redis-py and coredis against a
private Redis, with its default pubsub limit and a small one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from echochat.experiments import Settings
from echochat.experiments.common import MiB
from echochat.experiments.redis_subscriber import LIMITS, run
from echochat.experiments.redis_subscriber_probe import KINDS

KiB = 1024


# Eight subscriber processes, each importing its library, and eight Redis servers.
@pytest.mark.timeout(120)
def test_a_subscriber_that_stalls_is_cut_by_a_small_limit_and_not_by_the_default(
    tmp_path: Path,
) -> None:
    settings = Settings(quick=True, out=tmp_path)
    report = run(settings)
    print(report.table())
    published = report.raw["plan"]["count"]
    runs: dict[tuple[str, str, str], dict[str, Any]] = {
        (result["kind"], result["stall"], result["limit"]): result for result in report.raw["runs"]
    }
    assert set(runs) >= {
        (kind, stall, limit)
        for kind in ("redis-py", "coredis")
        for stall in ("await", "block")
        for limit in LIMITS
    }
    for result in runs.values():
        assert result["published"] == published
        # One channel, one publisher: whatever arrives, arrives in order.
        assert result["outcome"]["backwards"] == 0, result["outcome"]
        assert result["samples"], "the watcher sampled nothing"

    for kind in ("redis-py", "coredis"):
        for stall in ("await", "block"):
            # 3 MiB published: under the default 32 MiB, so nothing is cut or lost.
            default = runs[kind, stall, "default"]
            assert default["cuts"] == [], default["cuts"]
            assert default["outcome"]["received"] == published, (kind, stall)
        # Blocked, nobody reads: Redis cuts the subscriber at the small limit (1 MiB) and
        # the messages published after the cut are lost to it.
        blocked = runs[kind, "block", "small"]
        assert blocked["cuts"], (kind, "no cut")
        assert all(cut["omem"] >= MiB for cut in blocked["cuts"]), blocked["cuts"]
        assert blocked["outcome"]["received"] < published
        assert blocked["published_to_nobody"] > 0 or blocked["reconnects"] > 0

    # coredis reads in a task of its own while the application awaits: Redis holds
    # nothing for it, the subscriber's own memory holds the messages.
    coredis = runs["coredis", "await", "default"]
    assert max(sample["omem"] for sample in coredis["samples"]) < 512 * KiB
    rss_growth = max(sample["rss"] for sample in coredis["samples"]) - coredis["rss_baseline"]
    assert rss_growth > 2 * MiB
    # redis-py does not read until asked: Redis holds what the kernel does not.
    redis_py = runs["redis-py", "await", "default"]
    assert max(sample["omem"] for sample in redis_py["samples"]) > MiB

    if "echochat" not in KINDS:
        # The slot for echochat's own link is named, not silently left out.
        assert any("echochat: its Redis link is not written yet" in n for n in report.notes)
    assert (tmp_path / "redis-subscriber.png").stat().st_size > 0
    saved = json.loads(report.save_json(tmp_path, settings).read_text())
    assert saved["rows"] == json.loads(json.dumps(report.rows))
