"""The server's TLS settings, built once from ``--tls-cert`` and ``--tls-key`` for every adapter.

Each adapter runs the handshake with its own framework's TLS (asyncio's SSL
transport, trio's SSLStream, anyio's TLSStream); what they share is the
standard library's ``ssl.SSLContext`` made here, so every implementation
offers the same protocol versions and refuses the same bad files.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import NoReturn


class TLSConfigError(Exception):
    """A certificate or key the server cannot use; the message names the option and the file."""


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """A server-side context that speaks TLS 1.2 or later with ``cert`` and its ``key``.

    Raises TLSConfigError with one line that says which file is wrong and why.
    """
    # load_cert_chain() raises FileNotFoundError or PermissionError without a
    # filename (only errno and strerror), so it cannot say which of the two
    # files is missing: open each first.
    for option, path in (("--tls-cert", cert), ("--tls-key", key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as error:
            raise TLSConfigError(f"{option} {path}: {error.strerror}") from None
    # PROTOCOL_TLS_SERVER: server side, no client certificates asked for.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        # Without password=, OpenSSL asks for an encrypted key's pass phrase on
        # the terminal and waits there (or fails without one): refuse instead.
        context.load_cert_chain(cert, key, password=_refuse_encrypted_key(key))
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":
            raise TLSConfigError(f"--tls-key {key} does not match --tls-cert {cert}") from None
        raise TLSConfigError(
            f"--tls-cert {cert} and --tls-key {key} must be a PEM certificate and its "
            f"PEM private key ({error.reason or error.strerror})"
        ) from None
    return context


def _refuse_encrypted_key(key: str) -> Callable[[], NoReturn]:
    """The password callback: OpenSSL calls it only for an encrypted key."""

    def refuse() -> NoReturn:
        raise TLSConfigError(f"--tls-key {key} is encrypted: give the server an unencrypted key")

    return refuse
