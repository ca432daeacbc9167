"""Every Grafana panel's query, run against the live Prometheus of the full
stack (after the traffic of the checks before this one), returns data.
Grafana itself cannot be installed here (its package source is unreachable);
the dashboards and datasource are checked offline in roles/grafana/tests."""

from __future__ import annotations

import sys

from tests.stacklib import PROMETHEUS_URL, ROOT

sys.path.insert(0, str(ROOT / "roles/grafana/tests"))
import dashboard_queries


def test_every_dashboard_query_returns_series_from_the_live_prometheus():
    queries = list(dashboard_queries.queries())
    assert len(queries) > 10, "suspiciously few panel queries"
    failures = dashboard_queries.check_live(PROMETHEUS_URL)
    print(f"{len(queries)} panel queries checked against {PROMETHEUS_URL}")
    assert failures == [], "\n".join(f"{where}: {reason}\n  {query}" for where, query, reason in failures)
