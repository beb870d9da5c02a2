# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Row versions: which rows a ``checksum`` pass may leave out, as pure planning.

PostgreSQL never changes a row in place: every INSERT, UPDATE and COPY writes a new row version
whose ``xmin`` is the writing transaction. So when a complete pass began after transaction X was
the oldest one still running on a side, every row version that side has now with an ``xmin``
older than X existed, unchanged, through the whole pass. The pass compared it with the other
side and, had they differed, rewrote the target's row (a version of ours, see below). A row old
on both sides is therefore still equal, and the next pass needs to compare only:

* rows new on either side (``xmin`` at or after the side's recorded X), hashed one by one;
* keys present on one side only: each side answers, per bucket of keys, a count and an XOR of the
  key hashes; a bucket whose answers differ has its rows compared one by one.

Rows the module itself wrote during the pass (the target transactions listed in ``own``) are
equal to the source's row as it was read, so they count as old on the target too; without that,
a pass would compare again everything the pass before it wrote. What can change a row's content
without a new version is caught by ``relation`` (the table and its partitions, by OID) and
``layout`` (its columns, defaults, and the labels or attributes of their enum and composite
types): when either differs from the recorded one, or the transaction counter went backwards
(a restored backup) or ran so far that 32-bit ``xmin`` values could wrap, the pass compares
every row again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..mysql_delta.buckets import Buckets
from ..mysql_delta.chunking import Key

# 32-bit xmin values are compared by age: exact while fewer than 2^31 transactions separate them.
# Past this many since the recorded horizon, the pass compares everything instead.
XID_WINDOW = 2 ** 31 - 2 ** 28
# Target transactions of a pass remembered as its own; a pass that commits more (a very large
# delta) keeps none, and the next pass compares the rows it wrote.
MAX_OWN_XIDS = 10_000
FIRST_NORMAL_XID = 3


@dataclass(frozen=True)
class SideVersions:
    """Where one side's row versions stood when a pass began.

    ``xmin`` and ``next_xid`` are the 64-bit (epoch-extended) oldest running and next transaction
    IDs; ``own`` holds the 64-bit IDs of the pass's own target transactions."""

    xmin: int
    next_xid: int
    relation: str
    layout: str
    own: tuple[int, ...] = ()

    def as_state(self) -> dict[str, Any]:
        return {"xmin": self.xmin, "next_xid": self.next_xid, "relation": self.relation, "layout": self.layout,
                "own": list(self.own)}

    @classmethod
    def from_state(cls, value: Mapping[str, Any] | None) -> SideVersions | None:
        if not value:
            return None
        try:
            return cls(int(value["xmin"]), int(value["next_xid"]), str(value["relation"]), str(value["layout"]),
                       tuple(int(xid) for xid in value.get("own") or ()))
        except (KeyError, TypeError, ValueError):
            return None   # written by another version of the module: compare everything

    def with_own(self, xids: Iterable[int]) -> SideVersions:
        own = tuple(dict.fromkeys((*self.own, *xids)))
        return SideVersions(self.xmin, self.next_xid, self.relation, self.layout,
                            own if len(own) <= MAX_OWN_XIDS else ())


def baseline_problem(side: str, baseline: SideVersions | None, current: SideVersions) -> str | None:
    """Why ``baseline`` (recorded when the last complete pass began) cannot tell this side's
    unchanged rows now, or None when it can."""
    if baseline is None:
        return "no complete pass has recorded row versions yet"
    if baseline.relation != current.relation:
        return f"the {side} table was recreated, or its partitions changed"
    if baseline.layout != current.layout:
        return f"the {side} table's columns, defaults or column types changed"
    if current.next_xid < baseline.next_xid:
        return f"the {side} server's transaction counter went backwards (restored from a backup?)"
    if current.next_xid - baseline.xmin >= XID_WINDOW:
        return f"over {XID_WINDOW} transactions ran on the {side} since the last complete pass"
    return None


def xid32(xid: int) -> int:
    """The 32-bit transaction ID that row headers hold for a 64-bit one (0-2 are special)."""
    return max(FIRST_NORMAL_XID, xid & 0xFFFFFFFF)


def keys_to_ask(found: Mapping[Key, str | None], new_elsewhere: Iterable[Key]) -> list[Key]:
    """Keys new on the other side whose row this side has not hashed yet: absent from ``found``
    (a missing key is told from one never asked about only by asking) or listed without a hash."""
    return [key for key in new_elsewhere if found.get(key) is None]


@dataclass(frozen=True)
class LoneKey:
    """The one key by which a bucket's two sides differ, as their key sums tell it."""

    key: int
    side: int          # 0: only the source has it, 1: only the target
    key_hash: int      # what the server's 64-bit hash of ``key`` must be for this to hold


def lone_keys(source_sums: Iterable[tuple], target_sums: Iterable[tuple], chosen: Iterable[int],
              buckets: Buckets) -> dict[int, LoneKey]:
    """The chosen buckets whose sides differ by exactly one key, found without listing them.

    With an integer key, each side's entry is ``(bucket, rows, XOR of key hashes, XOR of keys)``.
    When one side holds exactly one row more, the XOR of the two sides' key XORs is that key if
    it is the only difference: one deleted row here and there, the usual shape of deletes, then
    costs no listing of its bucket's keys. It is taken as that when the key lies in the bucket
    and its hash (asked of a server, see ``LoneKey.key_hash``) equals the XOR of the two hash
    XORs: any other difference would have to produce that 64-bit value by chance, the odds the
    key sums themselves rest on. Buckets of other entries (hashed buckets, keys of other types)
    are not taken.
    """
    entries = [{entry[0]: entry for entry in sums} for sums in (source_sums, target_sums)]
    found: dict[int, LoneKey] = {}
    if not buckets.width:
        return found
    for bucket in chosen:
        source, target = (side.get(bucket, (bucket, 0, 0, 0)) for side in entries)
        if len(source) < 4 or len(target) < 4 or abs(int(source[1]) - int(target[1])) != 1:
            continue
        key = int(source[3]) ^ int(target[3])
        if buckets.start + bucket * buckets.width < key <= buckets.start + (bucket + 1) * buckets.width:
            found[bucket] = LoneKey(key, 0 if source[1] > target[1] else 1, int(source[2]) ^ int(target[2]))
    return found
