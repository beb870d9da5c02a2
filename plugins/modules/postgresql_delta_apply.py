#!/usr/bin/python
# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# ruff: noqa: E402  (Ansible modules put DOCUMENTATION before the imports)

from __future__ import annotations

DOCUMENTATION = r"""
module: postgresql_delta_apply
short_description: Copy a PostgreSQL database days ahead, then apply only the delta in the cutover window
version_added: 0.1.0
description:
  - Makes the target database's tables equal to the source's, row for row, touching only the rows that differ, and
    sets every sequence of the copied tables past the source's value and past the target's highest key. The first
    run into an empty target is the bulk load (COPY); later runs move only the delta.
  - The PostgreSQL counterpart of M(cutover.migration.mysql_delta_apply), with the same options and return values
    wherever they mean the same, and the same planning core (chunks, checksums, state table, resume).
  - Strategy C(checksum) chunks each table by its primary key (or a non-null unique key), asks both servers at the
    same moment for each chunk's row count and sums over the MD5 of every row's record text (NULL distinct from the
    empty string), narrows differing chunks down to rows, and copies only those (inserts, updates and deletes) with
    COPY. It needs nothing from the source but SELECT.
  - Strategy C(logical) creates a publication and a logical replication slot (C(pgoutput)) on the source at the
    first run, loads or verifies every table by checksum, and records the slot's consistent point in the target's
    state table. A later run reads the slot's committed transactions up to now (peek, without consuming), applies
    the rows they touched in order, stores the new position in the same target transaction, and only then advances
    the slot, so a crash neither repeats nor skips a transaction. Tables the slot cannot serve (no primary key and
    no REPLICA IDENTITY FULL) are compared by checksum on every run instead (C(checksum_tables) in RV(replication_slot)).
  - The slot holds WAL on the source until it is dropped - by a run with I(freeze_source=read_only) that verified the
    target equal (the final pass), or by I(state=absent). A slot left behind is reported in RV(warnings).
  - Every chunk (or slot batch) is one target transaction, with C(session_replication_role=replica) in that session
    (foreign keys and user triggers off, as C(pg_restore --disable-triggers)). A slot batch of a table with no other
    unique key has every other slice of its rows on a second target session, which commits just before the one
    that stores the position (a crash in between makes the next run apply those rows again, which is harmless). Generated columns are never written.
    Partitioned tables are copied through their root. Tables without a key are copied whole (RV(keyless_tables)).
  - Schema drift (a table or column missing on the target, a different type, different enum labels) fails before
    anything is written.
  - Not copied - roles and grants, functions, triggers, views, materialized views, the schema itself (DDL),
    large objects; see the collection's docs/postgresql_delta_apply.md.
author:
  - cutover.migration contributors (@cutover-migration)
requirements:
  - python >= 3.9
  - psycopg >= 3.1
options:
  source:
    description:
      - The old database, read only (except I(freeze_source), and the slot and publication of C(logical)).
    type: dict
    required: true
    suboptions: &side
      host:
        description: Server host name or address.
        type: str
        default: 127.0.0.1
      port:
        description: Server port.
        type: int
        default: 5432
      user:
        description: Role to log in as.
        type: str
      password:
        description: Password of I(user).
        type: str
      database:
        description: Database name. The target's may differ from the source's.
        type: str
        required: true
      sslmode:
        description: libpq's C(sslmode); use C(verify-full) with I(ssl_ca) for RDS.
        type: str
        choices: [disable, allow, prefer, require, verify-ca, verify-full]
        default: prefer
      ssl_ca:
        description: CA certificate file to verify the server's TLS certificate (libpq C(sslrootcert)).
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
      - The new database; its schema must already be loaded (for example with C(pg_dump --schema-only | psql)).
    type: dict
    required: true
    suboptions: *side
  schemas:
    description: Schemas whose tables are copied (when I(tables) is empty) and in which bare table names are looked up.
    type: list
    elements: str
    default: [public]
  tables:
    description:
      - Tables to copy, as C(schema.table) or bare names (in the first of I(schemas)). Default - every table of
        I(schemas); partitions are copied through their partitioned table, views are not copied.
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
    choices: [checksum, logical]
    default: checksum
  chunk_size:
    description:
      - Rows per chunk. Default - start at 5000 and adapt so one chunk's checksum takes about 0.5 s.
    type: int
  parallel_tables:
    description: Tables worked on at the same time, each with its own pair of connections.
    type: int
    default: 2
  fix_sequences:
    description:
      - Set every sequence owned by (or used as the default of) a copied column, identity columns included, so that
        its next value is past both the source's next value and the target's highest value in that column. Each one
        is reported before and after in RV(sequences).
    type: bool
    default: true
  verify:
    description:
      - After applying, check that the chunks' checksums match on both sides (the chunks that differed for
        C(checksum); every chunk for C(logical)); fail listing the tables and chunks that do not.
    type: bool
    default: true
  trust_row_versions:
    description:
      - For C(checksum) (and tables C(logical) compares by checksum), on PostgreSQL 14 or later on both sides -
        once a pass has compared every row of a table, later passes compare only the rows written on either side
        since that pass began (PostgreSQL writes a new row version, with a new C(xmin), for every INSERT, UPDATE
        and COPY) and, by per-bucket sums of the keys, the keys one side lacks. The first pass, and any pass after
        the table was recreated, its columns, defaults or their types changed, or the transaction counter went
        backwards (a restored backup), compares every row.
      - C(false) compares every row on every pass (as long as a full C(pg_dump) would take to read).
    type: bool
    default: true
  freeze_source:
    description:
      - C(read_only) sets C(default_transaction_read_only) on the source database and terminates the sessions that hold
        a write transaction, before the final pass, and reports when (RV(source_frozen_at)) and whom
        (RV(terminated_sessions)). Sessions opened earlier keep their setting until they reconnect (listed in
        RV(warnings)). Undo with C(ALTER DATABASE name RESET default_transaction_read_only) if you roll back.
    type: str
    choices: [none, read_only]
    default: none
  state_table:
    description:
      - Table in the target database keeping progress (resume points, slot position), as C(name) (in the first of
        I(schemas)) or C(schema.name). Drop it after the cutover, or use I(state=absent).
    type: str
    default: _cutover_delta_state
  slot_name:
    description:
      - Name of the replication slot and publication C(logical) creates on the source. Default -
        C(cutover_delta_<target database>).
    type: str
  state:
    description:
      - C(absent) drops the slot and publication on the source and the state table on the target; copied rows stay.
    type: str
    choices: [present, absent]
    default: present
notes:
  - Check mode reads both sides and returns the same counts without writing anything (nor creating a slot). Diff mode
    shows the counts per table.
  - Run the final pass with I(freeze_source=read_only) (or with the application stopped); on a source still being
    written, I(verify) can fail on rows that changed while it ran.
  - Needs PostgreSQL 10 or later; C(logical) needs C(wal_level=logical) on the source (RDS - C(rds.logical_replication=1))
    and a role with REPLICATION (RDS - C(rds_replication)).
seealso:
  - module: cutover.migration.mysql_delta_apply
  - name: Cutover sequence and grants
    description: docs/postgresql_delta_apply.md in the collection.
    link: https://github.com/cutover/migration/blob/main/docs/postgresql_delta_apply.md
"""

EXAMPLES = r"""
# Days ahead: bulk-load the new RDS database (schema loaded with pg_dump --schema-only) and open a slot.
- name: Initial load of the shop database
  cutover.migration.postgresql_delta_apply:
    source: &old_db
      host: db-old.internal.example.com
      user: migration
      password: "{{ vault_old_db_password }}"
      database: shop
    target: &new_db
      host: shop.abc123.ap-northeast-1.rds.amazonaws.com
      user: migration
      password: "{{ vault_new_db_password }}"
      database: shop
      sslmode: verify-full
      ssl_ca: /etc/ssl/rds/ap-northeast-1-bundle.pem
    schemas: [public, billing]
    exclude_tables: [public.sessions]
    strategy: logical

# The night before: catch up from the slot.
- name: Catch up from the replication slot
  cutover.migration.postgresql_delta_apply:
    source: *old_db
    target: *new_db
    schemas: [public, billing]
    exclude_tables: [public.sessions]
    strategy: logical

# In the window: freeze the old database, apply the last delta, verify, fix sequences, drop the slot.
- name: Final delta
  cutover.migration.postgresql_delta_apply:
    source: *old_db
    target: *new_db
    schemas: [public, billing]
    exclude_tables: [public.sessions]
    strategy: logical
    freeze_source: read_only
  register: final_delta

- name: Show what moved and the sequences
  ansible.builtin.debug:
    msg: "{{ final_delta.rows_inserted }} inserted, frozen at {{ final_delta.source_frozen_at }},
          sequences {{ final_delta.sequences | map(attribute='after') | list }}"

# Rolled back or finished: remove the slot (it holds WAL on the source) and the state table.
- name: Clean up the migration's slot
  cutover.migration.postgresql_delta_apply:
    source: *old_db
    target: *new_db
    state: absent
"""

RETURN = r"""
rows_inserted:
  description: Rows inserted on the target, all tables (in check mode, that would be).
  returned: when I(state=present)
  type: int
  sample: 1200
rows_updated:
  description: Rows updated on the target, all tables.
  returned: when I(state=present)
  type: int
  sample: 310
rows_deleted:
  description: Rows deleted on the target, all tables.
  returned: when I(state=present)
  type: int
  sample: 12
strategy:
  description: The strategy used.
  returned: always
  type: str
  sample: checksum
tables:
  description:
    - Per C(schema.table) - C(rows_inserted), C(rows_updated), C(rows_deleted), C(chunks_checked),
      C(chunks_differing), C(copied_whole) (a keyless table copied whole), C(sequences) (that table's entries of
      RV(sequences)) and, when a crashed pass was resumed, C(resumed_from).
    - For a table compared by checksum, C(compared) - C(changed_rows) (only the rows written on either side since
      the last complete pass, see I(trust_row_versions)) or C(every_row), with C(compared_reason) saying why every
      row (first pass, table recreated, columns changed, option off, ...).
    - For rows applied from the slot the counts are the row events applied.
  returned: when I(state=present)
  type: dict
  sample: {"public.orders": {"rows_inserted": 20, "rows_updated": 3, "rows_deleted": 1, "chunks_checked": 40,
                             "chunks_differing": 2, "copied_whole": false, "sequences": [],
                             "compared": "changed_rows", "compared_reason": null}}
sequences:
  description:
    - One entry per sequence of a copied column - C(table), C(column), C(sequence) (the target's), C(source_next)
      (what the source's nextval would return), C(target_max), C(before) and C(after) (the target's next value),
      C(changed).
  returned: when I(state=present)
  type: list
  elements: dict
  sample: [{"table": "public.orders", "column": "id", "sequence": "public.orders_id_seq", "source_next": 100021,
            "target_max": 100020, "before": 1, "after": 100021, "changed": true}]
replication_slot:
  description:
    - For C(logical) - C(name), C(publication), C(created), C(dropped), C(exists) (still on the source afterwards),
      C(retained_wal_bytes) (WAL the slot holds on the source), C(consistent_lsn) (the point the first load is
      consistent with), C(position) (LSN applied up to), C(streamed_tables) and C(checksum_tables). Null for
      C(checksum).
  returned: always
  type: dict
  sample: {"name": "cutover_delta_shop", "publication": "cutover_delta_shop", "created": false, "dropped": false,
           "exists": true, "retained_wal_bytes": 52000, "consistent_lsn": "0/1E1DCC0", "position": "0/2B6D438",
           "streamed_tables": ["public.orders"], "checksum_tables": ["public.audit_log"]}
publication_dropped:
  description: With I(state=absent), whether the publication was dropped.
  returned: when I(state=absent)
  type: bool
state_table_dropped:
  description: With I(state=absent), whether the state table was dropped.
  returned: when I(state=absent)
  type: bool
verified:
  description: True when I(verify) ran and every chunk matched; null when it did not run (check mode, verify=false).
  returned: when I(state=present)
  type: bool
elapsed_s:
  description: Wall time of the run in seconds.
  returned: always
  type: float
  sample: 12.5
target_writes:
  description: Write statements sent to the target (0 on a run that found nothing to do).
  returned: when I(state=present)
  type: int
  sample: 14
source_read_only:
  description: Whether the source database defaults new transactions to read only at the end of the run.
  returned: when I(state=present)
  type: bool
source_frozen_at:
  description: UTC time at which this run froze the source (I(freeze_source=read_only)), else null.
  returned: when I(state=present)
  type: str
  sample: "2025-03-01T01:00:02.123456+00:00"
terminated_sessions:
  description: Process ids of the source sessions that held a write transaction and were terminated by the freeze.
  returned: when I(state=present)
  type: list
  elements: int
deletes_seen:
  description: Always true; both strategies see rows deleted on the source.
  returned: when I(state=present)
  type: bool
keyless_tables:
  description: Tables without a primary or non-null unique key; they are compared and copied whole.
  returned: when I(state=present)
  type: list
  elements: str
warnings:
  description: Things to know about this run's result (a slot left on the source, sessions opened before the freeze).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.cutover.migration.plugins.module_utils.mysql_delta.errors import DeltaError
from ansible_collections.cutover.migration.plugins.module_utils.pg_delta.options import delta_options
from ansible_collections.cutover.migration.plugins.module_utils.pg_delta.postgres import (
    HAS_PSYCOPG,
    PSYCOPG_IMPORT_ERROR,
)
from ansible_collections.cutover.migration.plugins.module_utils.pg_delta.run import run_delta

SIDE_OPTIONS = {
    "host": {"type": "str", "default": "127.0.0.1"},
    "port": {"type": "int", "default": 5432},
    "user": {"type": "str"},
    "password": {"type": "str", "no_log": True},
    "database": {"type": "str", "required": True},
    "sslmode": {"type": "str", "default": "prefer",
                "choices": ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]},
    "ssl_ca": {"type": "path"},
    "ssl_cert": {"type": "path"},
    "ssl_key": {"type": "path", "no_log": False},
    "connect_timeout": {"type": "int", "default": 10},
}

ARGUMENT_SPEC = {
    "source": {"type": "dict", "required": True, "options": SIDE_OPTIONS},
    "target": {"type": "dict", "required": True, "options": SIDE_OPTIONS},
    "schemas": {"type": "list", "elements": "str", "default": ["public"]},
    "tables": {"type": "list", "elements": "str", "default": []},
    "exclude_tables": {"type": "list", "elements": "str", "default": []},
    "strategy": {"type": "str", "choices": ["checksum", "logical"], "default": "checksum"},
    "chunk_size": {"type": "int"},
    "parallel_tables": {"type": "int", "default": 2},
    "fix_sequences": {"type": "bool", "default": True},
    "verify": {"type": "bool", "default": True},
    "trust_row_versions": {"type": "bool", "default": True},
    "freeze_source": {"type": "str", "choices": ["none", "read_only"], "default": "none"},
    "state_table": {"type": "str", "default": "_cutover_delta_state"},
    "slot_name": {"type": "str"},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
}


def render_diff(result: dict) -> dict:
    """Per table: what the target holds of the delta before, and what it will hold after."""
    before, after = [], []
    for name, counts in sorted(result.get("tables", {}).items()):
        moved = counts["rows_inserted"] + counts["rows_updated"] + counts["rows_deleted"]
        if moved:
            before.append(f"{name}: {counts['chunks_differing']} of {counts['chunks_checked']} chunks differ\n")
            after.append(f"{name}: +{counts['rows_inserted']} ~{counts['rows_updated']} -{counts['rows_deleted']} rows\n")
    for entry in result.get("sequences", []):
        if entry["changed"]:
            before.append(f"{entry['sequence']}: next {entry['before']}\n")
            after.append(f"{entry['sequence']}: next {entry['after']}\n")
    slot = result.get("replication_slot") or {}
    if slot.get("would_create"):
        after.append(f"replication slot {slot['name']} created on the source\n")
    return {"before": "".join(before), "after": "".join(after),
            "before_header": "target (now)", "after_header": f"target after {result['strategy']} delta"}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if not HAS_PSYCOPG:
        module.fail_json(msg=missing_required_lib("psycopg"), exception=str(PSYCOPG_IMPORT_ERROR))
    try:
        options = delta_options(module.params)
        result = run_delta(options, check_mode=module.check_mode)
    except DeltaError as error:
        module.fail_json(msg=str(error), changed=False, **error.details)
    if module._diff:
        result["diff"] = render_diff(result)
    if module.check_mode and "tables" in result:
        slot = result.get("replication_slot") or {}
        result["changed"] = bool(slot.get("would_create")) or any(
            c["rows_inserted"] or c["rows_updated"] or c["rows_deleted"] for c in result["tables"].values()) or any(
            entry["changed"] for entry in result["sequences"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
