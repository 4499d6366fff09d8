"""uWSGI's entry point: `module = flaskprod.servers.uwsgi_entry:application` loads the app the spec names."""

from __future__ import annotations

from ..discovery import find_app
from ..spec import load_spec

# serve exports the app it found as FLASKPROD_APP__TARGET, so this finds the same one.
application = find_app(load_spec().app.target)
