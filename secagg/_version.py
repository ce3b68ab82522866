"""The version of secagg: the one place it is written (pyproject.toml and ``secagg --version`` read it)."""

__version__ = "0.1.0"
