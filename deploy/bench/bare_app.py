"""The ingest baseline: a bare Flask app that only LPUSHes the request body to
Redis and answers 202. hookline's ingest is measured against it, served by the
same server with the same settings (see serve_bare.py)."""

from __future__ import annotations

import os

from flask import Flask, Response, request

from shared.runtime import redis_client

KEY = "bench:bare"

app = Flask("bare")
# The same client settings hookline's ingest uses; connections open on first use,
# so every server worker process gets its own.
_redis = redis_client(os.environ["REDIS_URL"])


@app.post("/callbacks/<source>")
def receive(source: str) -> Response:
    _redis.lpush(KEY, request.get_data())
    return Response(b"", status=202)


@app.get("/healthz")
def healthz() -> Response:
    return Response(b"ok")
