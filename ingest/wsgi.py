"""WSGI entry point for production servers: `ingest.wsgi:app`."""

import os

from ingest.app import create_app
from shared import logs

logs.setup(os.environ.get("HOOKLINE_LOG_FORMAT", "json"))
app = create_app()
