"""The experiments' user-facing error for a config that cannot run: a leaf module that the
config checks and the input pipeline raise from (and the commands catch)."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A config value (or a ``--config.key`` override) that cannot run."""
