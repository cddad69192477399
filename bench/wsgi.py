"""The app gunicorn serves during the HTTP leg: the product app plus the bench's floor route.

``gunicorn -c gunicorn.conf.py 'bench.wsgi:create_bench_app()'``, configured by the usual
environment variables (``DATABASE_URL``, ``REDIS_URL``, ...).
"""

from __future__ import annotations

from flask import Flask

from bench.floor import register_floor
from facets import create_app


def create_bench_app() -> Flask:
    """``create_app()`` from the environment, with ``/bench/floor`` added."""
    return register_floor(create_app())
