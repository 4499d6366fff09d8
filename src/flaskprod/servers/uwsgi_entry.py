"""uWSGI's entry point: `module = flaskprod.servers.uwsgi_entry:application` loads the app the spec names."""

from __future__ import annotations

import io
import sys

from ..discovery import find_app
from ..spec import load_spec

# uWSGI's Python plugin points sys.stdout at stderr; the app's JSON logs belong on stdout (fd 1),
# as under Gunicorn, so log shippers find them in one place.
sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True, encoding="utf-8")

# serve exports the app it found as FLASKPROD_APP__TARGET, so this finds the same one.
application = find_app(load_spec().app.target)
