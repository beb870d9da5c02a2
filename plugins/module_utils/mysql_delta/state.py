# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Progress kept where the rows land: one row per (table, item) in the target's state table.

Items: ``checksum`` (a pass in progress: the key it got through, the binary log coordinates
taken before it started), ``binlog`` (source coordinates the table is consistent with) and
``watermark`` (the highest copied watermark value and key). Every write of progress happens in
the same target transaction as the rows it describes. AWX runs each job in a fresh container,
so no progress may live on the controller.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

ITEM_CHECKSUM = "checksum"
ITEM_BINLOG = "binlog"
ITEM_WATERMARK = "watermark"


def encode_value(value: Any) -> Any:
    """JSON form of one key value as the driver returned it (bytes survive as base64)."""
    if isinstance(value, (bytes, bytearray)):
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    if value is None or isinstance(value, (str, int, float)):
        return value
    return str(value)


def decode_value(value: Any) -> Any:
    if isinstance(value, dict) and "b64" in value:
        return base64.b64decode(value["b64"])
    return value


def encode_key(key: tuple | None) -> list | None:
    return None if key is None else [encode_value(value) for value in key]


def decode_key(key: list | None) -> tuple | None:
    return None if key is None else tuple(decode_value(value) for value in key)


@dataclass(frozen=True)
class BinlogPosition:
    file: str
    position: int
    gtid: str | None = None

    def as_result(self) -> dict:
        return {"file": self.file, "position": self.position, "gtid": self.gtid}

    @classmethod
    def from_result(cls, value: dict | None) -> BinlogPosition | None:
        if not value or not value.get("file"):
            return None
        return cls(file=value["file"], position=int(value["position"]), gtid=value.get("gtid"))

    def order(self) -> tuple:
        # MySQL and MariaDB number binary log files with a fixed-width suffix, so the
        # name orders them; the position orders events within a file.
        return (self.file, self.position)


def dumps(value: dict) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def loads(text: Any) -> dict:
    if text is None:
        return {}
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8")
    return dict(json.loads(text))
