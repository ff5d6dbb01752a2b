"""Server and operator passwords, kept only as salted scrypt hashes (standard library only).

Pure functions: the caller supplies the salt (the CLI draws it with
``secrets``), so nothing here touches the operating system. A hash reads
``scrypt$N$r$p$salt$hash`` with the salt and hash in base64.

The cost is a compromise. Checking a password runs inside the event loop
and blocks every other client for its duration, so it must stay at a few
tens of milliseconds: N=2**13, r=8 (8 MiB) takes about 30-40 ms on a
current x86 core. The core checks at most one password per PASS (once, at
registration) and per OPER line, and flood control paces a client's lines.
A hash with a higher cost than ``MAX_COST`` is refused when the server starts,
so a configuration cannot make one check stall the server for seconds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

COST = 2**13
BLOCK_SIZE = 8
PARALLELISM = 1
MAX_COST = 2**14
SALT_BYTES = 16
HASH_BYTES = 32
# hashlib.scrypt refuses to use more than 32 MiB unless told; 128 * r * N is what it needs.
_MAX_MEMORY = 2 * 128 * BLOCK_SIZE * MAX_COST + 2**20


@dataclass(frozen=True, slots=True)
class PasswordHash:
    cost: int
    block_size: int
    parallelism: int
    salt: bytes
    digest: bytes

    @classmethod
    def parse(cls, encoded: str) -> PasswordHash:
        """Read ``scrypt$N$r$p$salt$hash``; ValueError (never naming the hash) if malformed."""
        parts = encoded.split("$")
        if len(parts) != 6 or parts[0] != "scrypt":
            raise ValueError("not a password hash from 'echochat hash-password'")
        try:
            cost, block_size, parallelism = (int(part) for part in parts[1:4])
            salt = base64.b64decode(parts[4], validate=True)
            digest = base64.b64decode(parts[5], validate=True)
        except ValueError:
            raise ValueError("not a password hash from 'echochat hash-password'") from None
        if not (1 < cost <= MAX_COST and cost & (cost - 1) == 0):
            raise ValueError(f"scrypt cost N must be a power of 2 up to {MAX_COST}")
        if not (1 <= block_size <= BLOCK_SIZE and 1 <= parallelism <= PARALLELISM):
            raise ValueError(f"scrypt r must be 1 to {BLOCK_SIZE} and p must be {PARALLELISM}")
        if len(salt) < SALT_BYTES or len(digest) != HASH_BYTES:
            raise ValueError("scrypt salt or hash of the wrong length")
        return cls(cost, block_size, parallelism, salt, digest)

    def matches(self, password: str) -> bool:
        """Whether ``password`` is the one hashed, compared in constant time."""
        digest = _scrypt(password, self.salt, self.cost, self.block_size, self.parallelism)
        return hmac.compare_digest(digest, self.digest)


def hash_password(password: str, salt: bytes) -> str:
    """The stored form of ``password`` with a fresh random ``salt`` (SALT_BYTES or more)."""
    if len(salt) < SALT_BYTES:
        raise ValueError(f"the salt must have at least {SALT_BYTES} bytes")
    digest = _scrypt(password, salt, COST, BLOCK_SIZE, PARALLELISM)
    b64 = base64.b64encode
    return f"scrypt${COST}${BLOCK_SIZE}${PARALLELISM}${b64(salt).decode()}${b64(digest).decode()}"


def _scrypt(password: str, salt: bytes, cost: int, block_size: int, parallelism: int) -> bytes:
    return hashlib.scrypt(
        password.encode(),
        salt=salt,
        n=cost,
        r=block_size,
        p=parallelism,
        maxmem=_MAX_MEMORY,
        dklen=HASH_BYTES,
    )
