"""The app gunicorn serves during the HTTP leg: the product app plus the bench's floor route.

``gunicorn -c gunicorn.conf.py 'bench.wsgi:create_bench_app()'``, configured by the usual
environment variables (``DATABASE_URL``, ``REDIS_URL``, ...). With ``BENCH_KNOB=no_sql`` each
worker answers the hot-path statements from its memory after running each once
(``bench.inprocess.Remembered``): what an in-process cache of credentials, access and version
could do under load. Bench only; the service asks the database on every request.
"""

from __future__ import annotations

import os

from flask import Flask

from bench.floor import register_floor
from bench.inprocess import Remembered
from facets import create_app

KNOB = "BENCH_KNOB"


def create_bench_app() -> Flask:
    """``create_app()`` from the environment, with ``/bench/floor`` added (and the knob)."""
    knob = os.environ.get(KNOB)
    if knob == "no_sql":
        Remembered().install()
    elif knob:
        raise ValueError(f"{KNOB}={knob!r}: the only knob is 'no_sql'")
    return register_floor(create_app())
