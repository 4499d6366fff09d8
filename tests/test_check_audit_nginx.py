"""`flaskprod check` reads nginx configuration as nginx does: by directive and block, not by line. A header set in
one server is not another's, and a directive written on one line with its location is found."""

from __future__ import annotations

from pathlib import Path

import pytest

from flaskprod.checks.nginx import parse, walk
from tests import test_check
from tests.test_check import PROD, audit

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

MISSING_BOTH = (
    "nginx proxies to the app without setting X-Forwarded-For and X-Forwarded-Proto: the app cannot see the "
    "client's address or scheme (https behind TLS)"
)
# The guide's two servers: the port-80 one proxies too, and sets neither header; the TLS one sets both.
TWO_SERVERS = """\
server {
    listen 80;
    location / {
        proxy_pass http://flask:5000;
        proxy_set_header Host $host;
    }
}
server {
    listen 443 ssl;
    location / {
        proxy_pass http://flask:5000;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
    }
}
"""


def test_headers_one_server_sets_are_not_the_other_servers(project: Path) -> None:
    found = audit(project, {"app.py": PROD, "nginx.conf": TWO_SERVERS}).only("FP-P009")
    assert [(m["obj"], m["text"]) for m in found] == [("nginx.conf:4", MISSING_BOTH)]


def test_a_proxy_pass_written_on_its_locations_line_is_found(project: Path) -> None:
    conf = "server {\n  listen 80;\n  location / { proxy_pass http://127.0.0.1:8000; }\n}\n"
    result = audit(project, {"app.py": PROD, "site.conf": conf})
    assert [(m["id"], m["obj"]) for m in result.messages if m["id"] in ("FP-P009", "FP-C005")] == [
        ("FP-C005", "site.conf:3"),
        ("FP-P009", "site.conf:3"),
    ]


@pytest.mark.parametrize(
    ("location", "found"),
    [
        ("", []),  # the server's headers apply: the location sets none of its own
        ("proxy_set_header Host $host;", ["nginx.conf:7"]),  # one of its own: the server's no longer apply
        ("include proxy_params;", []),  # may set them: not ours to read
    ],
)
def test_headers_are_inherited_as_nginx_inherits_them(project: Path, location: str, found: list[str]) -> None:
    conf = (
        "server {\n"
        "    listen 80;\n"
        "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        "    proxy_set_header X-Forwarded-Proto $scheme;\n"
        "    location / {\n"
        f"        {location}\n"
        "        proxy_pass http://app:8000;\n"
        "    }\n"
        "}\n"
    )
    assert [m["obj"] for m in audit(project, {"app.py": PROD, "nginx.conf": conf}).only("FP-P009")] == found


def test_the_parser_reads_quotes_comments_and_variables_with_braces() -> None:
    conf = (
        'log_format main \'$remote_addr "$request" ${host}\';  # a { in a comment\n'
        'server { location = /x { return 200 "a;b}"; } }\n'
        "}\n"  # one too many: read as far as it goes
        "location /open {\n  proxy_pass http://app"  # left open, no ";"
    )
    found = [(d.line, d.name, d.args, [b.name for b in outer]) for d, outer in walk(parse(conf))]
    assert found == [
        (1, "log_format", ("main", '$remote_addr "$request" ${host}'), []),
        (2, "server", (), []),
        (2, "location", ("=", "/x"), ["server"]),
        (2, "return", ("200", "a;b}"), ["server", "location"]),
        (4, "location", ("/open",), []),
        (5, "proxy_pass", ("http://app",), ["location"]),
    ]
