"""The version, in one place: the package, its metadata, checkpoints and every command's
``--version`` read it from here."""

VERSION = "0.1.0"
