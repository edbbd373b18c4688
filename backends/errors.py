"""Errors that say what to do about them, and the install command they name."""

#: This project's name on the package index; its import packages are ``mlp`` and ``backends``.
DISTRIBUTION = "mlp-backprop"


def install_hint(*extras: str) -> str:
    """The command that installs an extra: ``pip install 'mlp-backprop[fast]'`` (several
    extras: alternatives, ``… 'mlp-backprop[cuda12]' or 'mlp-backprop[cuda13]'``)."""
    return "pip install " + " or ".join(f"'{DISTRIBUTION}[{extra}]'" for extra in extras)


class BackendUnavailable(RuntimeError):
    """The requested device cannot be used here (no CuPy, no GPU, no such GPU index)."""
