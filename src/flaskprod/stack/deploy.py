"""`flaskprod deploy` and `rollback`, done by `up`'s supervisor: a release is started beside the running one,
nginx is switched to it once it is ready (by repointing the link it connects through, or by a graceful reload),
and the old one is drained.

No request is lost on the way: what nginx sent the old app server before the switch (queued on its socket, or
held by nginx's old workers after a reload) is served before that one is asked to stop, and it stops gracefully.
A release that does not become ready is stopped before nginx ever sends it a request, and so is one whose client
went away (Ctrl-C) while it got ready. SIGHUP replaces a release's app server the same way (once a canary has
ended: `promote` and `rollback` apply a SIGHUP that came while it ran).
"""

from __future__ import annotations

import dataclasses
import json
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import FlaskprodError, ServerError
from ..plural import counted
from ..render.nginx import STATIC_REVALIDATE, upstream_keepalive
from ..servers.healthcheck import request_bytes
from . import unixsockets
from .control import Request
from .prometheus import UNSCRAPED_WITHIN
from .releases import Release, adopt_data
from .up import STOP_MARGIN, Plan, Stack, Stopping, copy_config, new_release, nginx_files, write_nginx_config

# Extra seconds, past the graceful timeout, nginx's old workers get to finish before the switch is called failed.
SWITCH_MARGIN = 5.0
# Seconds after the link moves before the old app server's queue is read: a connect() under way then lands there.
LINK_SETTLE = 0.05
# Of a readiness answer, what is read: its body names a failing check's error, in a few hundred bytes.
MAX_ANSWER = 64 * 1024


class ClientGone(ServerError):
    """The client of a deploy or rollback went away before its release was ready: it is cancelled."""


def handle(stack: Stack, request: Request) -> None:
    """Run one request from the control socket; a mistake fails it on one line and leaves `up` as it was."""
    what = "a rollback" if request.command == "rollback" else f"a {request.command}"
    takes = longest(stack.plan, request)
    stack.busy = (what, time.monotonic() + takes)
    request.progress(None, within=takes)  # from now: it may have waited behind another
    try:
        if request.command == "deploy":
            if request.options.get("promote"):
                promote(stack, request)
            else:
                deploy(stack, request, canary=request.options.get("canary"))
        elif request.command == "rollback":
            rollback(stack, request, to=request.options.get("to"))
        else:
            raise ServerError(f"unknown command {request.command!r}: this flaskprod up takes deploy and rollback")
    except ClientGone as exc:
        stack.log(f"{request.command} cancelled: {exc}", level="warning")
    except FlaskprodError as exc:
        stack.log(f"{request.command} failed: {exc}", level="error")
        request.fail(str(exc))
    finally:
        stack.busy = None


def longest(p: Plan, request: Request | None) -> float:
    """The most seconds request (None: SIGHUP's replacement of an app server) can take under p: the release
    command, the new app server's readiness, nginx's switch, the old app server's drain (as each is bounded)."""
    graceful = p.derived.timeouts.graceful
    seconds = graceful + SWITCH_MARGIN + graceful + STOP_MARGIN + (UNSCRAPED_WITHIN if p.prometheus else 0)
    if request is None or not request.options.get("promote"):
        seconds += p.spec.proxy.ready_timeout
    if request is not None and request.command == "deploy" and not request.options.get("promote"):
        seconds += p.spec.deploy.release_timeout if p.spec.deploy.release_argv else 0
    return seconds


def deploy(stack: Stack, request: Request, *, canary: object = None) -> None:
    p = stack.plan
    assert p.release is not None
    if p.canary:
        number, percent = p.canary[0].number, p.canary[1]
        raise ServerError(
            f"release {number} runs as a canary with {percent}% of the requests: `flaskprod deploy --promote` "
            "gives it all of them, `flaskprod rollback` stops it; then deploy again"
        )
    if canary is not None and (not isinstance(canary, int) or not 1 <= canary <= 99):
        raise ServerError(f"--canary {canary}: give the percent of requests for the new release, from 1 to 99")
    new_plan = stack.reloaded_plan()
    for moved in adopt_data(p.release, p.root):
        request.progress(f"moved {moved}, which the app wrote inside release {p.release.number}, into the project: "
                         "every release links it")  # fmt: skip
    release = new_release(new_plan)
    takes = longest(new_plan, request)  # by the settings the release ships
    stack.busy = (f"release {release.number}'s deploy", time.monotonic() + takes)
    linked = f", linking the project's {', '.join(release.linked)}" if release.linked else ""
    request.progress(
        f"copied {counted(release.files, 'file')} of {release.source} into release {release.number}{linked}",
        within=takes,
    )
    put_back = ship_config(new_plan)
    ran: str | None = None
    try:
        # Before the new code takes a request (a migration it needs), while the running release serves on.
        ran = stack.run_release_command(release, new_plan)
        if ran is not None:
            request.progress(ran)
        start_ready(stack, release, request, new_plan)  # by the settings it ships: proxy.ready_timeout too
    except FlaskprodError as exc:
        put_back()
        new_plan.releases.remove(release.number)  # it never served: five failed deploys must not push out good ones
        if isinstance(exc, Stopping):
            stack.signals.put(signal.SIGTERM)  # the stop the wait took from the queue: the main loop acts on it
            raise ServerError("flaskprod up is stopping: the deploy was abandoned") from None
        if ran is None and new_plan.spec.deploy.release_argv:  # the release command failed
            raise ServerError(f"{exc}; release {p.release.number} still serves") from None
        raise
    switched = (
        dataclasses.replace(new_plan, canary=(release, canary))
        if canary is not None
        else dataclasses.replace(new_plan, release=release, returns_to=p.release.number)
    )
    try:
        switch(stack, switched, request)
    except FlaskprodError as exc:
        if stack.plan is not p:  # nginx switched: the release serves, and the error is the switch's own
            raise
        # nginx refused the config the release ships (nothing switched): the release goes, as one that never
        # started; its app server left running held its socket, and a rollback to it failed.
        stack.stop_app_server(release.number)
        put_back()
        new_plan.releases.remove(release.number)
        raise ServerError(f"{exc}; release {p.release.number} still serves") from None
    if canary is not None:
        message = (
            f"release {release.number} takes {canary}% of the requests beside release {p.release.number}: "
            "`flaskprod deploy --promote` gives it all of them, `flaskprod rollback` stops it"
        )
    else:
        drain(stack, p.release, request)
        message = f"release {release.number} serves every request; `flaskprod rollback` returns to {p.release.number}"
    keep = stack.plan.spec.release.keep
    # Nor the release rollback returns to, however old: the one the message below names.
    kept = [*stack.plan.running, *filter(None, [returns_to(stack.plan)])]
    pruned = stack.plan.releases.prune(keep, running=kept)
    if pruned:
        request.progress(f"deleted release {', '.join(map(str, pruned))} (release.keep = {keep})")
    stack.log(message)
    request.finish(release=release.number, message=message)


def promote(stack: Stack, request: Request) -> None:
    p = stack.plan
    if p.canary is None:
        raise ServerError("no canary is running: `flaskprod deploy --canary N` starts one")
    assert p.release is not None
    canary, old = p.canary[0], p.release
    switch(stack, dataclasses.replace(p, release=canary, canary=None, returns_to=old.number), request)
    drain(stack, old, request)
    message = f"release {canary.number} serves every request; `flaskprod rollback` returns to {old.number}"
    stack.log(message)
    stack.apply_held_reload(request)
    request.finish(release=canary.number, message=message)


def rollback(stack: Stack, request: Request, *, to: object = None) -> None:
    p = stack.plan
    assert p.release is not None
    current = p.release
    if p.canary is not None:
        canary = p.canary[0]
        if to is not None:  # was ignored: the canary stopped, and the release before it served on
            raise ServerError(
                f"release {canary.number} runs as a canary: `flaskprod rollback` stops it and release "
                f"{current.number} serves on; then `flaskprod rollback --to {to}`"
            )
        switch(stack, dataclasses.replace(p, canary=None), request)
        drain(stack, canary, request)
        message = f"canary release {canary.number} stopped; release {current.number} serves every request"
        stack.log(message)
        stack.apply_held_reload(request)
        request.finish(release=current.number, message=message)
        return
    if to is not None and not isinstance(to, int):
        raise ServerError(f"--to {to}: give a release number")
    target = p.releases.get(to) if to is not None else returns_to(p) or p.releases.before(current.number)
    if target is None:
        raise ServerError(
            f"release {current.number} is the oldest one kept (release.keep = {p.spec.release.keep}): "
            "there is none before it to roll back to"
        )
    if target.number == current.number:
        raise ServerError(f"release {current.number} is the one running: name another with --to")
    stack.busy = (f"the rollback to release {target.number}", time.monotonic() + longest(p, request))
    start_ready(stack, target, request)
    switch(stack, dataclasses.replace(p, release=target, returns_to=None), request)
    drain(stack, current, request)
    message = f"rolled back: release {target.number} serves every request (release {current.number} is kept)"
    stack.log(message)
    request.finish(release=target.number, message=message)


def ship_config(p: Plan) -> Callable[[], None]:
    """Renew the copy of the config file that workers read, as SIGHUP does, before the new release starts: it is
    the file the new nginx.conf is rendered from. Returns what puts the copy it replaced back, for a release that
    does not start (the running one's workers go on reading what nginx was rendered from)."""
    if p.config_file is None:
        return lambda: None
    target = p.run.path / p.config_file.name
    before = target.read_bytes() if target.exists() else None
    copy_config(p.config_file, p.run)

    def put_back() -> None:
        if before is not None:
            staged = target.with_name(f".{target.name}.old")
            staged.write_bytes(before)
            staged.replace(target)

    return put_back


def returns_to(p: Plan) -> Release | None:
    """The release the last deploy or promote replaced, as they said `rollback` would return to: not the one
    numbered before the current, which after a rollback and a deploy is the release rolled back from. None
    after a rollback (the next goes further back) or once release.keep has deleted it."""
    if p.returns_to is None:
        return None
    try:
        return p.releases.get(p.returns_to)
    except FlaskprodError:
        return None


def start_ready(stack: Stack, release: Release, request: Request | None, p: Plan | None = None) -> str:
    """Start release's app server and wait until it answers its readiness path on its own socket (the one p
    names, by default up's plan); what it answered, and when. ClientGone when request's client goes away first."""
    p = p or stack.plan
    started = time.monotonic()
    child = stack.start_app_server(release, p)
    listens_on = p.socket(release)
    path = p.spec.monitoring.ready_path
    # A deploy's or rollback's failure says so; SIGHUP's caller (request None) says the running one stays.
    serves = f"release {p.release.number} still serves" if request is not None and p.release is not None else ""
    last_status = 0

    def ready() -> bool:
        nonlocal last_status
        if request is not None and request.gone():
            raise ClientGone(
                f"its client went away before release {release.number} was ready: release {release.number} "
                f"stopped" + (f", {serves}" if serves else "")
            )
        try:
            # The app server has recorded its app's SERVER_NAME before it listens: a Host the app routes.
            last_status, body = answer_at(
                listens_on, p.protocol, path, host=p.request_host(release), timeout=p.answer_timeout
            )
        except OSError as exc:
            stack.last_answer = f"{type(exc).__name__}: {exc}"
            return False
        # With its body, as up's readiness through nginx is shown: a failing check's error is the reason.
        stack.last_answer = f"{last_status} {' '.join(body.split())[:400]}".rstrip()
        return p.is_ready(last_status)

    try:
        ok = stack.wait_until(
            ready, time.monotonic() + p.spec.proxy.ready_timeout, subject=f"release {release.number}",
            endpoint=f"{path} on unix:{listens_on}", watched=[child],
        )
    except ServerError as exc:
        status = child.exit_status()
        refused = refusal(p.record(release)) if status is not None else None  # before the stop deletes it
        stack.stop_app_server(release.number)
        if isinstance(exc, ClientGone):
            raise
        if status is not None:
            why = refused or "its error is in flaskprod up's output"
            raise ServerError(
                f"release {release.number} did not start: its app server {child.describe_exit(status)}: {why}"
                + (f"; {serves}" if serves else "")
            ) from None
        # Out of time: said here, where the bound is p's (a deploy's, from the config it ships), not up's.
        raise ServerError(
            f"release {release.number} was not ready within proxy.ready_timeout = {p.spec.proxy.ready_timeout}s: "
            f"{path} on unix:{listens_on} last answered: {stack.last_answer}" + (f"; {serves}" if serves else "")
        ) from None
    if not ok:
        stack.stop_app_server(release.number)
        stack.signals.put(signal.SIGTERM)  # the stop wait_until took from the queue: the main loop acts on it
        raise ServerError("flaskprod up is stopping" + (": the deploy was abandoned" if request else ""))
    answered = f"{path} answered {last_status} after {time.monotonic() - started:.1f}s"
    if request is not None:
        request.progress(f"release {release.number} is ready ({answered})")
    return answered


def answer_at(listens_on: Path, protocol: str, path: str, *, host: str, timeout: float) -> tuple[int, str]:
    """Status and body of a GET for path from the app server on the unix socket listens_on, in its protocol, as
    from this machine (the request asks it to close the connection once answered); OSError when it cannot be
    asked."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(listens_on))
        if protocol == "uwsgi":  # naming REMOTE_ADDR 127.0.0.1, as nginx does for a request from this machine
            sock.sendall(request_bytes(protocol, path, host))
        else:  # from this machine too, as nginx passes it on: the app shows a failing check's error to loopback
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\nX-Forwarded-For: 127.0.0.1\r\n"
                         "Connection: close\r\n\r\n".encode())  # fmt: skip
        answer = b""
        while len(answer) < MAX_ANSWER and (chunk := sock.recv(4096)):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise OSError(f"no HTTP status line in the answer: {head[:80]!r}")
    return int(status_line[1]), body.decode("utf-8", "replace")


def refusal(record: Path) -> str | None:
    """The one line `flaskprod serve` refused to start release's app with (its SyntaxError, say): up passes it
    the path of its record, where it writes that line instead (see cli.serve). None without one."""
    try:
        error = json.loads(record.read_text()).get("error")
    except (OSError, ValueError, AttributeError):
        return None
    return error if isinstance(error, str) else None


def reload_app_server(stack: Stack, release: Release) -> None:
    """SIGHUP's reload of release's app server by replacement: a new one beside it, reading the config file as
    it starts, takes the requests once ready, and the old one drains. If the new one does not get ready (or nginx
    refuses the config that switches to it), it is stopped and the old one serves on, nginx not reloaded: a
    ServerError saying why, for the caller to put back what it changed for the reload (Stack.handle_hup)."""
    old = stack.app_servers.pop(release.number)
    stack.retiring.append(old)  # stopped with the rest should up stop meanwhile
    new_plan = stack.plan.with_new_app_server(release)

    def keep_old() -> None:
        stack.retiring.remove(old)
        stack.app_servers[release.number] = old

    try:
        answered = start_ready(stack, release, None, new_plan)
    except ServerError:
        keep_old()
        raise
    nginx = "nginx reloaded onto its changed config"
    try:
        if not switch(stack, new_plan, None):
            if stack.plan.spec.tls.mode == "files":
                # A certificate renewed in place leaves nginx.conf as it was: nginx reads the files as it reloads.
                stack.reload_nginx()
                nginx = "nginx reloaded to read tls.cert and tls.key again"
            else:
                nginx = (
                    "nginx not reloaded: its config is unchanged, and its link to the app server leads to the new one"
                )
    except FlaskprodError as exc:
        if stack.plan is not new_plan:  # nginx -t refused it: nginx still sends every request to the old one
            stack.stop_app_server(release.number)
            keep_old()
            raise
        stack.log(f"{exc}; stopping the replaced app server of release {release.number} now", level="warning")
    stack.retiring.remove(old)
    stack.stop_app_server(release.number, old)
    stack.log(
        f"app server of release {release.number} reloaded: the new one ready ({answered}), the old one drained; "
        f"{nginx}"
    )


def switch(stack: Stack, new_plan: Plan, request: Request | None) -> bool:
    """nginx.conf for new_plan, checked, and the serving link repointed at its release, when that is the whole
    switch (see quiet_switch); else nginx.conf through the other serving link, pointed at new_plan's release, and a
    graceful reload, returning once nginx's old workers are gone (they send what they hold to the old release).
    Whether nginx was reloaded."""
    old = stack.plan
    # Connections nginx keeps to the old app server would carry on past the link; an nginx too old to bound their
    # life (keepalive_time) lets them go only with its old workers, on a reload.
    kept_for_long = (
        upstream_keepalive(new_plan.derived, new_plan.protocol, new_plan.websockets)
        and not new_plan.upstream_keepalive_time
    )
    quiet = nginx_files(new_plan)["nginx.conf"] == stack.nginx_loaded and not kept_for_long
    if not quiet:
        new_plan = dataclasses.replace(new_plan, link=1 - old.link)
    write_nginx_config(new_plan)  # `nginx -t` first: a rejected config changes nothing
    new_plan.point_links(scraped_too=old.scrape_responders() if new_plan.prometheus else None)
    if new_plan.prometheus:  # nginx serves the running releases' metrics paths now (their links), and those alone
        new_plan.prometheus.write_targets(new_plan.run, new_plan.spec, (release.number for release in new_plan.running))
    if quiet:
        quiet_switch(stack, new_plan, old, request)
        return False
    master = stack.nginx.pid
    old_workers = nginx_workers(master) if master else set()
    stack.reload_nginx()
    stack.plan = new_plan
    grace = new_plan.derived.timeouts.graceful + SWITCH_MARGIN
    deadline = time.monotonic() + grace
    while (left := old_workers & _alive(old_workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if left:
        raise ServerError(f"nginx's old workers (pid {', '.join(map(str, sorted(left)))}) still run after {grace:g}s")
    serving = ", ".join(
        f"release {r.number}" + (f" {new_plan.canary[1]}%" if new_plan.canary and r is new_plan.canary[0] else "")
        for r in new_plan.running
    )
    if request is not None:
        request.progress(f"nginx reloaded: it sends requests to {serving}")
    return True


def quiet_switch(stack: Stack, new_plan: Plan, old: Plan, request: Request | None) -> None:
    """The switch when nginx.conf is the one nginx runs: the repointed link was all of it. A reload would close
    every client's idle keep-alive connection, and a client that sent a request on one at that moment saw it reset
    (1 to 8 a switch with 8 such clients). What nginx connected to the old app server before the link moved waits
    in that one's queue, and connections nginx keeps to it (Gunicorn's threaded workers) carry on until nginx
    closes them, idle or within keepalive_time: the old one is asked to stop once it has no connection left,
    since stopping resets what it never accepted and may close a kept one as nginx sends on it (a 502)."""
    stack.plan = new_plan
    assert old.release is not None and new_plan.release is not None
    moved = time.monotonic()
    before, after = old.socket(old.release), new_plan.socket(new_plan.release)
    if before != after:
        time.sleep(LINK_SETTLE)  # a connect() that found the old socket as the link moved is in its queue by now
        # WebSocket conversations never end on their own, and nginx keeps no connection to an app with them
        # (upstream_keepalive): what the old app server has accepted is conversations and requests in flight, which
        # the drain lets finish, so only its queue is waited for. Otherwise nginx closes the connections it kept to
        # it within keepalive_time.
        kept = new_plan.upstream_keepalive_time or 0
        settled = 0 if new_plan.websockets else new_plan.derived.timeouts.graceful + kept
        deadline = time.monotonic() + settled + SWITCH_MARGIN

        def left() -> bool:
            return bool(unixsockets.waiting(before) or (not new_plan.websockets and unixsockets.accepted(before)))

        while left() and time.monotonic() < deadline:
            time.sleep(0.02)
    if old.release.path != new_plan.release.path:
        # A static file nginx holds open from the old release is looked up again within this: then every path it
        # serves is the new release's.
        time.sleep(max(0.0, moved + STATIC_REVALIDATE - time.monotonic()))
    if request is not None:
        request.progress(f"nginx sends requests to release {new_plan.release.number} (its link repointed, no reload)")


def drain(stack: Stack, release: Release, request: Request) -> None:
    started = time.monotonic()
    if stack.plan.prometheus:  # its target went with the switch: no scrape of it stopped
        stack.plan.prometheus.wait_unscraped(release.number)
    stack.stop_app_server(release.number)
    if stack.plan.prometheus:  # its scrape link, kept by the switch, goes with it: nginx answers 404 there
        stack.plan.run.point_scrapes(stack.plan.scrape_responders())
    request.progress(f"release {release.number} drained and stopped in {time.monotonic() - started:.1f}s")


def nginx_workers(master: int) -> set[int]:
    """The pids of the processes whose parent is master (nginx's workers and cache processes)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == master:
            children.add(int(stat.parent.name))
    return children


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            alive.add(pid)
    return alive
