"""`make demo`: migrate a running service in the lab while traffic flows, and print the numbers.

1. brings the lab up (labctl) and seeds "old prod" (tests/lab/demo_seed.py);
2. starts the traffic generator (tests/lab/traffic) against www.<domain> through the lab resolver;
3. runs `ansible-playbook playbooks/migrate.yml -i inventories/lab -l prod` (with DEMO_FAULT=<stage>,
   kills it inside that stage first, then reruns);
4. stops traffic, checks every acknowledged write is in the new database, and judges the run
   (tests/lab/demo_report.py);
5. runs the playbook once more and counts changed tasks;
6. prints the summary, ending with the machine-readable `demo:` line, and writes
   demo-report/report.md and demo-report/timeline.png.

Options (environment): DEMO_ROWS (orders in old prod, default 200000), DEMO_FAULT=<stage>
(prepare|prestage|web|api|dns|db), DEMO_KEEP=1 (leave the lab up), DEMO_RATE (requests/s, default 20).
"""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))

import demo_report  # noqa: E402
import lab_config  # noqa: E402

REPO = lab_config.REPO_ROOT
REPORT_DIR = Path(os.environ.get("DEMO_REPORT_DIR", REPO / "demo-report"))
VENV_BIN = REPO / ".venv" / "bin"
FAULT_STAGES = {"prepare": "zone_prepare", "prestage": "data_prestage", "web": "web_stage",
                "api": "internal_api_stage", "dns": "dns_stage", "db": "db_stage"}


def say(message: str) -> None:
    print(f"demo: {message}" if not message.startswith("demo:") else message, flush=True)


def lab_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(lab_config.lab_environment())
    env.update({
        "ANSIBLE_CALLBACKS_ENABLED": "stage_timer",
        "ANSIBLE_CALLBACK_PLUGINS": str(lab_config.LAB_DIR / "demo_plugins" / "callback"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "PATH": f"{VENV_BIN}:{env.get('PATH', '')}",
    })
    return env


def run_playbook(log_path: Path, stage_log: Path, kill_in_role: str | None = None) -> tuple[int, str]:
    """Run migrate.yml; with kill_in_role, SIGKILL it a moment after that role's first task starts."""
    env = lab_env()
    env["CUTOVER_STAGE_LOG"] = str(stage_log)
    command = [str(VENV_BIN / "ansible-playbook"), "playbooks/migrate.yml", "-i", "inventories/lab", "-l", "prod"]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if kill_in_role:
            while process.poll() is None:
                in_stage = [r for r in demo_report.read_jsonl(stage_log) if (r.get("role") or "").endswith(kill_in_role)]
                # Killed just after the stage's first change: half done, the worst place to stop.
                changed = [r for r in in_stage if r.get("event") == "task_ok" and r.get("changed")]
                if changed:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                    say(f"fault injected: killed the playbook inside {kill_in_role} after '{changed[0]['task']}'")
                    break
                time.sleep(0.1)
        process.wait()
    return process.returncode, log_path.read_text(errors="replace")


def changed_in_last_run(stage_log: Path) -> int:
    stats = [r for r in demo_report.read_jsonl(stage_log) if r.get("event") == "stats"]
    if not stats:
        return -1
    return sum(int(host.get("changed", 0)) for host in stats[-1]["totals"].values())


def missing_in_new_database(ids: list[int], database: str, table: str = "orders") -> list[int]:
    import pymysql

    url = urlparse(lab_config.lab_environment()["LAB_MYSQL_NEW"])
    missing: list[int] = []
    connection = pymysql.connect(host=url.hostname, port=url.port, user=url.username, password=url.password, database=database)
    try:
        with connection.cursor() as cursor:
            for start in range(0, len(ids), 5000):
                batch = ids[start:start + 5000]
                cursor.execute(f"SELECT id FROM `{table}` WHERE id IN ({','.join(['%s'] * len(batch))})", batch)
                present = {row[0] for row in cursor.fetchall()}
                missing.extend(i for i in batch if i not in present)
    finally:
        connection.close()
    return missing


def parse_moment(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def dns_propagation(stage_log: list[dict]) -> list[dict]:
    rows = []
    for record in stage_log:
        if record.get("event") == "task_ok" and ("stage_times" in record or "cache_clear_at" in record):
            rows.append({"stage": demo_report.stage_of(record) or "?", "task": record.get("task"),
                         "elapsed_s": record.get("elapsed_s"), "stage_times": record.get("stage_times"),
                         "cache_clear_at": record.get("cache_clear_at"), "max_old_ttl": record.get("max_old_ttl")})
    return rows


def write_report(judgement, windows, propagation, lost, changed_on_rerun, timings, fault, budget) -> str:
    lines = ["# cutover.migration lab demo", "",
             f"Run at {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}"
             + (f", with a fault injected in the `{fault}` stage and a rerun" if fault else "") + ".", "",
             "![timeline](timeline.png)", "", "## Outcome", "",
             "| figure | value |", "|---|---|",
             f"| requests sent | {judgement.requests} |",
             f"| acknowledged writes | {judgement.acknowledged_writes} |",
             f"| acknowledged writes missing in the new database (lost) | {len(lost)} |",
             f"| writes rejected (read-only, inside the freeze) | {judgement.rejected_writes} |",
             f"| write-freeze window (first to last rejected write) | {judgement.freeze_s:.1f} s |",
             f"| final delta apply (db stage) | {budget[0]:.1f} s |",
             f"| DB endpoint flip and its propagation wait | {budget[1]:.1f} s |",
             f"| failed reads (all / outside the freeze) | {judgement.failed_reads} / {judgement.failed_reads_outside_freeze} |",
             f"| failed writes outside the freeze | {judgement.failed_writes_outside_freeze} |",
             f"| requests served by the new side before the web stage | {judgement.served_by_new_before_web} |",
             f"| requests served by the old side after cache expiry | {judgement.served_by_old_after_cache_clear} |",
             f"| changed tasks on a rerun | {changed_on_rerun} |", "",
             "## Stages", "", "| stage | wall time (s) | failed requests in it |", "|---|---|---|"]
    for stage in demo_report.STAGE_ORDER:
        if stage in windows:
            begin, end = windows[stage]
            lines.append(f"| {stage} | {end - begin:.1f} | {judgement.failures_by_stage.get(stage, 0)} |")
    lines += ["", "## DNS propagation (dns_cutover_wait)", "", "| stage | task | elapsed (s) | cache clear at | max old TTL |",
              "|---|---|---|---|---|"]
    for row in propagation:
        lines.append(f"| {row['stage']} | {row['task']} | {row['elapsed_s']} | {row['cache_clear_at']} | {row['max_old_ttl']} |")
    lines += ["", "## Phases of the demo run", "", "| phase | seconds |", "|---|---|"]
    lines += [f"| {name} | {seconds:.1f} |" for name, seconds in timings.items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    import demo_seed

    fault = os.environ.get("DEMO_FAULT") or None
    if fault and fault not in FAULT_STAGES:
        say(f"DEMO_FAULT={fault!r} is not a stage; use one of {', '.join(FAULT_STAGES)}")
        return 2
    rows = int(os.environ.get("DEMO_ROWS", "200000"))
    rate = float(os.environ.get("DEMO_RATE", "20"))
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    traffic_file = REPORT_DIR / "traffic.jsonl"
    stage_log = REPORT_DIR / "stages.jsonl"
    rerun_log = REPORT_DIR / "stages-rerun.jsonl"
    playbook_log = REPORT_DIR / "playbook.log"
    stop_file = REPORT_DIR / "traffic.stop"
    for path in (traffic_file, stage_log, rerun_log, playbook_log, stop_file):
        path.unlink(missing_ok=True)
    timings: dict[str, float] = {}

    clock = time.monotonic()
    subprocess.run([str(lab_config.LAB_DIR / "labctl"), "up"], check=True)
    world = demo_seed.seed_old_prod(rows=rows)
    timings["lab up + seed old prod"] = time.monotonic() - clock

    clock = time.monotonic()
    traffic = subprocess.Popen(
        [str(lab_config.LAB_DIR / "traffic"), "run", "--url-host", world["www"], "--resolver", lab_config.RESOLVER_ADDRESS,
         "--until-file", str(stop_file), "--rate", str(rate), "--write-ratio", "0.3", "--out", str(traffic_file)],
        cwd=REPO, env=lab_env(), stdout=subprocess.DEVNULL, stderr=open(REPORT_DIR / "traffic.log", "wb"))
    time.sleep(3)  # a baseline of old-side traffic before anything moves

    try:
        if fault:
            code, _output = run_playbook(playbook_log, stage_log, kill_in_role=FAULT_STAGES[fault])
            say(f"interrupted run ended with {code}; rerunning the whole playbook")
        code, output = run_playbook(playbook_log, stage_log)
    finally:
        time.sleep(3)  # traffic settles on the new side
        stop_file.write_text("stop")
        try:
            traffic.wait(timeout=60)
        except subprocess.TimeoutExpired:
            traffic.kill()
    timings["migration under traffic"] = time.monotonic() - clock
    if code != 0:
        say(f"the playbook failed (exit {code}); last lines of {playbook_log}:")
        print("\n".join(output.splitlines()[-30:]))

    clock = time.monotonic()
    code_rerun, _output = run_playbook(REPORT_DIR / "playbook-rerun.log", rerun_log)
    changed_on_rerun = changed_in_last_run(rerun_log) if code_rerun == 0 else -1
    timings["rerun (should change nothing)"] = time.monotonic() - clock

    records = demo_report.read_jsonl(traffic_file)
    log_records = demo_report.read_jsonl(stage_log)
    windows = demo_report.stage_windows(log_records)
    propagation = dns_propagation(log_records)
    dns_clear = [parse_moment(row["cache_clear_at"]) for row in propagation if row["stage"] == "dns" and row["cache_clear_at"]]
    judgement = demo_report.judge(records, windows, cache_clear_at=max([m for m in dns_clear if m] or [0]) or None)
    lost = missing_in_new_database(demo_report.acknowledged_ids(records), world["database"])
    demo_report.render_timeline(records, windows, REPORT_DIR / "timeline.png", judgement.freeze_window)
    budget = demo_report.freeze_budget(log_records)
    (REPORT_DIR / "report.md").write_text(write_report(judgement, windows, propagation, lost, changed_on_rerun, timings, fault,
                                                       budget))

    print()
    print(f"{'stage':<12}{'wall s':>8}{'failed requests':>18}")
    for stage in demo_report.STAGE_ORDER:
        if stage in windows:
            print(f"{stage:<12}{windows[stage][1] - windows[stage][0]:>8.1f}{judgement.failures_by_stage.get(stage, 0):>18}")
    print(f"requests={judgement.requests} acknowledged_writes={judgement.acknowledged_writes} "
          f"failed_reads_outside_freeze={judgement.failed_reads_outside_freeze} "
          f"served_by_old_after_cache_clear={judgement.served_by_old_after_cache_clear}")
    final_delta_s, endpoint_flip_s = demo_report.freeze_budget(log_records)
    print(f"freeze_s={judgement.freeze_s:.1f} final_delta_s={final_delta_s:.1f} endpoint_flip_s={endpoint_flip_s:.1f} "
          f"(the freeze should last no longer than the final delta plus the endpoint flip)")
    print(f"report: {REPORT_DIR / 'report.md'}  timeline: {REPORT_DIR / 'timeline.png'}")
    print(f"demo: lost_writes={len(lost)} failed_reads={judgement.failed_reads_outside_freeze} "
          f"rejected_writes={judgement.rejected_writes} freeze_s={judgement.freeze_s:.1f} changed_on_rerun={changed_on_rerun}")
    if os.environ.get("DEMO_KEEP") != "1":
        subprocess.run([str(lab_config.LAB_DIR / "labctl"), "down"], check=False)
    ok = not lost and code == 0 and judgement.failed_reads_outside_freeze == 0 and changed_on_rerun == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
