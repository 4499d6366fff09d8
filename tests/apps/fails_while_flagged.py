"""An app whose import fails while the file named by $FAIL_WHILE exists: a dependency that comes and goes,
as a database restarting does for an app that creates its tables when it loads."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask

from flaskprod import Production

if Path(os.environ["FAIL_WHILE"]).exists():
    raise ConnectionRefusedError("the database is restarting")

app = Flask(__name__)
Production(app)


@app.get("/pid")
def pid() -> str:
    return str(os.getpid())
