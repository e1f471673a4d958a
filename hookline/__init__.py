"""The composition root: the `hookline` command and the wired WSGI app.

The only package that imports ingest, workers and shared together; shared imports
neither, and ingest and workers do not import each other (tests/test_layers.py)."""
