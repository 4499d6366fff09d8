"""What nginx needs to know about the app (its static folder), learned by loading it in a throwaway interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..discovery import AppRef
from ..errors import DiscoveryError

# Runs in the child: load the app as the server will, write the answer (or the one-line error) as JSON.
_SCRIPT = """
import json, sys
from flaskprod.discovery import AppRef, load
from flaskprod.errors import FlaskprodError
module, name, path, out = sys.argv[1:]
try:
    app = load(AppRef(module=module, name=name or None, path=path))
except FlaskprodError as exc:
    if exc.__cause__ is not None:
        import traceback
        traceback.print_exception(exc.__cause__)
    result = {"error": str(exc)}
else:
    result = {"static_folder": app.static_folder, "static_url_path": app.static_url_path}
with open(out, "w") as fh:
    json.dump(result, fh)
"""


@dataclass(frozen=True, kw_only=True)
class AppInfo:
    static_folder: str | None
    static_url_path: str | None


def inspect_app(ref: AppRef, env: Mapping[str, str]) -> AppInfo:
    """Load ref in a child interpreter with env; its static folder, or the load error as a DiscoveryError.

    A child, so the supervisor never holds the app's connections, threads or import side effects.
    """
    with tempfile.TemporaryDirectory(prefix="flaskprod-up-") as tmp:
        out = Path(tmp) / "app.json"
        args = [sys.executable, "-c", _SCRIPT, ref.module, ref.name or "", ref.path, str(out)]
        completed = subprocess.run(args, env=dict(env), stdin=subprocess.DEVNULL, stdout=sys.stderr, check=False)
        try:
            result = json.loads(out.read_text())
        except (OSError, ValueError):
            raise DiscoveryError(
                f"app {ref.import_string!r} crashed while loading (exit status {completed.returncode})"
            ) from None
    if "error" in result:
        raise DiscoveryError(result["error"])
    return AppInfo(static_folder=result["static_folder"], static_url_path=result["static_url_path"])
