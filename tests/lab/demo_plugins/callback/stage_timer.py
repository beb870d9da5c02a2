# -*- coding: utf-8 -*-
# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write one JSON line per task start/end (with its role) to $CUTOVER_STAGE_LOG, for the demo report."""

from __future__ import annotations

DOCUMENTATION = r"""
name: stage_timer
type: notification
short_description: Records task start and end times with their role, for the lab demo's timeline
description:
  - Appends JSON lines to the file named by C(CUTOVER_STAGE_LOG) (nothing when it is unset).
requirements:
  - enabled in ANSIBLE_CALLBACKS_ENABLED
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "stage_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._path = os.environ.get("CUTOVER_STAGE_LOG")

    def _write(self, event, task=None, result=None, **extra):
        if not self._path:
            return
        record = {"t": time.time(), "event": event}
        if task is not None:
            role = task._role.get_name() if task._role else None
            record.update(task=task.get_name(), role=role, tags=sorted(task.tags or []))
        if result is not None:
            record.update(host=result._host.get_name(), changed=bool(result._result.get("changed")),
                          failed=bool(result._result.get("failed")))
            # dns_cutover_wait's figures and the delta apply's, for the report's propagation table.
            for key in ("stage_times", "cache_clear_at", "max_old_ttl", "elapsed_s", "propagated", "freeze_started_at",
                        "read_only_set_at", "verified", "strategy"):
                if key in result._result and not result._result.get("_ansible_no_log"):
                    record[key] = result._result[key]
        record.update(extra)
        with open(self._path, "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._write("task_start", task)

    def v2_runner_on_ok(self, result):
        self._write("task_ok", result._task, result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._write("task_failed", result._task, result, ignored=ignore_errors)

    def v2_playbook_on_stats(self, stats):
        totals = {host: stats.summarize(host) for host in stats.processed}
        self._write("stats", totals=totals)
