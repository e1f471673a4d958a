"""WSGI entry point for production servers: `hookline.wsgi:app`."""

import os

from hookline.app import create_app
from shared import logs

logs.setup(os.environ.get("HOOKLINE_LOG_FORMAT", "json"))
app = create_app()
