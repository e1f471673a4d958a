"""The composition root: the `hookline` command and the wired WSGI app.

The only package that imports ingest, workers and shared together; shared imports
neither, and ingest and workers do not import each other (tests/test_layers.py)."""

from importlib import metadata

try:
    __version__ = metadata.version("hookline")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
