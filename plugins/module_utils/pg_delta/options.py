# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options of a PostgreSQL delta run as immutable values, validated before any connection.

Names and meanings follow mysql_delta_apply wherever they are the same; what PostgreSQL adds is
``schemas``, ``sslmode``, ``fix_sequences``, ``slot_name``, ``trust_row_versions`` and ``state``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..mysql_delta.errors import InvalidOptions

STRATEGIES = ("checksum", "logical")
FREEZE_CHOICES = ("none", "read_only")
STATES = ("present", "absent")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
DEFAULT_STATE_TABLE = "_cutover_delta_state"
DEFAULT_PARALLEL_TABLES = 2
DEFAULT_CONNECT_TIMEOUT = 10
DEFAULT_SLOT_PREFIX = "cutover_delta"

# Identifiers are quoted everywhere, but state table and slot names are also typed by people
# into playbooks, grants and pg_replication_slots queries; plain word characters avoid surprises.
_PLAIN_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_STATE_TABLE_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_]{0,62}\.)?[A-Za-z_][A-Za-z0-9_$]{0,62}$")


@dataclass(frozen=True)
class SideOptions:
    """Where one side's database is and how to log in."""

    side: str
    host: str = "127.0.0.1"
    port: int = 5432
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str = ""
    sslmode: str = "prefer"
    ssl_ca: str | None = None
    ssl_cert: str | None = None
    ssl_key: str | None = None
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT

    @classmethod
    def from_mapping(cls, side: str, values: Mapping[str, Any] | None) -> SideOptions:
        values = dict(values or {})
        database = values.get("database")
        if not database:
            raise InvalidOptions(f"{side}.database is required: name the database to copy "
                                 f"{'from' if side == 'source' else 'into'}", side=side, option="database")
        sslmode = values.get("sslmode") or "prefer"
        if sslmode not in SSL_MODES:
            raise InvalidOptions(f"{side}.sslmode {sslmode!r} is not one of {', '.join(SSL_MODES)}",
                                 side=side, option="sslmode")
        port = values.get("port")
        return cls(
            side=side,
            host=str(values.get("host") or "127.0.0.1"),
            port=int(port) if port else 5432,
            user=values.get("user"),
            password=values.get("password"),
            database=str(database),
            sslmode=sslmode,
            ssl_ca=values.get("ssl_ca"),
            ssl_cert=values.get("ssl_cert"),
            ssl_key=values.get("ssl_key"),
            connect_timeout=int(values.get("connect_timeout") or DEFAULT_CONNECT_TIMEOUT),
        )

    def describe(self) -> str:
        return f"{self.side} {self.user or ''}@{self.host}:{self.port}/{self.database}"

    def connection_arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "host": self.host, "port": self.port, "dbname": self.database, "sslmode": self.sslmode,
            "connect_timeout": self.connect_timeout, "application_name": "cutover.postgresql_delta_apply",
        }
        if self.user:
            arguments["user"] = self.user
        if self.password is not None:
            arguments["password"] = self.password
        for name, value in (("sslrootcert", self.ssl_ca), ("sslcert", self.ssl_cert), ("sslkey", self.ssl_key)):
            if value:
                arguments[name] = value
        return arguments


@dataclass(frozen=True)
class DeltaOptions:
    """Everything a run needs to know; built by :func:`delta_options` from the module's parameters."""

    source: SideOptions
    target: SideOptions
    schemas: tuple[str, ...] = ("public",)
    tables: tuple[str, ...] = ()
    exclude_tables: tuple[str, ...] = ()
    strategy: str = "checksum"
    chunk_size: int | None = None
    parallel_tables: int = DEFAULT_PARALLEL_TABLES
    fix_sequences: bool = True
    verify: bool = True
    trust_row_versions: bool = True
    freeze_source: str = "none"
    state_table: str = DEFAULT_STATE_TABLE
    slot_name: str = ""
    state: str = "present"

    @property
    def state_schema(self) -> str:
        return self.state_table.split(".", 1)[0] if "." in self.state_table else self.schemas[0]

    @property
    def state_name(self) -> str:
        return self.state_table.split(".", 1)[-1]

    @property
    def publication_name(self) -> str:
        return self.slot_name


def default_slot_name(target_database: str) -> str:
    tail = re.sub(r"[^a-z0-9_]", "_", target_database.lower())
    return f"{DEFAULT_SLOT_PREFIX}_{tail}"[:63]


def qualified(name: str, schemas: tuple[str, ...]) -> str:
    """``schema.table`` for a table option given bare (first schema) or qualified."""
    return name if "." in name else f"{schemas[0]}.{name}"


def delta_options(params: Mapping[str, Any]) -> DeltaOptions:
    """Validated options from a parameter dict shaped like the module's (unknown keys ignored)."""
    source = SideOptions.from_mapping("source", params.get("source"))
    target = SideOptions.from_mapping("target", params.get("target"))
    strategy = params.get("strategy") or "checksum"
    if strategy not in STRATEGIES:
        raise InvalidOptions(f"strategy {strategy!r} is not one of {', '.join(STRATEGIES)}", option="strategy")
    freeze = params.get("freeze_source") or "none"
    if freeze not in FREEZE_CHOICES:
        raise InvalidOptions(f"freeze_source {freeze!r} is not one of {', '.join(FREEZE_CHOICES)}",
                             option="freeze_source")
    state = params.get("state") or "present"
    if state not in STATES:
        raise InvalidOptions(f"state {state!r} is not one of {', '.join(STATES)}", option="state")
    chunk_size = params.get("chunk_size")
    if chunk_size is not None and int(chunk_size) < 1:
        raise InvalidOptions("chunk_size must be a positive number of rows, or left unset to aim for about "
                             "0.5 s per chunk", option="chunk_size")
    parallel = int(params.get("parallel_tables") or DEFAULT_PARALLEL_TABLES)
    if parallel < 1:
        raise InvalidOptions("parallel_tables must be at least 1", option="parallel_tables")
    schemas = tuple(params.get("schemas") or ("public",))
    state_table = params.get("state_table") or DEFAULT_STATE_TABLE
    if not _STATE_TABLE_NAME.match(state_table):
        raise InvalidOptions(f"state_table {state_table!r} must be [schema.]name of letters, digits and '_'",
                             side="target", option="state_table")
    slot_name = params.get("slot_name") or default_slot_name(target.database)
    if not _PLAIN_NAME.match(slot_name):
        raise InvalidOptions(f"slot_name {slot_name!r} must be 1-63 lower-case letters, digits or '_' (PostgreSQL's "
                             "rule for replication slot names)", side="source", option="slot_name")
    tables = tuple(qualified(name, schemas) for name in params.get("tables") or ())
    exclude = tuple(qualified(name, schemas) for name in params.get("exclude_tables") or ())
    both = sorted(set(tables) & set(exclude))
    if both:
        raise InvalidOptions(f"{', '.join(both)} is listed in both tables and exclude_tables; keep it in one",
                             option="exclude_tables")
    options = DeltaOptions(
        source=source,
        target=target,
        schemas=schemas,
        tables=tables,
        exclude_tables=exclude,
        strategy=strategy,
        chunk_size=int(chunk_size) if chunk_size is not None else None,
        parallel_tables=parallel,
        fix_sequences=bool(params.get("fix_sequences", True)),
        verify=bool(params.get("verify", True)),
        trust_row_versions=bool(params.get("trust_row_versions", True)),
        freeze_source=freeze,
        state_table=state_table,
        slot_name=slot_name,
        state=state,
    )
    state_qualified = f"{options.state_schema}.{options.state_name}"
    if state_qualified in tables:
        raise InvalidOptions(f"{state_qualified} is the state table; it cannot also be copied (rename state_table)",
                             option="tables")
    return options
