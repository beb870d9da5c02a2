#!/usr/bin/python
# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# ruff: noqa: E402  (Ansible modules put DOCUMENTATION before the imports)

from __future__ import annotations

DOCUMENTATION = r"""
module: mysql_delta_apply
short_description: Copy a MySQL/MariaDB database days ahead, then apply only the delta in the cutover window
version_added: 0.1.0
description:
  - Makes the target database's tables equal to the source's, row for row and byte for byte, touching only the rows
    that differ. The first run into an empty target is the bulk load; later runs move only the delta, so the
    cutover window holds the last few minutes of writes instead of a whole dump and restore.
  - Strategy C(checksum) chunks each table by its primary key (or a non-null unique key), asks both servers at the
    same moment for each chunk's row count and a 128-bit MD5-based hash over every column (NULL distinct from the
    empty string), narrows differing chunks down to rows, and copies only those (inserts, updates and deletes). It
    needs nothing from the source but SELECT.
  - Strategy C(binlog) reads the source's ROW binary log from the position recorded by the previous load or verify
    (in the target's state table) to the current end, and applies the touched rows in order; the new position is
    stored in the same target transaction as the rows, so a crash neither repeats nor skips an event. Tables with
    no recorded position are loaded by checksum first.
  - Strategy C(watermark) copies rows whose I(watermark_columns) value is above the stored high-water mark. Deletes
    are not seen.
  - Every chunk (or binlog batch) is one target transaction, with foreign key checks off in that session only.
    Generated columns are never written. Tables without a primary or unique key are copied whole in one
    transaction (listed in RV(keyless_tables)).
  - Schema drift (a table or column missing on the target, a different type) fails before anything is written.
  - Not copied - users and grants, stored procedures and functions, triggers, events, views, the schema itself
    (DDL); see the collection's docs/mysql_delta_apply.md.
author:
  - cutover.migration contributors (@cutover-migration)
requirements:
  - python >= 3.9
  - PyMySQL >= 1.0
  - mysql-replication >= 1.0 (strategy=binlog only)
options:
  source:
    description:
      - The old database, read only (except I(freeze_source)).
    type: dict
    required: true
    suboptions:
      host:
        description: Server host name or address.
        type: str
        default: 127.0.0.1
      port:
        description: Server port.
        type: int
        default: 3306
      user:
        description: Account to log in as.
        type: str
      password:
        description: Password of I(user).
        type: str
      database:
        description: Database (schema) name. The target's may differ from the source's.
        type: str
        required: true
      ssl_ca:
        description: CA certificate file to verify the server's TLS certificate (RDS - the region's bundle).
        type: path
      ssl_cert:
        description: Client certificate file, when the server requires one.
        type: path
      ssl_key:
        description: Key file of I(ssl_cert).
        type: path
      connect_timeout:
        description: Seconds to wait for the connection.
        type: int
        default: 10
  target:
    description:
      - The new database; its schema must already be loaded (for example with C(mysqldump --no-data)).
    type: dict
    required: true
    suboptions:
      host:
        description: Server host name or address.
        type: str
        default: 127.0.0.1
      port:
        description: Server port.
        type: int
        default: 3306
      user:
        description: Account to log in as.
        type: str
      password:
        description: Password of I(user).
        type: str
      database:
        description: Database (schema) name. The target's may differ from the source's.
        type: str
        required: true
      ssl_ca:
        description: CA certificate file to verify the server's TLS certificate (RDS - the region's bundle).
        type: path
      ssl_cert:
        description: Client certificate file, when the server requires one.
        type: path
      ssl_key:
        description: Key file of I(ssl_cert).
        type: path
      connect_timeout:
        description: Seconds to wait for the connection.
        type: int
        default: 10
  tables:
    description:
      - Tables to copy. Default - every base table of the source database (views are not copied).
    type: list
    elements: str
    default: []
  exclude_tables:
    description: Tables to leave out.
    type: list
    elements: str
    default: []
  strategy:
    description:
      - How the delta is found; see the description.
    type: str
    choices: [checksum, binlog, watermark]
    default: checksum
  watermark_columns:
    description:
      - For I(strategy=watermark), the column of each table whose value grows on every write, as a mapping of
        table name to column name (C(updated_at) for orders, C(id) for an append-only events table).
        Every copied table needs one.
    type: dict
    default: {}
  chunk_size:
    description:
      - Rows per chunk. Default - start at 5000 and adapt so one chunk's checksum takes about 0.5 s.
    type: int
  parallel_tables:
    description:
      - Tables worked on at the same time, each with its own pair of connections.
      - A table loaded into an empty target is written by two target connections, its chunks still committed in key
        order.
    type: int
    default: 2
  fix_auto_increment:
    description:
      - Set each target table's AUTO_INCREMENT to at least the source's (read fresh from SHOW CREATE TABLE) and
        above the target's highest id, so the first insert after the cutover does not reuse an id.
    type: bool
    default: true
  verify:
    description:
      - After applying, check that the chunks' checksums match on both sides (the chunks that differed for
        C(checksum); every chunk for C(binlog) and C(watermark)); fail listing the tables and chunks that do not.
    type: bool
    default: true
  freeze_source:
    description:
      - C(read_only) sets the source's global C(read_only) before the final pass and reports when
        (RV(source_frozen_at)); nothing is written behind the copy after that. Accounts with SUPER or READ_ONLY ADMIN
        can still write. Undo with C(SET GLOBAL read_only = OFF) if you roll back.
    type: str
    choices: [none, read_only]
    default: none
  state_table:
    description:
      - Table in the target database keeping progress (resume points, binlog positions, watermarks). Drop it after the
        cutover.
    type: str
    default: _cutover_delta_state
notes:
  - Check mode reads both sides and returns the same counts without writing anything. Diff mode shows the counts per
    table.
  - Run the final pass with I(freeze_source=read_only) (or with the application stopped); on a source still being
    written, I(verify) can fail on rows that changed while it ran.
seealso:
  - name: Cutover sequence and grants
    description: docs/mysql_delta_apply.md in the collection.
    link: https://github.com/cutover/migration/blob/main/docs/mysql_delta_apply.md
"""

EXAMPLES = r"""
# Days ahead: bulk-load the new Aurora cluster (empty tables, schema loaded) from the old server.
- name: Initial load of the shop database
  cutover.migration.mysql_delta_apply:
    source: &old_db
      host: db-old.internal.example.com
      user: migration
      password: "{{ vault_old_db_password }}"
      database: shop
    target: &new_db
      host: shop.cluster-abc123.ap-northeast-1.rds.amazonaws.com
      user: migration
      password: "{{ vault_new_db_password }}"
      database: shop
      ssl_ca: /etc/ssl/rds/ap-northeast-1-bundle.pem
    exclude_tables: [sessions]

# The night before: catch up from the binary log position the load recorded.
- name: Catch up by binlog
  cutover.migration.mysql_delta_apply:
    source: *old_db
    target: *new_db
    strategy: binlog
    exclude_tables: [sessions]

# In the window: freeze the old server, apply the last delta, verify, then repoint the application.
- name: Final delta
  cutover.migration.mysql_delta_apply:
    source: *old_db
    target: *new_db
    strategy: binlog
    freeze_source: read_only
    exclude_tables: [sessions]
  register: final_delta

- name: Show what moved
  ansible.builtin.debug:
    msg: "{{ final_delta.rows_inserted }} inserted, {{ final_delta.rows_updated }} updated, frozen at {{ final_delta.source_frozen_at }}"

# A source without binary logs: rows with a growing updated_at only (deletes are not seen).
- name: Watermark delta of the append-mostly tables
  cutover.migration.mysql_delta_apply:
    source: *old_db
    target: *new_db
    tables: [orders, order_events]
    strategy: watermark
    watermark_columns:
      orders: updated_at
      order_events: id
"""

RETURN = r"""
rows_inserted:
  description: Rows inserted on the target, all tables (in check mode, that would be).
  returned: always
  type: int
  sample: 1200
rows_updated:
  description: Rows updated on the target, all tables.
  returned: always
  type: int
  sample: 310
rows_deleted:
  description: Rows deleted on the target, all tables.
  returned: always
  type: int
  sample: 12
strategy:
  description: The strategy used.
  returned: always
  type: str
  sample: checksum
tables:
  description:
    - Per table - C(rows_inserted), C(rows_updated), C(rows_deleted), C(chunks_checked), C(chunks_differing),
      C(auto_increment) (the target's AUTO_INCREMENT afterwards, null without an auto-increment column),
      C(copied_whole) (a keyless table copied whole) and, when a crashed pass was resumed, C(resumed_from).
    - For C(binlog) the row counts are the row events applied.
  returned: always
  type: dict
  sample: {"orders": {"rows_inserted": 20, "rows_updated": 3, "rows_deleted": 1, "chunks_checked": 40,
                      "chunks_differing": 2, "auto_increment": 100021, "copied_whole": false}}
binlog_position:
  description:
    - Source binary log coordinates (C(file), C(position), C(gtid)) the target is consistent with - for C(checksum)
      and C(watermark) those taken before the pass, for C(binlog) the position applied up to. Null when the source
      has no binary log.
  returned: always
  type: dict
  sample: {"file": "mysql-bin.000042", "position": 1830021, "gtid": "0-1-52001"}
verified:
  description: True when I(verify) ran and every chunk matched; null when it did not run (check mode, verify=false).
  returned: always
  type: bool
elapsed_s:
  description: Wall time of the run in seconds.
  returned: always
  type: float
  sample: 12.5
target_writes:
  description: Write statements sent to the target (0 on a run that found nothing to do).
  returned: always
  type: int
  sample: 14
source_read_only:
  description: Whether the source is read only at the end of the run.
  returned: always
  type: bool
source_frozen_at:
  description: UTC time at which this run set the source read only (I(freeze_source=read_only)), else null.
  returned: always
  type: str
  sample: "2025-03-01T01:00:02.123456+00:00"
deletes_seen:
  description: False for C(watermark), which cannot see rows deleted on the source.
  returned: always
  type: bool
keyless_tables:
  description: Tables without a primary or non-null unique key; they are compared and copied whole.
  returned: always
  type: list
  elements: str
warnings:
  description: Things to know about this run's result.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.apply import run_delta
from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.errors import DeltaError
from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.mysql import (
    HAS_PYMYSQL,
    PYMYSQL_IMPORT_ERROR,
)
from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.options import delta_options

SIDE_OPTIONS = {
    "host": {"type": "str", "default": "127.0.0.1"},
    "port": {"type": "int", "default": 3306},
    "user": {"type": "str"},
    "password": {"type": "str", "no_log": True},
    "database": {"type": "str", "required": True},
    "ssl_ca": {"type": "path"},
    "ssl_cert": {"type": "path"},
    "ssl_key": {"type": "path", "no_log": False},
    "connect_timeout": {"type": "int", "default": 10},
}

ARGUMENT_SPEC = {
    "source": {"type": "dict", "required": True, "options": SIDE_OPTIONS},
    "target": {"type": "dict", "required": True, "options": SIDE_OPTIONS},
    "tables": {"type": "list", "elements": "str", "default": []},
    "exclude_tables": {"type": "list", "elements": "str", "default": []},
    "strategy": {"type": "str", "choices": ["checksum", "binlog", "watermark"], "default": "checksum"},
    "watermark_columns": {"type": "dict", "default": {}},
    "chunk_size": {"type": "int"},
    "parallel_tables": {"type": "int", "default": 2},
    "fix_auto_increment": {"type": "bool", "default": True},
    "verify": {"type": "bool", "default": True},
    "freeze_source": {"type": "str", "choices": ["none", "read_only"], "default": "none"},
    "state_table": {"type": "str", "default": "_cutover_delta_state"},
}


def render_diff(result: dict) -> dict:
    """Per table: what the target holds of the delta before, and what it will hold after."""
    before, after = [], []
    for name, counts in sorted(result["tables"].items()):
        moved = counts["rows_inserted"] + counts["rows_updated"] + counts["rows_deleted"]
        if moved:
            before.append(f"{name}: {counts['chunks_differing']} of {counts['chunks_checked']} chunks differ\n")
            after.append(f"{name}: +{counts['rows_inserted']} ~{counts['rows_updated']} -{counts['rows_deleted']} rows\n")
    return {"before": "".join(before), "after": "".join(after),
            "before_header": "target (now)", "after_header": f"target after {result['strategy']} delta"}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if not HAS_PYMYSQL:
        module.fail_json(msg=missing_required_lib("PyMySQL"), exception=str(PYMYSQL_IMPORT_ERROR))
    try:
        options = delta_options(module.params)
        result = run_delta(options, check_mode=module.check_mode)
    except DeltaError as error:
        module.fail_json(msg=str(error), changed=False, **error.details)
    if module._diff:
        result["diff"] = render_diff(result)
    if module.check_mode:
        result["changed"] = any(c["rows_inserted"] or c["rows_updated"] or c["rows_deleted"]
                                for c in result["tables"].values())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
