"""The installed prefkit version, read from the package metadata maturin writes."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("prefkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
