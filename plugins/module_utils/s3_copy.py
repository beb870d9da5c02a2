# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Copy a bucket (or a prefix of it) from one AWS account to another: list -> plan -> copy -> verify.

Plain Python, no Ansible import. This file holds the values and the planning (pure, unit
tested without a server); ``s3_copy_transfer`` holds the calls to S3 (``copy_bucket``).

An object counts as already copied when the target holds the same size and either the same
ETag (same bytes, copied in the same parts) or the source ETag recorded on the target object in
the user metadata ``cutover-source-etag`` -- never by reading bodies, and a multipart ETag that
differs only because the parts differ does not force a recopy.
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

SOURCE_ETAG_METADATA = "cutover-source-etag"

# S3 limits (https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html).
MIN_PART_SIZE = 5 * MIB
MAX_PART_SIZE = 5 * GIB
MAX_PARTS = 10000
MAX_SINGLE_COPY_SIZE = 5 * GIB
MAX_DELETE_BATCH = 1000

METHODS = ("auto", "server_side", "stream")
METADATA_FIELDS = (
    "content_type",
    "cache_control",
    "content_encoding",
    "content_disposition",
    "content_language",
    "expires",
    "user",
    "tags",
)
METADATA_FIELDS_BUT_TAGS = frozenset(METADATA_FIELDS) - {"tags"}
STORAGE_CLASSES = (
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "GLACIER_IR",
)

_SIZE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(I?B?)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": KIB, "M": MIB, "G": GIB, "T": 1024 * GIB}


class S3CopyError(Exception):
    """A copy that cannot start; the message names the option, the side and the fix."""

    def __init__(self, message: str, side: str | None = None, option: str | None = None,
                 aws_error_code: str | None = None):
        self.side = side
        self.option = option
        self.aws_error_code = aws_error_code
        super().__init__(message)


class TargetBucketTaken(S3CopyError):
    """The target bucket name belongs to another account (S3 names are global)."""


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def holds(self, relative_key: str) -> bool:
        return shard_of(relative_key, self.count) == self.index


@dataclass(frozen=True)
class CopyOptions:
    """Validated options of one copy run."""

    source_bucket: str
    target_bucket: str
    source_prefix: str = ""
    target_prefix: str = ""
    create_bucket: bool = True
    kms_key_id: str | None = None
    storage_class: str | None = None
    method: str = "auto"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    delete_extra: bool = False
    concurrency: int = 16
    part_size: int = 64 * MIB
    multipart_threshold: int = 256 * MIB
    metadata: frozenset[str] = frozenset(METADATA_FIELDS)
    shard: Shard | None = None
    verify: bool = True
    progress_file: str | None = None

    def selects(self, relative_key: str) -> bool:
        """Whether a key (below its prefix) is in this run: include/exclude globs and the shard."""
        if self.include and not any(fnmatch.fnmatchcase(relative_key, pattern) for pattern in self.include):
            return False
        if any(fnmatch.fnmatchcase(relative_key, pattern) for pattern in self.exclude):
            return False
        return self.shard is None or self.shard.holds(relative_key)

    def target_key(self, relative_key: str) -> str:
        return self.target_prefix + relative_key


@dataclass(frozen=True)
class ObjectState:
    """One object as a listing shows it; ``relative_key`` is the key below the side's prefix."""

    relative_key: str
    size: int
    etag: str
    storage_class: str | None = None


@dataclass(frozen=True)
class ObjectCopy:
    """One planned copy: what to copy and why."""

    relative_key: str
    source: ObjectState
    reason: str  # "missing", "changed", "unverified"
    target_etag: str | None = None


@dataclass(frozen=True)
class CopyPlan:
    copies: tuple[ObjectCopy, ...]
    skipped: tuple[str, ...]
    deletes: tuple[str, ...]
    # Target objects whose size matches but whose ETag differs: the recorded source ETag decides.
    needs_source_etag: tuple[str, ...] = ()
    source_count: int = 0
    bytes_to_copy: int = 0
    bytes_to_skip: int = 0
    create_bucket: bool = False

    @property
    def changes(self) -> bool:
        return bool(self.copies or self.deletes or self.create_bucket)

    def summary(self) -> dict[str, Any]:
        return {
            "create_bucket": self.create_bucket,
            "copy": len(self.copies),
            "skip": len(self.skipped),
            "delete": len(self.deletes),
            "bytes_to_copy": self.bytes_to_copy,
            "bytes_to_skip": self.bytes_to_skip,
        }


@dataclass
class ObjectOutcome:
    relative_key: str
    copied: bool
    method: str | None = None
    bytes_copied: int = 0
    reason: str | None = None
    # The ETag S3 answered the single write with (CopyObject / PutObject); None after a multipart upload.
    target_etag: str | None = None


@dataclass
class CopyResult:
    changed: bool
    source_count: int
    copied: int = 0
    skipped: int = 0
    deleted: int = 0
    failed: int = 0
    bytes_copied: int = 0
    method_used: dict[str, int] = field(default_factory=lambda: {"server_side": 0, "stream": 0})
    failures: list[dict[str, str]] = field(default_factory=list)
    elapsed_s: float = 0.0
    plan: dict[str, Any] = field(default_factory=dict)
    bucket_created: bool = False
    aborted_uploads: int = 0
    verified: int = 0
    requests: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def throughput_mib_s(self) -> float:
        if self.elapsed_s <= 0:
            return 0.0
        return round(self.bytes_copied / MIB / self.elapsed_s, 2)

    def as_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "objects": {
                "source": self.source_count,
                "copied": self.copied,
                "skipped": self.skipped,
                "deleted": self.deleted,
                "failed": self.failed,
            },
            "bytes_copied": self.bytes_copied,
            "method_used": dict(self.method_used),
            "failures": list(self.failures),
            "elapsed_s": round(self.elapsed_s, 3),
            "throughput_mib_s": self.throughput_mib_s,
            "plan": dict(self.plan),
            "bucket_created": self.bucket_created,
            "aborted_uploads": self.aborted_uploads,
            "verified": self.verified,
            "requests": {side: dict(counts) for side, counts in self.requests.items()},
        }


def parse_size(value: Any, option: str) -> int:
    """Bytes from an int or a string such as ``64MiB``, ``64M``, ``5 GB`` (binary units)."""
    if isinstance(value, bool):
        raise S3CopyError(f"{option}: {value!r} is not a size; give bytes (67108864) or a size such as 64MiB",
                          option=option)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    match = _SIZE_PATTERN.match(str(value))
    if not match:
        raise S3CopyError(f"{option}: {value!r} is not a size; give bytes (67108864) or a size such as 64MiB",
                          option=option)
    number, unit = match.group(1), match.group(2)
    return int(float(number) * _SIZE_UNITS[unit.upper()])


def parse_metadata(value: Any) -> frozenset[str]:
    """What to preserve: ``all`` (default), ``none``, true/false, or a list of METADATA_FIELDS."""
    if value is None or value is True:
        return frozenset(METADATA_FIELDS)
    if value is False:
        return frozenset()
    names = [value] if isinstance(value, str) else list(value)
    chosen: set[str] = set()
    for name in names:
        name = str(name).strip().lower().replace("-", "_")
        if name == "all":
            chosen.update(METADATA_FIELDS)
        elif name == "none":
            continue
        elif name in METADATA_FIELDS:
            chosen.add(name)
        else:
            raise S3CopyError(f"metadata: {name!r} is not one of all, none, {', '.join(METADATA_FIELDS)}",
                              option="metadata")
    return frozenset(chosen)


def _prefixes_overlap(first: str, second: str) -> bool:
    return first.startswith(second) or second.startswith(first)


def build_options(source: Mapping[str, Any], target: Mapping[str, Any], **settings: Any) -> CopyOptions:
    """Validate the module's options into CopyOptions; nothing is called and nothing written."""
    source_bucket = (source.get("bucket") or "").strip()
    target_bucket = (target.get("bucket") or "").strip()
    if not source_bucket:
        raise S3CopyError("source.bucket is required: name the bucket to copy from", side="source", option="bucket")
    if not target_bucket:
        raise S3CopyError("target.bucket is required: name the bucket to copy to (S3 names are global, so usually "
                          "a new name)", side="target", option="bucket")
    source_prefix = source.get("prefix") or ""
    target_prefix = target.get("prefix") or ""
    for side, prefix in (("source", source_prefix), ("target", target_prefix)):
        if prefix.startswith("/"):
            raise S3CopyError(f"{side}.prefix: {prefix!r} starts with '/'; S3 keys have no leading slash, "
                              f"use {prefix.lstrip('/')!r}", side=side, option="prefix")
    if source_bucket == target_bucket and _prefixes_overlap(source_prefix, target_prefix):
        raise S3CopyError(
            f"source and target are the same bucket s3://{source_bucket} with overlapping prefixes "
            f"({source_prefix!r} and {target_prefix!r}); copying would read what it writes. Set target.bucket to the "
            "new bucket (or give both sides prefixes that do not contain each other)",
            side="target", option="bucket")

    method = settings.get("method") or "auto"
    if method not in METHODS:
        raise S3CopyError(f"method: {method!r} is not one of {', '.join(METHODS)}", option="method")

    concurrency = int(settings.get("concurrency") or 16)
    if not 1 <= concurrency <= 256:
        raise S3CopyError(f"concurrency: {concurrency} is out of range; give 1 to 256 (16 is the default)",
                          option="concurrency")

    part_size = parse_size(settings.get("part_size") if settings.get("part_size") is not None else 64 * MIB,
                           "part_size")
    if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
        raise S3CopyError(f"part_size: {part_size} bytes is outside S3's limits for a part; give 5MiB to 5GiB",
                          option="part_size")
    threshold = parse_size(settings.get("multipart_threshold") if settings.get("multipart_threshold") is not None
                           else 256 * MIB, "multipart_threshold")
    if threshold < part_size:
        raise S3CopyError(f"multipart_threshold: {threshold} bytes is below part_size ({part_size}); raise it to "
                          "at least part_size", option="multipart_threshold")
    if threshold > MAX_SINGLE_COPY_SIZE:
        raise S3CopyError("multipart_threshold: S3 copies at most 5 GiB in one request; give 5GiB or less",
                          option="multipart_threshold")

    shard_value = settings.get("shard")
    shard = None
    if shard_value:
        try:
            shard = Shard(index=int(shard_value["index"]), count=int(shard_value["count"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise S3CopyError("shard: give both index and count as integers, e.g. {index: 0, count: 4}",
                              option="shard") from exc
        if shard.count < 1 or not 0 <= shard.index < shard.count:
            raise S3CopyError(f"shard: index {shard.index} is not in 0..count-1 (count {shard.count}); with AWX job "
                              "slices use index = slice number - 1", option="shard")

    storage_class = target.get("storage_class") or None
    if storage_class and storage_class not in STORAGE_CLASSES:
        raise S3CopyError(f"target.storage_class: {storage_class!r} is not one of {', '.join(STORAGE_CLASSES)}",
                          side="target", option="storage_class")

    def patterns(name: str) -> tuple[str, ...]:
        value = settings.get(name) or ()
        return (value,) if isinstance(value, str) else tuple(str(item) for item in value)

    create_bucket = target.get("create_bucket")
    return CopyOptions(
        source_bucket=source_bucket,
        target_bucket=target_bucket,
        source_prefix=source_prefix,
        target_prefix=target_prefix,
        create_bucket=True if create_bucket is None else bool(create_bucket),
        kms_key_id=target.get("kms_key_id") or None,
        storage_class=storage_class,
        method=method,
        include=patterns("include"),
        exclude=patterns("exclude"),
        delete_extra=bool(settings.get("delete_extra")),
        concurrency=concurrency,
        part_size=part_size,
        multipart_threshold=threshold,
        metadata=parse_metadata(settings.get("metadata")),
        shard=shard,
        verify=True if settings.get("verify") is None else bool(settings.get("verify")),
        progress_file=settings.get("progress_file") or None,
    )


def shard_of(relative_key: str, count: int) -> int:
    """Stable shard number of a key: the same on every host, run and Python version."""
    digest = hashlib.sha256(relative_key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def part_size_for(size: int, part_size: int) -> int:
    """The part size for an object: ``part_size``, raised (to whole MiB) to stay within 10,000 parts."""
    if size <= part_size * MAX_PARTS:
        return part_size
    return int(math.ceil(size / MAX_PARTS / MIB) * MIB)


def part_ranges(size: int, part_size: int) -> list[tuple[int, int, int]]:
    """(part number, first byte, last byte) covering ``size`` bytes, within S3's part limits."""
    chosen = part_size_for(size, part_size)
    ranges = []
    start = 0
    number = 1
    while start < size:
        end = min(start + chosen, size) - 1
        ranges.append((number, start, end))
        start = end + 1
        number += 1
    if len(ranges) > MAX_PARTS:  # pragma: no cover - part_size_for prevents it
        raise S3CopyError(f"object of {size} bytes needs more than {MAX_PARTS} parts", option="part_size")
    return ranges


def memory_slots(size: int, options: CopyOptions) -> int:
    """Part-size buffers an object streamed whole takes from the ``concurrency`` buffers (at least one)."""
    return max(1, math.ceil(size / options.part_size))


def uses_multipart(size: int, options: CopyOptions, method: str) -> bool:
    """Server-side: multipart above the threshold (always above 5 GiB). Stream: above the threshold
    too, and also when the whole object would not fit in the memory bound (``concurrency x
    part_size``); below that one GET and one PUT move it, holding as many part-size buffers as it
    needs, so no more than ``concurrency x part_size`` bytes are ever held in memory either way."""
    if size > options.multipart_threshold or size > MAX_SINGLE_COPY_SIZE:
        return True
    return method == "stream" and memory_slots(size, options) > options.concurrency


def is_single_part_etag(etag: str) -> bool:
    """Whether an ETag is a single-part one (no ``-<parts>`` suffix); without SSE-KMS it is the MD5 of the bytes."""
    return "-" not in normalise_etag(etag)


def copies_in_one_request(source: ObjectState, options: CopyOptions) -> bool:
    """Whether one ``CopyObject`` with ``MetadataDirective: COPY`` copies this object completely, with no
    ``HeadObject`` first, and leaves the target ETag equal to the source's, so that a rerun decides by
    the listing alone (same size and same ETag) without ``cutover-source-etag``.

    That holds for a single-part source (its ETag is the MD5 of its bytes, and so is the copy's) copied
    in one request, without a target KMS key (an SSE-KMS ETag is no MD5), when every content header and
    the user metadata are kept (COPY cannot drop some of them). Anything else is copied with
    ``MetadataDirective: REPLACE`` after a ``HeadObject``, recording the source ETag on the target.
    """
    return (not uses_multipart(source.size, options, "server_side")
            and is_single_part_etag(source.etag)
            and not options.kms_key_id
            and options.metadata >= METADATA_FIELDS_BUT_TAGS)


def is_copied(source: ObjectState, target: ObjectState | None, recorded_source_etag: str | None = None) -> bool:
    if target is None or target.size != source.size:
        return False
    if target.etag == source.etag:
        return True
    return recorded_source_etag is not None and normalise_etag(recorded_source_etag) == normalise_etag(source.etag)


def answer_proves_copy(source: ObjectState, answered_etag: str | None) -> bool:
    """Whether the ETag S3 answered a single write with proves the target holds the source's bytes."""
    return bool(answered_etag) and normalise_etag(str(answered_etag)) == normalise_etag(source.etag)


def normalise_etag(etag: str) -> str:
    return etag.strip().strip('"')


def plan_copy(options: CopyOptions, source_objects: Iterable[ObjectState], target_objects: Iterable[ObjectState],
              recorded_source_etags: Mapping[str, str | None] | None = None,
              bucket_exists: bool = True) -> CopyPlan:
    """What to copy, skip and delete. ``recorded_source_etags`` (relative key -> value of
    ``cutover-source-etag`` on the target) is only needed for keys in ``needs_source_etag`` of a
    first call without it; pass it to get the final plan."""
    sources = {item.relative_key: item for item in source_objects if options.selects(item.relative_key)}
    targets = {item.relative_key: item for item in target_objects if options.selects(item.relative_key)}
    recorded = recorded_source_etags or {}
    copies: list[ObjectCopy] = []
    skipped: list[str] = []
    undecided: list[str] = []
    bytes_to_copy = 0
    bytes_to_skip = 0
    for relative_key in sorted(sources):
        source = sources[relative_key]
        target = targets.get(relative_key)
        if is_copied(source, target, recorded.get(relative_key)):
            skipped.append(relative_key)
            bytes_to_skip += source.size
            continue
        if target is None:
            reason = "missing"
        elif target.size != source.size:
            reason = "changed"
        elif relative_key not in recorded:
            undecided.append(relative_key)
            reason = "unverified"
        else:
            reason = "changed"
        copies.append(ObjectCopy(relative_key=relative_key, source=source, reason=reason,
                                 target_etag=target.etag if target else None))
        bytes_to_copy += source.size
    deletes = tuple(sorted(set(targets) - set(sources))) if options.delete_extra else ()
    return CopyPlan(
        copies=tuple(copies),
        skipped=tuple(skipped),
        deletes=deletes,
        needs_source_etag=tuple(undecided),
        source_count=len(sources),
        bytes_to_copy=bytes_to_copy,
        bytes_to_skip=bytes_to_skip,
        create_bucket=not bucket_exists,
    )


def batches(items: Sequence[str], size: int = MAX_DELETE_BATCH) -> list[Sequence[str]]:
    return [items[start:start + size] for start in range(0, len(items), size)]


def render_plan(plan: CopyPlan, options: CopyOptions, limit: int = 200) -> dict[str, str]:
    """Diff-mode rendering: before = keys the target lacks or differ, after = what the run does."""
    before_lines = [f"s3://{options.target_bucket}/{options.target_key(item.relative_key)} ({item.reason})"
                    for item in plan.copies[:limit]]
    before_lines += [f"s3://{options.target_bucket}/{options.target_key(key)} (extra)" for key in plan.deletes[:limit]]
    after_lines = []
    if plan.create_bucket:
        after_lines.append(f"create bucket s3://{options.target_bucket}")
    after_lines += [f"copy s3://{options.source_bucket}/{options.source_prefix}{item.relative_key} "
                    f"-> s3://{options.target_bucket}/{options.target_key(item.relative_key)} ({item.source.size} bytes)"
                    for item in plan.copies[:limit]]
    after_lines += [f"delete s3://{options.target_bucket}/{options.target_key(key)}" for key in plan.deletes[:limit]]
    hidden = max(0, len(plan.copies) - limit) + max(0, len(plan.deletes) - limit)
    if hidden:
        after_lines.append(f"... and {hidden} more")
    return {"before": "\n".join(before_lines) + ("\n" if before_lines else ""),
            "after": "\n".join(after_lines) + ("\n" if after_lines else "")}
