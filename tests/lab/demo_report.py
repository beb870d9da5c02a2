"""Judge a demo run: traffic records + stage timings -> the numbers every field report asked for.

Pure functions over the traffic JSONL (tests/lab/traffic) and the stage log (the stage_timer
callback), so the judgement is unit-tested without a lab (tests/unit/test_demo_report.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

ROLE_STAGES = {
    "preflight": "preflight",
    "zone_prepare": "prepare",
    "data_prestage": "prestage",
    "web_stage": "web",
    "internal_api_stage": "api",
    "dns_stage": "dns",
    "db_stage": "db",
}
STAGE_ORDER = ["preflight", "prepare", "prestage", "web", "api", "dns", "db"]


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill mid-write
    return records


def stage_of(record: dict) -> str | None:
    role = (record.get("role") or "").split(".")[-1]
    return ROLE_STAGES.get(role)


def stage_windows(stage_log: list[dict]) -> dict[str, tuple[float, float]]:
    """First task start to last task end of each stage, over every playbook run in the log."""
    windows: dict[str, list[float]] = {}
    for record in stage_log:
        stage = stage_of(record)
        if stage is None:
            continue
        window = windows.setdefault(stage, [record["t"], record["t"]])
        window[0] = min(window[0], record["t"])
        window[1] = max(window[1], record["t"])
    return {stage: (window[0], window[1]) for stage, window in windows.items()}


def task_spans(stage_log: list[dict], role_suffix: str, name_part: str) -> float:
    """Seconds spent in the tasks of a role whose name contains name_part (all runs, loops summed)."""
    total = 0.0
    started: dict[str, float] = {}
    for record in stage_log:
        if not (record.get("role") or "").endswith(role_suffix) or name_part not in (record.get("task") or ""):
            continue
        if record.get("event") == "task_start":
            started[record["task"]] = record["t"]
        elif record.get("event") in ("task_ok", "task_failed") and record.get("task") in started:
            total += record["t"] - started.pop(record["task"])
    return total


def freeze_budget(stage_log: list[dict]) -> tuple[float, float]:
    """(final delta apply seconds, DB endpoint flip seconds incl. its propagation wait) of the db stage."""
    final_delta = task_spans(stage_log, "db_stage", "final delta")
    flip = task_spans(stage_log, "db_stage", "Point the DB endpoint") + task_spans(stage_log, "db_stage", "Wait until every server")
    return final_delta, flip


def is_rejected_write(record: dict) -> bool:
    return record.get("kind") == "write" and record.get("status") == 503


def is_acknowledged_write(record: dict) -> bool:
    return record.get("kind") == "write" and record.get("status") in (200, 201) and record.get("id") is not None


def is_failed(record: dict) -> bool:
    status = record.get("status")
    return record.get("error") is not None or status is None or status >= 400


@dataclass
class DemoJudgement:
    requests: int = 0
    acknowledged_writes: int = 0
    rejected_writes: int = 0
    failed_reads: int = 0
    failed_reads_outside_freeze: int = 0
    failed_writes_outside_freeze: int = 0
    freeze_window: tuple[float, float] | None = None
    failures_by_stage: dict[str, int] = field(default_factory=dict)
    served_by_new_before_web: int = 0
    served_by_old_after_cache_clear: int = 0
    first_new_at: float | None = None
    last_old_at: float | None = None

    @property
    def freeze_s(self) -> float:
        return self.freeze_window[1] - self.freeze_window[0] if self.freeze_window else 0.0


def stage_at(moment: float, windows: dict[str, tuple[float, float]]) -> str:
    for stage in STAGE_ORDER:
        if stage in windows and windows[stage][0] <= moment <= windows[stage][1]:
            return stage
    return "between stages"


def judge(traffic: list[dict], windows: dict[str, tuple[float, float]], cache_clear_at: float | None = None) -> DemoJudgement:
    judgement = DemoJudgement(requests=len(traffic))
    rejected = [r["t"] for r in traffic if is_rejected_write(r)]
    judgement.rejected_writes = len(rejected)
    judgement.freeze_window = (min(rejected), max(rejected)) if rejected else None

    def inside_freeze(moment: float) -> bool:
        return bool(judgement.freeze_window) and judgement.freeze_window[0] <= moment <= judgement.freeze_window[1]

    web_start = windows.get("web", (None, None))[0]
    for record in traffic:
        if is_acknowledged_write(record):
            judgement.acknowledged_writes += 1
        if record.get("side") == "new":
            judgement.first_new_at = min(judgement.first_new_at or record["t"], record["t"])
            if web_start is None or record["t"] < web_start:
                judgement.served_by_new_before_web += 1
        if record.get("side") == "old":
            judgement.last_old_at = max(judgement.last_old_at or record["t"], record["t"])
            if cache_clear_at is not None and record["t"] > cache_clear_at:
                judgement.served_by_old_after_cache_clear += 1
        if not is_failed(record):
            continue
        stage = stage_at(record["t"], windows)
        judgement.failures_by_stage[stage] = judgement.failures_by_stage.get(stage, 0) + 1
        if record.get("kind") == "read":
            judgement.failed_reads += 1
            if not inside_freeze(record["t"]):
                judgement.failed_reads_outside_freeze += 1
        elif not is_rejected_write(record) and not inside_freeze(record["t"]):
            judgement.failed_writes_outside_freeze += 1
    return judgement


def acknowledged_ids(traffic: list[dict]) -> list[int]:
    return sorted({int(r["id"]) for r in traffic if is_acknowledged_write(r)})


def per_second_series(traffic: list[dict], start: float) -> dict[str, dict[int, int]]:
    series: dict[str, dict[int, int]] = {"old": {}, "new": {}, "failed": {}}
    for record in traffic:
        second = int(record["t"] - start)
        key = "failed" if is_failed(record) else (record.get("side") or "failed")
        bucket = series.setdefault(key, {})
        bucket[second] = bucket.get(second, 0) + 1
    return series


def render_timeline(traffic: list[dict], windows: dict[str, tuple[float, float]], path: Path,
                    freeze_window: tuple[float, float] | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = min([r["t"] for r in traffic] + [w[0] for w in windows.values()] or [0.0])
    series = per_second_series(traffic, start)
    figure, axes = plt.subplots(figsize=(12, 4.5))
    for key, colour in (("old", "tab:blue"), ("new", "tab:green"), ("failed", "tab:red")):
        points = sorted(series.get(key, {}).items())
        if points:
            axes.plot([p[0] for p in points], [p[1] for p in points], label=f"served by {key}" if key != "failed" else "failed",
                      color=colour, linewidth=1.4, marker="x" if key == "failed" else None, linestyle="-" if key != "failed" else "none")
    for stage in STAGE_ORDER:
        if stage in windows:
            begin, end = windows[stage]
            axes.axvspan(begin - start, end - start, alpha=0.08, color="grey")
            axes.axvline(begin - start, color="grey", linewidth=0.6, linestyle="--")
            axes.text(begin - start, axes.get_ylim()[1] * 0.95, stage, rotation=90, fontsize=8, va="top")
    if freeze_window:
        axes.axvspan(freeze_window[0] - start, freeze_window[1] - start, alpha=0.25, color="tab:red", label="write freeze")
    axes.set_xlabel("seconds since start")
    axes.set_ylabel("requests per second")
    axes.set_title("cutover.migration lab demo: traffic during the migration")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=4, fontsize=8, frameon=False)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
