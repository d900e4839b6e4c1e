"""The optional parts of the library and the extras that install what they need: one clear
error when an import fails for want of one."""

from __future__ import annotations

__all__ = ["missing_extra"]


def missing_extra(part: str, extra: str, error: ModuleNotFoundError) -> ModuleNotFoundError:
    """The error to raise when importing ``part`` (e.g. ``'mlf_jax.data'``) failed with
    ``error``: it names the missing package and the extra that installs it. An error about
    a module of this library itself is returned unchanged (a bug, not a missing extra)."""
    name = error.name or ""
    if name == "mlf_jax" or name.startswith("mlf_jax."):
        return error
    return ModuleNotFoundError(
        f"{part} needs the '{extra}' extra ({name} is not installed): "
        f"pip install 'mlf_jax[{extra}]' (in a clone: pip install -e '.[{extra}]')",
        name=name,
    )
