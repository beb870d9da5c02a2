# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options of a delta run as immutable values, validated before any connection is opened."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidOptions

STRATEGIES = ("checksum", "binlog", "watermark")
FREEZE_CHOICES = ("none", "read_only")
DEFAULT_STATE_TABLE = "_cutover_delta_state"
DEFAULT_PARALLEL_TABLES = 2
DEFAULT_CONNECT_TIMEOUT = 10

# Identifiers are quoted everywhere, but a state table name is also typed by people into
# playbooks and grants; keeping it to plain word characters avoids surprises in both.
_STATE_TABLE_NAME = re.compile(r"^[A-Za-z0-9_$]{1,64}$")


@dataclass(frozen=True)
class SideOptions:
    """Where one side's database is and how to log in."""

    side: str
    host: str = "127.0.0.1"
    port: int = 3306
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str = ""
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
        port = values.get("port")
        return cls(
            side=side,
            host=str(values.get("host") or "127.0.0.1"),
            port=int(port) if port else 3306,
            user=values.get("user"),
            password=values.get("password"),
            database=str(database),
            ssl_ca=values.get("ssl_ca"),
            ssl_cert=values.get("ssl_cert"),
            ssl_key=values.get("ssl_key"),
            connect_timeout=int(values.get("connect_timeout") or DEFAULT_CONNECT_TIMEOUT),
        )

    def describe(self) -> str:
        return f"{self.side} {self.user or ''}@{self.host}:{self.port}/{self.database}"


@dataclass(frozen=True)
class DeltaOptions:
    """Everything a run needs to know; built by :func:`delta_options` from the module's parameters."""

    source: SideOptions
    target: SideOptions
    tables: tuple[str, ...] = ()
    exclude_tables: tuple[str, ...] = ()
    strategy: str = "checksum"
    watermark_columns: tuple[tuple[str, str], ...] = ()
    chunk_size: int | None = None
    parallel_tables: int = DEFAULT_PARALLEL_TABLES
    fix_auto_increment: bool = True
    verify: bool = True
    freeze_source: str = "none"
    state_table: str = DEFAULT_STATE_TABLE

    @property
    def watermark_map(self) -> dict[str, str]:
        return dict(self.watermark_columns)


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
    chunk_size = params.get("chunk_size")
    if chunk_size is not None and int(chunk_size) < 1:
        raise InvalidOptions("chunk_size must be a positive number of rows, or left unset to aim for about "
                             "0.5 s per chunk", option="chunk_size")
    parallel = int(params.get("parallel_tables") or DEFAULT_PARALLEL_TABLES)
    if parallel < 1:
        raise InvalidOptions("parallel_tables must be at least 1", option="parallel_tables")
    state_table = params.get("state_table") or DEFAULT_STATE_TABLE
    if not _STATE_TABLE_NAME.match(state_table):
        raise InvalidOptions(f"state_table {state_table!r} must be 1-64 letters, digits, '_' or '$'",
                             side="target", option="state_table")
    tables = tuple(params.get("tables") or ())
    exclude = tuple(params.get("exclude_tables") or ())
    both = sorted(set(tables) & set(exclude))
    if both:
        raise InvalidOptions(f"{', '.join(both)} is listed in both tables and exclude_tables; keep it in one",
                             option="exclude_tables")
    if state_table in tables:
        raise InvalidOptions(f"{state_table} is the state table; it cannot also be copied (rename state_table)",
                             option="tables")
    watermarks = params.get("watermark_columns") or {}
    if not isinstance(watermarks, Mapping):
        raise InvalidOptions("watermark_columns must be a mapping of table name to column name",
                             option="watermark_columns")
    if strategy == "watermark" and not watermarks:
        raise InvalidOptions("strategy watermark needs watermark_columns, e.g. {orders: updated_at}: the column "
                             "per table whose value only grows when a row is written", option="watermark_columns")
    return DeltaOptions(
        source=source,
        target=target,
        tables=tables,
        exclude_tables=exclude,
        strategy=strategy,
        watermark_columns=tuple(sorted((str(k), str(v)) for k, v in watermarks.items())),
        chunk_size=int(chunk_size) if chunk_size is not None else None,
        parallel_tables=parallel,
        fix_auto_increment=bool(params.get("fix_auto_increment", True)),
        verify=bool(params.get("verify", True)),
        freeze_source=freeze,
        state_table=state_table,
    )
