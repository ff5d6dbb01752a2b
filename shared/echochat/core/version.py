"""The version echochat reports, e.g. in the 004 reply (`echochat-<version>`)."""

__version__ = "0.1.0"
