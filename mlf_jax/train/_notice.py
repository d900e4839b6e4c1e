"""One line on stderr for a recoverable event (a skipped checkpoint, a stale lock, ...)."""

from __future__ import annotations

import sys

__all__ = ["notice"]


def notice(message: str) -> None:
    """Prints ``mlf_jax: <message>`` on stderr."""
    print(f"mlf_jax: {message}", file=sys.stderr, flush=True)
