#!/usr/bin/env python3
"""Every PromQL query of the role's dashboards, and a check against a live
Prometheus that each one returns at least one series.

    python3 roles/grafana/tests/dashboard_queries.py --prometheus http://10.0.0.5:9090

Grafana's own macros are replaced by plain values first: $__rate_interval
and $__interval by a window, every dashboard variable ($env, $host) by ".*"
(the dashboards only use variables in regex matchers). Variable queries
(label_values(metric, label)) are checked through the series API.
Exit status 0 when every query returns data, 1 otherwise.
"""

import argparse
import json
import pathlib
import re
import sys
import urllib.parse
import urllib.request

DASHBOARDS = pathlib.Path(__file__).resolve().parents[1] / "files" / "dashboards"
MACROS = {"$__rate_interval": "2m", "$__interval": "30s", "$__range": "1h"}
VARIABLE = re.compile(r"\$\{?(\w+)\}?")
LABEL_VALUES = re.compile(r"^label_values\((?:(.+),\s*)?(\w+)\)$")


def dashboards(directory=DASHBOARDS):
    for path in sorted(pathlib.Path(directory).glob("*.json")):
        yield path, json.loads(path.read_text())


def panels(dashboard):
    """Panels, including those inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def queries(directory=DASHBOARDS):
    """(dashboard file, panel title, refId, expr) for every panel target."""
    for path, dashboard in dashboards(directory):
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                yield path.name, panel.get("title", ""), target.get("refId", ""), target.get("expr", "")


def variable_queries(directory=DASHBOARDS):
    for path, dashboard in dashboards(directory):
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                query = variable["query"]
                if isinstance(query, dict):
                    query = query.get("query", "")
                yield path.name, variable["name"], query


def concrete(expr):
    """The query Grafana would send, with variables set to "All"."""
    for macro, value in MACROS.items():
        expr = expr.replace(macro, value)
    return VARIABLE.sub(".*", expr)


def _get(url):
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.load(answer)


def series_count(prometheus, expr):
    """Number of series an instant query returns."""
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": concrete(expr)})
    return len(_get(url)["data"]["result"])


def label_value_count(prometheus, query):
    match = LABEL_VALUES.match(query.strip())
    if not match:
        raise ValueError(f"not a label_values() query: {query}")
    selector, label = match.groups()
    params = [("match[]", concrete(selector))] if selector else []
    url = f"{prometheus}/api/v1/label/{label}/values?" + urllib.parse.urlencode(params)
    return len(_get(url)["data"])


def check_live(prometheus, directory=DASHBOARDS):
    """Failures as (where, query, reason); empty when every query has data."""
    prometheus = prometheus.rstrip("/")
    failures = []
    for name, title, ref, expr in queries(directory):
        where = f"{name} / {title} / {ref}"
        try:
            if series_count(prometheus, expr) == 0:
                failures.append((where, expr, "no series"))
        except Exception as error:
            failures.append((where, expr, str(error)))
    for name, variable, query in variable_queries(directory):
        where = f"{name} / variable {variable}"
        try:
            if label_value_count(prometheus, query) == 0:
                failures.append((where, query, "no values"))
        except Exception as error:
            failures.append((where, query, str(error)))
    return failures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", required=True, help="base URL, e.g. http://10.0.0.5:9090")
    parser.add_argument("--dashboards", default=str(DASHBOARDS), help="directory of dashboard JSON files")
    args = parser.parse_args(argv)
    failures = check_live(args.prometheus, args.dashboards)
    total = len(list(queries(args.dashboards))) + len(list(variable_queries(args.dashboards)))
    for where, query, reason in failures:
        print(f"EMPTY {where}: {reason}\n    {query}")
    print(f"{total - len(failures)}/{total} dashboard queries return data")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
