"""Experiments that show backpressure on real sockets: ``echochat experiment NAME``.

Each experiment runs every relevant implementation side by side in one run on
127.0.0.1, prints a table, and writes a JSON of the raw figures and a PNG plot.
"""

from dataclasses import dataclass
from pathlib import Path

# Trying an experiment writes here; `make experiments` asks for docs/figures,
# so only it changes the figures the docs show.
DEFAULT_OUT = Path("build/experiments")


@dataclass(frozen=True, slots=True)
class Settings:
    """How to run an experiment: ``quick`` is the short run the tests use."""

    quick: bool = False
    out: Path = DEFAULT_OUT


# Experiment name -> module with ``run(settings: Settings) -> Report``.
EXPERIMENTS = {
    "memory": "echochat.experiments.memory",
    "errors": "echochat.experiments.errors",
    "fairness": "echochat.experiments.fairness",
    "slow-member": "echochat.experiments.slow_member",
    "cancel": "echochat.experiments.cancel",
    "cancel-tls": "echochat.experiments.cancel_tls",
    "sendq-burst": "echochat.experiments.sendq_burst",
    "tls": "echochat.experiments.tls",
    "redis-subscriber": "echochat.experiments.redis_subscriber",
}
