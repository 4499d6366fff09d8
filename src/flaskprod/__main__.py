"""`python -m flaskprod`: the command line, for child processes that must use this interpreter."""

from __future__ import annotations

from .cli import main

main()
