"""An implementation without TLS refuses --tls-cert in one line instead of serving plain text."""

from __future__ import annotations

from pathlib import Path

import pytest

from certs import make_certificate
from echochat.registry import parse_configuration
from servers import IMPLS, echochat


@pytest.fixture(scope="module", params=[c for c in IMPLS if not parse_configuration(c)[0].tls])
def impl(request: pytest.FixtureRequest) -> str:
    """Every implementation that offers no TLS (test_tls.py holds the others)."""
    return str(request.param)


def test_tls_options_are_refused_in_one_line(impl: str, tmp_path: Path) -> None:
    certificate = make_certificate(tmp_path)
    implementation, loop = parse_configuration(impl)
    refused = echochat(
        "serve", "--impl", implementation.name, "--loop", loop, "--port", "0",
        "--tls-cert", str(certificate.cert), "--tls-key", str(certificate.key),
    )  # fmt: skip
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert f"--impl {implementation.name} has no TLS" in refused.stderr
    assert "Traceback" not in refused.stderr
