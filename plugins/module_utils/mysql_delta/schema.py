# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Table shapes as values, and the drift check that runs before anything is written.

Dialect-free: a dialect reads its catalog into these values; the comparison is the same for
every database.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import SchemaDrift


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str          # lower-case base type: int, varchar, blob, bit, datetime, ...
    column_type: str        # full declaration: int(10) unsigned, enum('a','b'), ...
    nullable: bool = True
    generated: bool = False
    auto_increment: bool = False
    binary: bool = False    # bytes that must travel as bytes (binary, varbinary, blobs)


@dataclass(frozen=True)
class TableSchema:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()          # the chunking key: primary key, else a non-null unique key
    key_kind: str = "none"             # primary | unique | none
    unique_keys: tuple[tuple[str, ...], ...] = ()
    # Names of uniqueness that is no column list (PostgreSQL: unique indexes on an expression or
    # with a predicate, exclusion constraints): no key, but values moving between rows collide there.
    other_constraints: tuple[str, ...] = ()

    @property
    def keyless(self) -> bool:
        return not self.key

    @property
    def values_can_collide(self) -> bool:
        """Whether a value moving between rows can collide on the target beyond the chunking key
        (another unique key, or other_constraints): such rows must not be split between writers
        that wait for each other, and an earlier row may have to wait for a later one's delete."""
        return bool(self.other_unique_keys or self.other_constraints)

    @property
    def other_unique_keys(self) -> tuple[tuple[str, ...], ...]:
        """Unique keys besides the chunking key: a value of one can move between rows of different
        chunks or slices, which the target must let through (and writers must not split)."""
        return tuple(names for names in self.unique_keys if names != self.key)

    @property
    def written_columns(self) -> tuple[Column, ...]:
        """Columns a copy writes: generated columns are computed by the target itself."""
        return tuple(c for c in self.columns if not c.generated)

    @property
    def key_columns(self) -> tuple[Column, ...]:
        by_name = {c.name: c for c in self.columns}
        return tuple(by_name[name] for name in self.key)

    @property
    def auto_increment_column(self) -> Column | None:
        return next((c for c in self.columns if c.auto_increment), None)

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def key_positions(self) -> tuple[int, ...]:
        """Positions of the key columns among all columns (binary log rows carry every column)."""
        names = [c.name for c in self.columns]
        return tuple(names.index(name) for name in self.key)


def choose_key(primary: tuple[str, ...], unique_keys: list[tuple[str, ...]],
               nullable: dict[str, bool]) -> tuple[tuple[str, ...], str]:
    """The key to chunk by: the primary key, else the shortest unique key with no nullable column."""
    if primary:
        return primary, "primary"
    candidates = [key for key in unique_keys if key and not any(nullable.get(name, True) for name in key)]
    if candidates:
        return min(candidates, key=lambda key: (len(key), key)), "unique"
    return (), "none"


def schema_drift(source: TableSchema, target: TableSchema | None) -> list[str]:
    """Sentences describing why ``target`` cannot receive ``source``'s rows (empty when it can)."""
    if target is None:
        return [(f"table {source.name} exists on the source but not on the target: create it there "
                 "(load the schema first, e.g. mysqldump --no-data) or add it to exclude_tables")]
    problems = []
    for column in source.columns:
        other = target.column(column.name)
        if other is None:
            problems.append(f"table {source.name}: column {column.name} ({column.column_type}) is missing on the "
                            "target: add it there before the delta")
            continue
        if other.column_type.lower() != column.column_type.lower():
            problems.append(f"table {source.name}: column {column.name} is {column.column_type} on the source but "
                            f"{other.column_type} on the target: make the types equal so values copy byte for byte")
        if other.generated != column.generated:
            problems.append(f"table {source.name}: column {column.name} is "
                            f"{'generated' if column.generated else 'stored'} on the source but "
                            f"{'generated' if other.generated else 'stored'} on the target")
    for column in target.columns:
        if source.column(column.name) is None and not column.nullable and not column.generated:
            problems.append(f"table {source.name}: column {column.name} exists only on the target and is NOT NULL: "
                            "give it a default or drop it, rows from the source cannot fill it")
    if source.key and source.key not in set(target.unique_keys):
        problems.append(f"table {source.name}: the target has no primary or unique key on "
                        f"({', '.join(source.key)}), the source's {source.key_kind} key: add it on the target")
    return problems


def check_schemas(sources: list[TableSchema], targets: dict[str, TableSchema]) -> None:
    """Raise :class:`SchemaDrift` listing every problem, before any row is written."""
    problems: list[str] = []
    for source in sources:
        problems.extend(schema_drift(source, targets.get(source.name)))
    if problems:
        raise SchemaDrift("schema drift between source and target, nothing was written: " + "; ".join(problems),
                          side="target", option="tables", problems=problems)
