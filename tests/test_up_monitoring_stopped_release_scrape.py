"""A release a deploy replaces leaves Prometheus's targets before its app server stops: Prometheus applies a new
targets file within its discovery throttle (5 s), so a release stopped at once was scraped down (up 0) meanwhile, and
ScrapesFailing (under 90% up over 5 m, for 1 m) then fired for a release no longer running, up to 5 minutes."""

from __future__ import annotations

from tests.support import wait_for
from tests.test_up_canary_metrics import JOB, SCRAPED_WITHIN, Monitoring, flaskprod, monitored  # noqa: F401


def test_a_replaced_release_is_never_scraped_down(monitored: Monitoring) -> None:  # noqa: F811
    wait_for(lambda: monitored.scraped("1"), timeout=SCRAPED_WITHIN, what="release 1 scraped")
    for release in ("2", "3"):
        deployed = flaskprod(monitored.stack.root, "deploy")
        assert deployed.returncode == 0, deployed.stderr
        wait_for(lambda r=release: monitored.scraped(r), timeout=SCRAPED_WITHIN, what=f"release {release} alone")
    lowest = monitored.api("/api/v1/query", query=f'min_over_time(up{{job="{JOB}"}}[10m])')["result"]
    assert {r["metric"]["release"]: r["value"][1] for r in lowest} == {"1": "1", "2": "1", "3": "1"}
