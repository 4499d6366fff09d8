"""Where `flaskprod check` loads the app: a child interpreter, so that an app which exits, crashes or hangs
while importing is one line (exit 2), never check's own exit status or a wait without end."""

from __future__ import annotations

import dataclasses
import gc
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import discovery
from ..errors import DiscoveryError, FlaskprodError
from ..servers.loading import ended_message, exit_child, load_in_child, write_answer
from ..servers.probe import print_user_traceback
from ..spec import Spec, spec_as_dict
from .context import load_context, unloaded_context
from .registry import Level, Message, run_checks

# Files the child writes in the directory it is given: the first once the app has loaded (from then on
# only the checks run, which no deadline bounds), the second with what it found.
LOADED, RESULT = "loaded", "result.json"


def checked_in_child(spec: Spec, cwd: Path) -> list[Message]:
    """Every check's messages (none silenced) for the app the spec names, loaded in a child interpreter.

    An app that refuses to start is loaded a second time with that refusal off, so that its other checks
    still run beside FP-C001 and see its key and debug mode as they are. Raises a DiscoveryError when there
    is no app, when it cannot be imported, and when it exits, crashes or does not finish loading within
    proxy.ready_timeout.
    """
    cwd = cwd.absolute()  # the child starts there, and reads the same path
    ref = discovery.resolve(spec.app.target, cwd)  # no app at all: said before anything starts
    result = _run(spec, ref, cwd, refused=None)
    if "refused" in result:
        result = _run(spec, ref, cwd, refused=result["refused"])
    return [
        Message(id=row["id"], level=Level[row["level"]], text=row["text"], hint=row["hint"], obj=row["obj"])
        for row in result["messages"]
    ]


def _run(spec: Spec, ref: discovery.AppRef, cwd: Path, *, refused: str | None) -> dict[str, Any]:
    label = ref.import_string
    with tempfile.TemporaryDirectory(prefix="flaskprod-check-") as tmp:
        out = Path(tmp)
        job = {"spec": spec_as_dict(spec), "origins": dict(spec.origins), "cwd": str(cwd), "refused": refused}
        (out / "job.json").write_text(json.dumps(job))
        # The app's own output while importing goes to stderr, so that stdout stays check's report.
        args = [sys.executable, "-m", "flaskprod.checks.runner", tmp]
        status = load_in_child(args, label=label, bound=spec.proxy.ready_timeout, loaded=out / LOADED, cwd=cwd)
        try:
            result: dict[str, Any] = json.loads((out / RESULT).read_text())
        except (OSError, ValueError):
            if (out / LOADED).exists():
                raise RuntimeError(f"flaskprod check's checks of {label!r} failed (exit status {status})") from None
            raise DiscoveryError(ended_message(label, status)) from None
    if "error" in result:
        raise DiscoveryError(result["error"])
    return result


def main(argv: Sequence[str]) -> int:
    """The child: load the app as the job says and write what the checks found (or why it did not load)."""
    (tmp,) = argv
    out = Path(tmp)
    if not out.is_dir():  # the parent is gone (see write_answer)
        return 0
    job = json.loads((out / "job.json").read_text())
    spec = dataclasses.replace(Spec().replace(**job["spec"]), origins=job["origins"])
    result: dict[str, Any]
    try:
        context = load_context(spec, cwd=job["cwd"], refused=job["refused"])
    except FlaskprodError as exc:
        if job["refused"] is not None:
            # Loaded again with its refusal off, the app failed on what it refused for (a key it reads that is not
            # there, say): the refusal is the finding, and the files are checked without the app.
            unloaded = f"loaded with the refusal off, it failed: {exc}"
            context = unloaded_context(spec, Path(job["cwd"]), refused=job["refused"], unloaded=unloaded)
        else:
            if exc.__cause__ is not None:
                # A bug in the app's code: its traceback above the one line, as the probe of init, serve and up
                # shows it (a SyntaxError's file, line and caret).
                print_user_traceback(exc.__cause__)
            write_answer(out / RESULT, {"error": str(exc)})
            return 0
    if context.refused is not None and job["refused"] is None:
        result = {"refused": context.refused}
    else:
        (out / LOADED).touch()
        # The checks hold every module's syntax tree at once: collections would walk them all again and again
        # (4 of the 5 s parsing 2,000 modules took), and this process ends once the checks have run.
        gc.disable()
        # A check walks a syntax tree recursively: an expression of 600 terms is deeper than Python's default.
        sys.setrecursionlimit(max(sys.getrecursionlimit(), 20_000))
        messages = run_checks(context)
        result = {
            "messages": [
                {"id": m.id, "level": m.level.name, "text": m.text, "hint": m.hint, "obj": m.obj} for m in messages
            ]
        }
    write_answer(out / RESULT, result)
    return 0


if __name__ == "__main__":
    exit_child(main(sys.argv[1:]))
