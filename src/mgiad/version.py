"""The package version, in a leaf module of its own (anything may import it)."""
__version__ = "0.1.0"
