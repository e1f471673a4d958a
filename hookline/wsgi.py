"""WSGI entry point for production servers: `hookline.wsgi:app`."""

import os

from hookline.app import create_app
from shared import lifetime, logs

# Runs in every granian worker (the server process never imports the app).
lifetime.server_worker()
logs.setup(os.environ.get("HOOKLINE_LOG_FORMAT", "json"))
app = create_app()
