"""Judge a pip-audit JSON report (`make audit`, see scripts/audit.sh).

pip-audit lists known vulnerabilities but not how bad they are. This adds the
two facts the build may fail on, and only those:

* severity: the highest of the advisory's CVSS v3 base score (computed from its
  vector) and GitHub's rating (HIGH = 7.0, CRITICAL = 9.0), from OSV;
* known exploitation: one of its CVE ids is in CISA's Known Exploited
  Vulnerabilities catalogue.

A finding fails the audit when it is known-exploited or scores 7.0 or more,
unless `.pip-audit-allowlist` names it (by any of its ids) with a reason and an
expiry date that has not passed. A dependency pip-audit could not audit fails
too: an audit that looked at nothing must not pass. Findings without any rating
are listed, not failed: the rule is to fail only on what is known to be severe.

    python scripts/audit.py --allowlist .pip-audit-allowlist REPORT.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HIGH = 7.0
OSV_VULN_URL = "https://api.osv.dev/v1/vulns/{}"
KEV_URL = "https://www.cisa.gov/sites/default/files/feeds/known_exploited_vulnerabilities.json"
GITHUB_RATINGS = {"LOW": 0.1, "MODERATE": 4.0, "MEDIUM": 4.0, "HIGH": 7.0, "CRITICAL": 9.0}


@dataclass(frozen=True)
class Allowed:
    vuln_id: str
    expires: datetime.date
    reason: str


@dataclass
class Finding:
    package: str
    version: str
    vuln_id: str
    aliases: tuple[str, ...] = ()
    fix_versions: tuple[str, ...] = ()
    score: float | None = None
    exploited: bool = False

    @property
    def ids(self) -> tuple[str, ...]:
        return (self.vuln_id, *self.aliases)


@dataclass
class Verdict:
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_allowlist(text: str) -> dict[str, Allowed]:
    """`ID YYYY-MM-DD reason...` per line; `#` starts a comment. Every field is required."""
    entries: dict[str, Allowed] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split(None, 2)
        if len(parts) < 3:
            raise ValueError(f"allowlist line {number}: expected 'ID YYYY-MM-DD reason', got {line!r}")
        vuln_id, expires, reason = parts
        try:
            date = datetime.date.fromisoformat(expires)
        except ValueError:
            raise ValueError(f"allowlist line {number}: {expires!r} is not a date (YYYY-MM-DD)") from None
        if vuln_id in entries:
            raise ValueError(f"allowlist line {number}: {vuln_id} is listed twice")
        entries[vuln_id] = Allowed(vuln_id, date, reason)
    return entries


# CVSS v3.x base metrics (FIRST's specification, section 7.4).
_AV = {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2}
_AC = {"L": 0.77, "H": 0.44}
_PR_UNCHANGED = {"N": 0.85, "L": 0.62, "H": 0.27}
_PR_CHANGED = {"N": 0.85, "L": 0.68, "H": 0.5}
_UI = {"N": 0.85, "R": 0.62}
_CIA = {"H": 0.56, "L": 0.22, "N": 0.0}


def _roundup(value: float) -> float:
    """CVSS v3.1 Roundup: the smallest number with one decimal that is >= value."""
    scaled = round(value * 100000)
    if scaled % 10000 == 0:
        return scaled / 100000.0
    return (math.floor(scaled / 10000) + 1) / 10.0


def cvss3_base_score(vector: str) -> float:
    """Base score of a `CVSS:3.0/...` or `CVSS:3.1/...` vector."""
    parts = vector.strip().split("/")
    if not parts[0].startswith("CVSS:3"):
        raise ValueError(f"not a CVSS v3 vector: {vector!r}")
    metrics = dict(part.split(":", 1) for part in parts[1:])
    try:
        changed = metrics["S"] == "C"
        iss = 1 - (1 - _CIA[metrics["C"]]) * (1 - _CIA[metrics["I"]]) * (1 - _CIA[metrics["A"]])
        impact = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 if changed else 6.42 * iss
        privileges = (_PR_CHANGED if changed else _PR_UNCHANGED)[metrics["PR"]]
        exploitability = 8.22 * _AV[metrics["AV"]] * _AC[metrics["AC"]] * privileges * _UI[metrics["UI"]]
    except KeyError as missing:
        raise ValueError(f"incomplete CVSS v3 vector {vector!r}: {missing}") from None
    if impact <= 0:
        return 0.0
    if changed:
        return _roundup(min(1.08 * (impact + exploitability), 10))
    return _roundup(min(impact + exploitability, 10))


def score_of(record: dict) -> float | None:
    """The highest rating an OSV record carries, or None when it has none we read."""
    scores = []
    label = str((record.get("database_specific") or {}).get("severity", "")).upper()
    if label in GITHUB_RATINGS:
        scores.append(GITHUB_RATINGS[label])
    for severity in record.get("severity") or []:
        if severity.get("type") == "CVSS_V3":
            scores.append(cvss3_base_score(severity["score"]))
    return max(scores) if scores else None


def findings_from_report(report: dict) -> tuple[list[Finding], list[str]]:
    """The vulnerabilities in a pip-audit JSON report, and the dependencies it skipped."""
    found, skipped = [], []
    for dep in report.get("dependencies", []):
        if dep.get("skip_reason"):
            skipped.append(f"{dep['name']}: {dep['skip_reason']}")
            continue
        for vuln in dep.get("vulns", []):
            found.append(
                Finding(
                    package=dep["name"],
                    version=dep["version"],
                    vuln_id=vuln["id"],
                    aliases=tuple(vuln.get("aliases", [])),
                    fix_versions=tuple(vuln.get("fix_versions", [])),
                )
            )
    return found, skipped


def judge(findings: list[Finding], skipped: list[str], allowlist: dict[str, Allowed], today: datetime.date) -> Verdict:
    verdict = Verdict()
    used: set[str] = set()
    for dep in skipped:
        verdict.failures.append(f"not audited: {dep}")
    for f in findings:
        rating = "unrated" if f.score is None else f"CVSS {f.score:.1f}"
        what = f"{f.package} {f.version} {f.vuln_id} ({rating}{', KNOWN EXPLOITED' if f.exploited else ''})"
        fix = f"; fixed in {', '.join(f.fix_versions)}" if f.fix_versions else "; no fixed version yet"
        entry = next((allowlist[i] for i in f.ids if i in allowlist), None)
        severe = f.exploited or (f.score is not None and f.score >= HIGH)
        if entry is not None:
            used.add(entry.vuln_id)
            if entry.expires < today:
                verdict.failures.append(f"{what}: allowlist entry {entry.vuln_id} expired on {entry.expires}{fix}")
            else:
                verdict.notes.append(f"{what}: allowed until {entry.expires}: {entry.reason}")
        elif severe:
            verdict.failures.append(f"{what}{fix}")
        elif f.score is None:
            verdict.notes.append(f"{what}: no severity rating found, not failing{fix}")
        else:
            verdict.notes.append(f"{what}: below {HIGH}, not failing{fix}")
    for vuln_id in sorted(set(allowlist) - used):
        verdict.notes.append(f"allowlist entry {vuln_id} matches no finding: remove it")
    return verdict


def _fetch_json(url: str) -> dict | None:
    request = urllib.request.Request(url, headers={"User-Agent": "brigade-audit"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def enrich(findings: list[Finding]) -> None:
    """Fill in score and exploited from OSV and CISA's KEV catalogue (network)."""
    if not findings:
        return
    kev_feed = _fetch_json(KEV_URL) or {}
    kev = {v["cveID"] for v in kev_feed.get("vulnerabilities", [])}
    if not kev:
        raise RuntimeError(f"the KEV catalogue at {KEV_URL} is empty or missing")
    for f in findings:
        scores = []
        for vuln_id in f.ids:
            record = _fetch_json(OSV_VULN_URL.format(vuln_id))
            if record is not None and (score := score_of(record)) is not None:
                scores.append(score)
        f.score = max(scores) if scores else None
        f.exploited = any(i in kev for i in f.ids)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allowlist", type=Path, required=True)
    parser.add_argument("report", type=Path)
    args = parser.parse_args(argv)

    try:
        allowlist = parse_allowlist(args.allowlist.read_text() if args.allowlist.exists() else "")
    except ValueError as error:
        print(f"brigade: {args.allowlist}: {error}", file=sys.stderr)
        return 2
    findings, skipped = findings_from_report(json.loads(args.report.read_text()))
    try:
        enrich(findings)
    except (OSError, RuntimeError, ValueError) as error:
        print(f"brigade: could not rate the findings: {error}", file=sys.stderr)
        return 2
    verdict = judge(findings, skipped, allowlist, datetime.date.today())
    audited = len(json.loads(args.report.read_text()).get("dependencies", [])) - len(skipped)
    print(f"audit: {audited} locked dependencies audited, {len(findings)} known vulnerabilities")
    for note in verdict.notes:
        print(f"  note: {note}")
    for failure in verdict.failures:
        print(f"  FAIL: {failure}")
    if verdict.failures:
        print(f"audit: {len(verdict.failures)} finding(s) fail the build: high severity, known exploited, not audited")
        return 1
    print("audit: passed (nothing high-severity or known-exploited outside the allowlist)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
