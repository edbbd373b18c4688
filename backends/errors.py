"""Errors that say what to do about them."""


class BackendUnavailable(RuntimeError):
    """The requested device cannot be used here (no CuPy, no GPU, no such GPU index)."""
