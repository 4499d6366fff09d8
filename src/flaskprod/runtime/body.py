"""A chunked request body held to the app's MAX_CONTENT_LENGTH.

A body sent without Content-Length (Transfer-Encoding: chunked) is read by werkzeug through a stream that
stops at the limit and reports nothing: request.get_data() and request.form get the first MAX_CONTENT_LENGTH
bytes and the view answers 200 on a cut body. Facing clients (serve, the single image), no nginx stops it
first. This input looks one byte past the limit when a read reaches it, and answers 413 if there is one.
"""

from __future__ import annotations

from typing import IO

from werkzeug.exceptions import RequestEntityTooLarge


class BoundedInput:
    """wsgi.input that raises RequestEntityTooLarge (413) once the body proves longer than limit bytes."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self._stream = stream
        self._left = limit

    def read(self, size: int | None = -1) -> bytes:
        # "All of it" is at most one byte past the limit: enough to know the body is too long.
        return self._took(self._stream.read(self._left + 1 if size is None or size < 0 else size))

    def readline(self, size: int | None = -1) -> bytes:
        return self._took(self._stream.readline(self._left + 1 if size is None or size < 0 else size))

    def _took(self, data: bytes) -> bytes:
        self._left -= len(data)
        if self._left < 0 or (self._left == 0 and data and self._stream.read(1)):
            raise RequestEntityTooLarge()
        return data

    def __iter__(self) -> BoundedInput:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line
