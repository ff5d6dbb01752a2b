"""Throwaway TLS certificates for the tests, made with the openssl command (Debian's openssl)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for localhost and 127.0.0.1, and its key, as PEM files."""

    cert: Path
    key: Path

    def options(self) -> tuple[str, ...]:
        """``echochat serve``'s options to serve TLS with it."""
        return ("--tls-cert", str(self.cert), "--tls-key", str(self.key))


def make_certificate(directory: Path, name: str = "server") -> Certificate:
    """A new P-256 key and a certificate valid for a day, with localhost and 127.0.0.1 as SANs.

    Clients check the name against the subjectAltName, not the CN, so both are
    there (openssl s_client -verify_hostname localhost, Python's ssl module).
    """
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    command = ["openssl", "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=localhost",
               "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
               "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
               "-keyout", str(key), "-out", str(cert)]  # fmt: skip
    subprocess.run(
        command,
        check=True,
        capture_output=True,
        timeout=30,
    )
    return Certificate(cert, key)


def encrypt_key(key: Path, encrypted: Path, passphrase: str) -> Path:
    """A copy of ``key`` encrypted with AES-256 under ``passphrase``."""
    command = ["openssl", "pkey", "-in", str(key), "-aes256", "-passout", f"pass:{passphrase}",
               "-out", str(encrypted)]  # fmt: skip
    subprocess.run(
        command,
        check=True,
        capture_output=True,
        timeout=30,
    )
    return encrypted
