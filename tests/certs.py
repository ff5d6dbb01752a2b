"""TLS certificates for the tests, made with the openssl command (Debian's openssl)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from echochat.launch import throwaway_certificate


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for localhost and 127.0.0.1, and its key, as PEM files."""

    cert: Path
    key: Path

    def options(self) -> tuple[str, ...]:
        """``echochat serve``'s options to serve TLS with it."""
        return ("--tls-cert", str(self.cert), "--tls-key", str(self.key))


def make_certificate(directory: Path, name: str = "server") -> Certificate:
    """A new certificate for localhost and 127.0.0.1 and its key (launch.throwaway_certificate)."""
    return Certificate(*throwaway_certificate(directory, name))


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
