"""The experiments' user-facing error: a leaf module that the config checks, the input
pipeline and the model builders all raise from."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A config value (or a ``--config.key`` override) that cannot run."""
