"""nginx's long-lived caching of fingerprinted static names, asked of a real nginx running the rendered conf.

A name the bundlers give a file by content (a hash before its extensions) is cached for a year as immutable; any
other keeps proxy.static_max_age, since its content may change under the same name.
"""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path

import pytest
import requests

from flaskprod.render import NginxContext, render_nginx
from flaskprod.render.nginx import StaticMount
from flaskprod.sizing import Machine, derive
from flaskprod.spec import load_spec
from tests.support import free_port, running, wait_for

IMMUTABLE = "public, max-age=31536000, immutable"
MAX_AGE = 600
PLAIN = f"public, max-age={MAX_AGE}"

FINGERPRINTED = [
    "app.3f2a1b9c.css",  # a hex hash between dots (Parcel, Flask-Assets, a hand-rolled build)
    "main.3f2a1b9c8d4e5f6a7b8c.js",  # webpack's [name].[contenthash].js: 20 hex digits
    "main.3f2a1b9c.chunk.js",  # Create React App's [name].[contenthash:8].chunk.js
    "main.3f2a1b9c.js.map",  # a bundle's source map
    "assets/index-BRbG3cH1.js",  # Vite 4 on (Rollup): assets/[name]-[hash], 8 URL-safe base64 characters
    "assets/index-C_4mVS1-.css",  # the same, with both of base64url's extra characters
    "assets/vendor-a-7Kp2XzQe.js",  # a name with a dash of its own
    "chunk-5WQZP2KQ.js",  # esbuild: [name]-[hash], 8 of A-Z and 0-9
    "assets/index-4e126c62.js",  # Vite 2-3 (Rollup 2): 8 hex digits after a dash
    "assets/FiraSans-Regular-0fe48ade.woff2",
    # A quarter of Vite's hashes have no digit: under assets/, 8 with both cases that are not shaped like words.
    "assets/index-BRbGcHxJ.js",  # two capitals in a row
    "assets/vendor-DqLwZ_aQ.css",  # a capital before an underscore, one at the end
    "assets/app-kPQwe-Rz.js",
]
ORDINARY = [
    "app-settings.js",
    "jquery-migrate.js",
    "bootstrap-datepicker.css",
    "main.css",
    "app.js",
    "jquery-3.7.1.min.js",
    "jquery.dataTables.min.js",
    "Inter-SemiBold.woff2",  # a capital and 8 characters, but no digit: a word
    "logo-1200x630.png",  # digits and a letter, but no capital: a size
    "photo-20240101.jpg",  # 8 digits after a dash: a date
    "icon-192x192.png",
    "fa-solid-900.woff2",
    "polyfills-es2015.js",
    "app-v2-final.js",
    "ui-icons_444444_256x240.png",
    # A person's names with a digit and a capital: a hash only where a bundler writes, under assets/.
    "poster-Summer24.jpg",
    "photo-IMG_1234.jpg",
    "logo-V2-white.svg",
    "index-BRbG3cH1.js",
    "backup.20240101.tar.gz",  # 8 hex digits after a dot, but no letter: a date
    "assets/photo-20240101.jpg",
    # Under assets/, 8 letters after a dash without a digit that are words a person wrote, not a hash.
    "assets/Inter-SemiBold.woff2",  # CamelCase
    "assets/logo-LinkedIn.svg",
    "assets/icon-Arrow-Up.svg",  # words joined by a dash
    "assets/icon-arrow_Up.svg",
    "assets/icon-HTMLFile.svg",  # an acronym before a word
    "assets/phone-iPhoneXS.png",  # an acronym after one
    "assets/btn-CONTINUE.svg",  # one case only
    "assets/icon-settings.svg",
    "assets/logo-Dark.svg",
    "assets/font-Regular.woff2",
    # Under assets/, 8 characters after a dash with digits and no capital are as often a person's: 1 Vite hash in 73
    # is shaped so (index-x9kq3mz0.js) and keeps proxy.static_max_age, since any rule taking it takes these too
    # (even one asking for 3 changes between letters and digits takes h264-mp4 and i18n-de1, for half the hashes).
    "assets/logo-1200x630.png",
    "assets/app-v2-final.js",
    "assets/font-latin400.woff2",
    "assets/video-h264-mp4.js",
    "assets/locale-i18n-de1.json",
]


def nginx_serving(tmp_path: Path, names: list[str]) -> tuple[NginxContext, list[str]]:
    """A conf for nginx serving static/ on a free port, with a file under each name; the conf and nginx's command."""
    static = tmp_path / "static"
    (static / "sub").mkdir(parents=True)
    for name in names:
        (static / "sub" / name).parent.mkdir(parents=True, exist_ok=True)
        (static / "sub" / name).write_text(f"/* {name} */\n")
    (tmp_path / "tmp").mkdir()
    ctx = NginxContext(
        host="127.0.0.1",
        port=free_port(),
        upstream=f"unix:{tmp_path}/app.sock",
        protocol="http",
        static=(StaticMount(endpoint="static", url="/static", folder=str(static)),),
        conf_dir=str(tmp_path),
        pid_file=f"{tmp_path}/nginx.pid",
        temp_dir=f"{tmp_path}/tmp",
        access_log=f"{tmp_path}/access.log",
        error_log="stderr",
        # As root, the workers run as root too: the test's folder is closed to nobody, nginx's default.
        user=pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() == 0 else None,
    )
    spec = load_spec(environ={}, config=None, root="/nonexistent", flags={"proxy.static_max_age": str(MAX_AGE)})
    for file, text in render_nginx(spec, derive(spec, Machine(cpus=2, memory=4 * 1024**3)), ctx).items():
        (tmp_path / file).write_text(text)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return ctx, [nginx, "-p", f"{tmp_path}/", "-c", f"{tmp_path}/nginx.conf", "-e", "stderr", "-g", "daemon off;"]


@pytest.fixture(scope="module")
def cache_control(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The Cache-Control nginx sends for each name, FINGERPRINTED's and ORDINARY's."""
    folder = tmp_path_factory.mktemp("fingerprints")
    ctx, command = nginx_serving(folder, FINGERPRINTED + ORDINARY)
    base = f"http://127.0.0.1:{ctx.port}/static/sub"
    with (folder / "nginx.out").open("w") as out, running(command, stdout=out) as nginx:
        wait_for(
            lambda: nginx.poll() is None and requests.get(f"{base}/main.css", timeout=2).ok,
            what=f"nginx to serve static/ ({folder / 'nginx.out'})",
        )
        found: dict[str, str] = {}
        for name in FINGERPRINTED + ORDINARY:
            response = requests.get(f"{base}/{name}", timeout=5)
            assert response.status_code == 200, (name, response.status_code)
            assert response.text == f"/* {name} */\n"
            found[name] = response.headers["Cache-Control"]
        assert nginx.poll() is None
    return found


def test_the_bundlers_fingerprinted_names_are_immutable(cache_control: dict[str, str]) -> None:
    assert {name: cache_control[name] for name in FINGERPRINTED} == dict.fromkeys(FINGERPRINTED, IMMUTABLE)


def test_ordinary_names_keep_the_static_max_age(cache_control: dict[str, str]) -> None:
    assert {name: cache_control[name] for name in ORDINARY} == dict.fromkeys(ORDINARY, PLAIN)
