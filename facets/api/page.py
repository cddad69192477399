"""The Hosted Sandboxes page at ``/``: static HTML, CSS and JavaScript from ``static/``.

No build step and no CDN: the three files are served as they are, so the page works with no
internet access. It talks only to the public API (Bearer key from ``sessionStorage``), keeps
its badges current with the waiting read (``?wait=`` with ``If-None-Match``), and holds no
state on the server.
"""

from __future__ import annotations

from flask import Blueprint, Flask

page = Blueprint("page", __name__, static_folder="static", static_url_path="/page/static")

# The page's own script and style only; the API it calls is same-origin.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@page.route("/")
def index():
    """The Hosted Sandboxes page."""
    response = page.send_static_file("index.html")
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers["Cache-Control"] = "no-cache"
    return response


def init_app(app: Flask) -> None:
    """Serve the page and its assets."""
    app.register_blueprint(page)
