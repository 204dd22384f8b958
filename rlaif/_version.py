"""The package version, in one place (the package root, the manifests and `--version` read it)."""

__version__ = "0.1.0"
