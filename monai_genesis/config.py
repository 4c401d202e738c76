"""Small functions that bundle configs call, so that the configs hold no control flow of their own."""

from __future__ import annotations

__all__ = ["as_bool"]

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")


def as_bool(value, name: str = "flag") -> bool:
    """``value`` as a bool: a bool, a number, or a string from the command line (``--resume true``).

    Args:
        value: the value given.
        name: the setting's name, for the error message.

    Raises:
        ValueError: for a string that is neither true nor false.
    """
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"--{name} must be true or false, got {value!r}.")
    return bool(value)
