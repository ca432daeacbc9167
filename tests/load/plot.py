"""Timeline of one or more load runs: requests/s, non-2xx/s and p99 latency, with event marks.

    python -m tests.load.plot deploy.json rollback.json --out reports/rolling.png --title "Rolling deploy"

Each run gets a column (side by side, labelled with ``--label`` or the run's own
label or file name); the three panels of a column share its time axis, in
seconds since the run started. Events carried by a run (``{"t", "host",
"event"}``) are drawn as vertical lines across the three panels.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

_OUT_WORDS = ("drain", "remov", "disabl", "down", "stop", "out")
_IN_WORDS = ("back", "enabl", "add", "restor", "up", "start", "in")


def load_run(path: str | Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    for key in ("meta", "timeline"):
        if key not in data:
            raise ValueError(f"{path}: not a load generator result (no {key!r})")
    return data


def _event_colour(text: str) -> str:
    words = text.lower()
    if any(w in words for w in _OUT_WORDS):
        return "tab:red"
    if any(w in words for w in _IN_WORDS):
        return "tab:green"
    return "tab:gray"


def _event_label(event: dict[str, Any]) -> str:
    host = str(event.get("host") or "").strip()
    text = str(event.get("event") or "").strip()
    return f"{host} {text}".strip() or "event"


def _series(run: dict[str, Any]) -> tuple[list[float], list[float], list[float], list[float], list[float]]:
    """Per-second series; counts of the partial first and last seconds are scaled to rates."""
    start = float(run["meta"]["started_at"])
    end = start + float(run["meta"].get("window_s", 0.0))
    xs: list[float] = []
    requests: list[float] = []
    sent: list[float] = []
    failures: list[float] = []
    p99: list[float] = []
    for entry in run["timeline"]:
        second = float(entry["t"])
        covered = min(second + 1.0, end) - max(second, start)
        scale = 1.0 / covered if covered >= 0.1 else math.nan
        xs.append(second - start)
        requests.append(float(entry["requests"]) * scale)
        sent.append(float(entry.get("sent", entry["requests"])) * scale)
        failures.append(float(entry["non_2xx"]) * scale)
        value = entry.get("p99_ms")
        p99.append(math.nan if value is None else float(value))
    if xs:  # steps-post draws a value up to the next x: close the last second
        for series in (requests, sent, failures, p99):
            series.append(series[-1])
        xs.append(xs[-1] + 1.0)
    return xs, requests, sent, failures, p99


def plot_runs(
    runs: Sequence[tuple[str, dict[str, Any]]], out: str | Path, *, title: str | None = None, dpi: int = 120
) -> Path:
    """Draw ``(label, result)`` pairs side by side into a PNG at ``out``."""
    if not runs:
        raise ValueError("nothing to plot")
    columns = len(runs)
    fig = Figure(figsize=(max(9.0, 6.5 * columns), 8.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, columns, sharex="col", sharey="row", squeeze=False)
    for column, (label, run) in enumerate(runs):
        meta = run["meta"]
        xs, requests, sent, failures, p99 = _series(run)
        top, middle, bottom = axes[0][column], axes[1][column], axes[2][column]
        # A bucket covers [t, t+1): steps-post draws it over that second.
        top.step(xs, requests, where="post", color="tab:blue", label="scheduled/s")
        if any(abs(a - b) > 0.5 for a, b in zip(sent, requests, strict=True) if not math.isnan(a + b)):
            top.step(xs, sent, where="post", color="tab:cyan", linestyle="--", linewidth=1, label="sent/s")
        target = meta.get("target_rate")
        if target:
            top.axhline(float(target), color="tab:blue", linestyle=":", linewidth=1, label=f"target {target:g}/s")
        middle.step(xs, failures, where="post", color="tab:red")
        middle.fill_between(xs, failures, step="post", color="tab:red", alpha=0.25)
        bottom.step(xs, p99, where="post", color="tab:purple")
        start = float(meta["started_at"])
        end = start + float(meta.get("window_s", xs[-1] if xs else 0.0))
        for event in run.get("events", []):
            t = float(event["t"])
            if not start - 5.0 <= t <= end + 5.0:
                continue
            x = t - start
            text = _event_label(event)
            colour = _event_colour(str(event.get("event", "")))
            for ax in (top, middle, bottom):
                ax.axvline(x, color=colour, linestyle="--", linewidth=1, alpha=0.8)
            top.annotate(
                text,
                xy=(x, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(3, -4),
                textcoords="offset points",
                rotation=90,
                va="top",
                ha="left",
                fontsize=8,
                color=colour,
            )
        started = datetime.fromtimestamp(start, UTC).strftime("%H:%M:%S UTC")
        lat = run.get("latency_ms", {})
        top.set_title(
            f"{label} (from {started})\nachieved {run.get('achieved_rate', 0):.0f}/s, "
            f"non-2xx {run.get('non_2xx', 0)}, p99 {lat.get('p99')} ms",
            fontsize=10,
        )
        top.legend(loc="lower right", fontsize=8)
        bottom.set_xlabel("seconds since start")
        for ax in (top, middle, bottom):
            ax.grid(True, alpha=0.3)
        if column == 0:
            top.set_ylabel("requests/s")
            middle.set_ylabel("non-2xx/s")
            bottom.set_ylabel("p99 latency (ms)")
    for row in axes:  # rows share their y axis: scale once every column is drawn
        row[0].relim()
        row[0].autoscale_view()
        row[0].set_ylim(bottom=0)
    if title:
        fig.suptitle(title)
    target_path = Path(out)
    target_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target_path, format="png", dpi=dpi)
    return target_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.load.plot", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="result JSON files written by loadgen --out")
    parser.add_argument("--out", type=Path, default=Path("reports/rolling.png"))
    parser.add_argument("--title")
    parser.add_argument(
        "--label", action="append", default=[], help="label of each run, in order (default: its own label)"
    )
    parser.add_argument("--dpi", type=int, default=120)
    args = parser.parse_args(argv)
    if args.label and len(args.label) != len(args.runs):
        parser.error("give one --label per run, or none")
    runs = []
    for index, path in enumerate(args.runs):
        run = load_run(path)
        label = args.label[index] if args.label else (run["meta"].get("label") or path.stem)
        runs.append((label, run))
    written = plot_runs(runs, args.out, title=args.title, dpi=args.dpi)
    print(written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
