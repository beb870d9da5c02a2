# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The S3 side of ``s3_copy``: list both sides, copy objects (server-side or streamed), verify.

``BucketCopy.run`` is the only writer. Server-side copies (CopyObject / UploadPartCopy) run as
the target identity and need the source bucket policy to grant it s3:GetObject; streamed copies
read with the source identity (ranged GETs) and write with the target identity (multipart
upload), holding at most ``concurrency x part_size`` bytes in memory and nothing on disk.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode, urlsplit

from .collection_pauses import older_objects_left_out_of_collection
from .s3_copy import (
    SOURCE_ETAG_METADATA,
    CopyOptions,
    CopyPlan,
    CopyResult,
    ObjectCopy,
    ObjectOutcome,
    ObjectState,
    S3CopyError,
    TargetBucketTaken,
    answer_proves_copy,
    batches,
    copies_in_one_request,
    is_copied,
    memory_slots,
    normalise_etag,
    part_ranges,
    plan_copy,
    uses_multipart,
)
from .s3_listing import split_listing_page

try:
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserFactory
except ImportError:  # pragma: no cover - the module reports missing boto3 before getting here
    Config = None
    ResponseParserFactory = None
    BotoCoreError = ClientError = Exception  # type: ignore[misc, assignment]

WRITE_OPERATIONS = frozenset({
    "PutObject", "CopyObject", "UploadPart", "UploadPartCopy", "CreateMultipartUpload",
    "CompleteMultipartUpload", "AbortMultipartUpload", "DeleteObject", "DeleteObjects", "CreateBucket",
    "PutObjectTagging", "PutObjectAcl",
})
ACCESS_DENIED_CODES = frozenset({"AccessDenied", "403", "Forbidden", "AllAccessDisabled"})
PRECONDITION_CODES = frozenset({"PreconditionFailed", "412"})
# botocore's adaptive retries cover throttling per request; these also cover a body that breaks
# mid-stream, which botocore does not retry because the response had already started.
TRANSIENT_CODES = frozenset({"SlowDown", "503", "500", "ServiceUnavailable", "InternalError", "RequestTimeout",
                             "Throttling", "ThrottlingException", "RequestTimeTooSkewed"})
TRANSIENT_ATTEMPTS = 4
PROGRESS_INTERVAL_S = 1.0
# Up to this many objects are verified with one HeadObject each; more with one listing of the target.
VERIFY_HEAD_LIMIT = 100
LISTING_OUTPUT = "ListObjectsV2Output"


class ObjectFailed(Exception):
    """One object could not be copied; the run goes on with the others."""


class SourceChanged(ObjectFailed):
    pass


class ServerSideDenied(Exception):
    pass


class TargetForbidden(Exception):
    """The target bucket name exists but the target identity may not list it."""


def error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return str(status) if status else None
    return None


def describe(exc: BaseException) -> str:
    code = error_code(exc)
    if code and isinstance(getattr(exc, "response", None), dict):
        message = exc.response.get("Error", {}).get("Message", "")  # type: ignore[attr-defined]
        operation = getattr(exc, "operation_name", "")
        return f"{operation}: {code}: {message}".strip(": ").replace(":  ", ": ")
    return f"{type(exc).__name__}: {exc}"


def with_retries(action: Callable[[], Any], attempts: int = TRANSIENT_ATTEMPTS, sleep: Callable[[float], None] = time.sleep) -> Any:
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except (ClientError, BotoCoreError) as exc:
            # A ClientError is retried only for the transient codes; a BotoCoreError (connection
            # reset, body cut short) always.
            if attempt == attempts or (error_code(exc) is not None and error_code(exc) not in TRANSIENT_CODES):
                raise
        sleep(min(8.0, 0.25 * 2 ** attempt))
    raise AssertionError("unreachable")  # pragma: no cover


class MemorySlots:
    """``concurrency`` part-size buffers for bodies held in memory; an object streamed whole holds
    several at once. First come, first served, so a large object is not starved by small ones."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._free = count
        self._queue: deque[object] = deque()
        self._condition = threading.Condition()

    @contextmanager
    def hold(self, wanted: int = 1) -> Iterator[None]:
        wanted = min(max(wanted, 1), self.count)
        ticket = object()
        with self._condition:
            self._queue.append(ticket)
            self._condition.wait_for(lambda: self._queue[0] is ticket and self._free >= wanted)
            self._queue.popleft()
            self._free -= wanted
            self._condition.notify_all()
        try:
            yield
        finally:
            with self._condition:
                self._free += wanted
                self._condition.notify_all()


class RequestCounter:
    """Counts S3 API calls per operation on one side (tests and the benchmark read it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def __call__(self, model: Any = None, **_: Any) -> None:
        name = getattr(model, "name", "unknown")
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + 1

    def writes(self) -> int:
        return sum(count for name, count in self.counts.items() if name in WRITE_OPERATIONS)


class Progress:
    """JSON lines for a role polling an async task: objects/bytes done, rate, ETA."""

    def __init__(self, path: str | None, objects_total: int, bytes_total: int, clock: Callable[[], float]):
        self.path = path
        self.objects_total = objects_total
        self.bytes_total = bytes_total
        self.objects_done = 0
        self.bytes_done = 0
        self.failed = 0
        self._clock = clock
        self._started = clock()
        self._last_write = 0.0
        self._lock = threading.Lock()
        if path:
            directory = os.path.dirname(os.path.abspath(path))
            os.makedirs(directory, exist_ok=True)
            with open(path, "w", encoding="utf-8"):
                pass
            self._write("start")

    def add_bytes(self, count: int) -> None:
        with self._lock:
            self.bytes_done += count
            self._maybe_write()

    def object_done(self, failed: bool = False) -> None:
        with self._lock:
            self.objects_done += 1
            self.failed += int(failed)
            self._maybe_write()

    def finish(self, phase: str = "done") -> None:
        with self._lock:
            self._write(phase)

    def _maybe_write(self) -> None:
        if self.path and self._clock() - self._last_write >= PROGRESS_INTERVAL_S:
            self._write("copy")

    def _write(self, phase: str) -> None:
        if not self.path:
            return
        now = self._clock()
        self._last_write = now
        elapsed = max(now - self._started, 1e-6)
        rate = self.bytes_done / elapsed
        remaining = max(self.bytes_total - self.bytes_done, 0)
        line = {
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),  # noqa: UP017 - modules run on 3.9
            "phase": phase,
            "objects_done": self.objects_done,
            "objects_total": self.objects_total,
            "objects_failed": self.failed,
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
            "elapsed_s": round(elapsed, 2),
            "rate_mib_s": round(rate / (1024 * 1024), 2),
            "eta_s": round(remaining / rate, 1) if rate > 0 else None,
        }
        with open(self.path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(line) + "\n")


def s3_client(account: Any, concurrency: int, counter: RequestCounter) -> Any:
    kwargs: dict[str, Any] = {"region_name": account.region}
    if account.endpoint_url:
        kwargs["endpoint_url"] = account.endpoint_url
    # Parts of several objects are in flight at once; botocore's default pool of 10 would queue them.
    pool = max(64, concurrency * 2 + 4)
    settings: dict[str, Any] = {"max_pool_connections": pool}
    if is_loopback(account.endpoint_url):
        # Over HTTP botocore hashes every PUT body with SHA-256 for the signature (over HTTPS it
        # does not), one more pass over every byte streamed. On a loopback address nothing sits
        # between client and server for that to guard against; the CRC32 checksum still goes along.
        settings["s3"] = dict(getattr(account.config, "s3", None) or {}, payload_signing_enabled=False)
    kwargs["config"] = account.config.merge(Config(**settings)) if account.config else Config(**settings)
    client = account.session.client("s3", **kwargs)
    client.meta.events.register("before-call.s3", counter)
    install_lean_parsers(client)
    build_user_agent_once(client)
    for operation in ("PutObject", "UploadPart"):
        client.meta.events.register(f"before-sign.s3.{operation}", send_small_body_at_once)
    return client


def is_loopback(endpoint_url: str | None) -> bool:
    """Whether the endpoint is plain HTTP on this host (a local S3 such as the lab's moto)."""
    parsed = urlsplit(endpoint_url or "")
    host = parsed.hostname or ""
    return parsed.scheme == "http" and (host in ("localhost", "::1") or host.startswith("127."))


# Below this size a body is sent with its headers instead of after a "100 Continue" answer.
EXPECT_CONTINUE_MIN_BODY = 1024 * 1024


def send_small_body_at_once(request: Any = None, **_: Any) -> None:
    """Drop ``Expect: 100-continue`` from a PUT whose body is small.

    botocore asks for it on every PutObject / UploadPart, then waits for S3's interim answer
    before sending the body: a round trip per object, which for a copy of many small objects is
    most of the time of each PUT. It only pays off for a body large enough that sending it to an
    error answer would cost more than that round trip.
    """
    if request is None or "Expect" not in request.headers:
        return
    body = request.body
    try:
        size = len(body) if isinstance(body, (bytes, bytearray)) else body.getbuffer().nbytes
    except (AttributeError, TypeError, ValueError):
        return
    if size < EXPECT_CONTINUE_MIN_BODY:
        del request.headers["Expect"]


def build_user_agent_once(client: Any) -> None:
    """Have this client build its User-Agent header once instead of twice per request.

    botocore re-assembles and re-sanitises the header character by character for every request
    (about 0.15 ms of CPU each time, twice per request), which for a copy of many small objects is
    a tenth of the client's work; the string is the same every time but for the per-request
    feature list, which only feeds AWS's SDK statistics. Only this client changes.
    """
    creator = getattr(client, "_user_agent_creator", None)
    if creator is None or not callable(getattr(creator, "to_string", None)):
        return
    try:
        fixed = creator.to_string()
    except Exception:  # pylint: disable=broad-except  # pragma: no cover - a botocore without it keeps its own
        return
    creator.to_string = lambda: fixed


class ListingPageParser:
    """botocore's parser for S3 answers, with ListObjectsV2 pages' objects read by
    :func:`split_listing_page`; the rest of each page (and any page it declines) is botocore's."""

    def __init__(self, parser: Any) -> None:
        self.parser = parser

    def parse(self, response: dict[str, Any], shape: Any) -> Any:
        if getattr(shape, "name", None) == LISTING_OUTPUT and response.get("status_code") == 200 \
                and isinstance(response.get("body"), bytes):
            split = split_listing_page(response["body"])
            if split is not None:
                rest, objects = split
                parsed = self.parser.parse(dict(response, body=rest), shape)
                if isinstance(parsed, dict) and "Contents" not in parsed and "Error" not in parsed:
                    parsed["Contents"] = objects
                    return parsed
        return self.parser.parse(response, shape)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.parser, name)


if ResponseParserFactory is not None:
    class ListingParserFactory(ResponseParserFactory):  # type: ignore[misc, valid-type]
        def create_parser(self, protocol_name: str) -> Any:
            return ListingPageParser(super().create_parser(protocol_name))
else:  # pragma: no cover - the module reports missing boto3 before getting here
    ListingParserFactory = None  # type: ignore[assignment, misc]


def install_lean_parsers(client: Any) -> None:
    """Parse this client's answers with less work: listings' objects read straight from the XML
    (see :mod:`s3_listing`), and timestamps left as the text S3 sent (what awscli does too).

    botocore parses every LastModified of a listing with dateutil, and builds and walks an
    element tree of every page; together ~90 % of the client's work on a 1,000-key page, and
    nothing here reads the timestamps; Expires is handed back to the writes as text, which
    botocore accepts. Only this client changes, not the caller's session.
    """
    endpoint = getattr(client, "_endpoint", None)
    if endpoint is None or not hasattr(endpoint, "_response_parser_factory") or ListingParserFactory is None:
        return
    factory = ListingParserFactory()
    factory.set_parser_defaults(timestamp_parser=lambda value: value)
    endpoint._response_parser_factory = factory


def list_objects(client: Any, bucket: str, prefix: str) -> list[ObjectState]:
    paginator = client.get_paginator("list_objects_v2")
    objects = []
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            objects.append(ObjectState(relative_key=item["Key"][len(prefix):], size=int(item["Size"]),
                                       etag=item["ETag"], storage_class=item.get("StorageClass")))
    return objects


def encode_tags(tag_set: Iterable[dict]) -> str:
    return urlencode([(tag["Key"], tag["Value"]) for tag in tag_set])


class BucketCopy:
    """One copy run between a source and a target identity (see module docstring)."""

    def __init__(self, source_account: Any, target_account: Any, options: CopyOptions,
                 clock: Callable[[], float] | None = None):
        self.options = options
        self.source_account = source_account
        self.target_account = target_account
        self.clock = clock or time.monotonic
        self.source_requests = RequestCounter()
        self.target_requests = RequestCounter()
        self.source = s3_client(source_account, options.concurrency, self.source_requests)
        self.target = s3_client(target_account, options.concurrency, self.target_requests)
        # Bodies held in memory at once: one slot per part, as many as an object streamed whole needs.
        self.buffer_slots = MemorySlots(options.concurrency)
        self.acl: str | None = "bucket-owner-full-control"
        self.progress: Progress | None = None
        self.plan: CopyPlan | None = None

    # ---- reading state -------------------------------------------------------------------------

    def read_target(self) -> tuple[bool, list[ObjectState]]:
        """Whether the target bucket exists, and its objects below the prefix (one listing, no HeadBucket)."""
        options = self.options
        try:
            return True, list_objects(self.target, options.target_bucket, options.target_prefix)
        except ClientError as exc:
            code = error_code(exc)
            if code in ("NoSuchBucket", "404"):
                return False, []
            if code in ACCESS_DENIED_CODES:
                raise TargetForbidden(describe(exc)) from exc
            raise S3CopyError(f"target.bucket: listing s3://{options.target_bucket} failed: {describe(exc)}",
                              side="target", option="bucket", aws_error_code=code) from exc

    def list_leftover_uploads(self) -> list[tuple[str, str]]:
        """(key, upload id) of incomplete multipart uploads for keys this run selects.

        Only keys this run selects (prefix, include/exclude, shard) are considered, so parallel
        shards never abort each other's uploads.
        """
        options = self.options
        uploads = []
        try:
            for page in self.target.get_paginator("list_multipart_uploads").paginate(
                    Bucket=options.target_bucket, Prefix=options.target_prefix):
                for upload in page.get("Uploads", []):
                    key = upload["Key"]
                    if key.startswith(options.target_prefix) and options.selects(key[len(options.target_prefix):]):
                        uploads.append((key, upload["UploadId"]))
        except ClientError as exc:
            code = error_code(exc)
            if code in ("NoSuchBucket", "404") or code in ACCESS_DENIED_CODES:
                return []  # a missing bucket has none; a forbidden one fails in read_target
            raise S3CopyError(f"target.bucket: could not list incomplete multipart uploads in "
                              f"s3://{options.target_bucket}: {describe(exc)}; grant the target identity "
                              "s3:ListBucketMultipartUploads", side="target", option="bucket",
                              aws_error_code=code) from exc
        return uploads

    def taken_error(self, detail: str) -> TargetBucketTaken:
        bucket = self.options.target_bucket
        return TargetBucketTaken(
            f"target.bucket: s3://{bucket} {detail}. S3 bucket names are global, so the new account cannot "
            f"reuse the old name: choose a new one and map it in the inventory, e.g. in group_vars/<env>.yml "
            f"'s3_bucket_map: {{{self.options.source_bucket}: {bucket}-<new account id>}}', and set target.bucket "
            f"from it. Nothing was copied.", side="target", option="bucket", aws_error_code="BucketAlreadyExists")

    def create_target_bucket(self, probe: bool = False) -> bool:
        bucket = self.options.target_bucket
        request: dict[str, Any] = {"Bucket": bucket}
        region = self.target_account.region
        if region and region != "us-east-1":
            request["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self.target.create_bucket(**request)
        except ClientError as exc:
            code = error_code(exc)
            if code == "BucketAlreadyExists":
                raise self.taken_error("is owned by another account (BucketAlreadyExists)") from exc
            if code == "BucketAlreadyOwnedByYou":
                if probe:
                    raise S3CopyError(f"target.bucket: s3://{bucket} belongs to the target account but the target "
                                      "identity may not list it; grant it s3:ListBucket on the bucket", side="target",
                                      option="bucket", aws_error_code=code) from exc
                return True
            raise S3CopyError(f"target.bucket: could not create s3://{bucket} in {region}: {describe(exc)}; create "
                              "it yourself or grant the target identity s3:CreateBucket", side="target",
                              option="create_bucket", aws_error_code=code) from exc
        return True

    def list_side(self, side: str) -> list[ObjectState]:
        client, bucket, prefix = ((self.source, self.options.source_bucket, self.options.source_prefix)
                                  if side == "source" else
                                  (self.target, self.options.target_bucket, self.options.target_prefix))
        try:
            return list_objects(client, bucket, prefix)
        except ClientError as exc:
            code = error_code(exc)
            if code == "NoSuchBucket":
                raise S3CopyError(f"{side}.bucket: s3://{bucket} does not exist for the {side} identity; check the "
                                  "bucket name and the region", side=side, option="bucket", aws_error_code=code) from exc
            if code in ACCESS_DENIED_CODES:
                raise S3CopyError(f"{side}.bucket: the {side} identity may not list s3://{bucket}: grant it "
                                  "s3:ListBucket on the bucket (or use the identity that owns it)", side=side,
                                  option="bucket", aws_error_code=code) from exc
            raise S3CopyError(f"{side}.bucket: listing s3://{bucket} failed: {describe(exc)}", side=side,
                              option="bucket", aws_error_code=code) from exc

    def recorded_source_etags(self, relative_keys: Iterable[str]) -> dict[str, str | None]:
        def read(relative_key: str) -> tuple[str, str | None]:
            try:
                head = with_retries(lambda: self.target.head_object(Bucket=self.options.target_bucket,
                                                                    Key=self.options.target_key(relative_key)))
            except ClientError:
                return relative_key, None
            return relative_key, head.get("Metadata", {}).get(SOURCE_ETAG_METADATA)

        keys = list(relative_keys)
        if not keys:
            return {}
        with ThreadPoolExecutor(max_workers=min(self.options.concurrency, len(keys))) as pool:
            return dict(pool.map(read, keys))

    def read_state(self, check_mode: bool) -> tuple[CopyPlan, list[tuple[str, str]]]:
        """List source, target and leftover uploads concurrently, then plan."""
        with ThreadPoolExecutor(max_workers=3) as pool:
            source_listing = pool.submit(self.list_side, "source")
            target_listing = pool.submit(self.read_target)
            upload_listing = pool.submit(self.list_leftover_uploads)
            try:
                bucket_exists, target_objects = target_listing.result()
            except TargetForbidden as exc:
                # The name exists, and either another account owns it or the target identity may
                # not list it. CreateBucket tells the two apart and changes nothing in either case.
                if check_mode:
                    raise self.taken_error(f"exists but the target identity may not list it ({exc})") from exc
                self.create_target_bucket(probe=True)
                raise self.taken_error(f"exists but the target identity may not list it ({exc})") from exc
            source_objects = source_listing.result()
            leftover_uploads = upload_listing.result()
        if not bucket_exists and not self.options.create_bucket:
            raise S3CopyError(f"target.bucket: s3://{self.options.target_bucket} does not exist and "
                              "target.create_bucket is false; create it or set target.create_bucket: true",
                              side="target", option="create_bucket")
        plan = plan_copy(self.options, source_objects, target_objects, bucket_exists=bucket_exists)
        if plan.needs_source_etag:
            recorded = self.recorded_source_etags(plan.needs_source_etag)
            plan = plan_copy(self.options, source_objects, target_objects, recorded, bucket_exists=bucket_exists)
        return plan, leftover_uploads

    # ---- the run -------------------------------------------------------------------------------

    def run(self, check_mode: bool = False) -> CopyResult:
        started = self.clock()
        plan, leftover_uploads = self.read_state(check_mode)
        self.plan = plan
        result = CopyResult(changed=plan.changes or bool(leftover_uploads), source_count=plan.source_count,
                            skipped=len(plan.skipped), plan=dict(plan.summary(), abort_uploads=len(leftover_uploads)))
        if check_mode:
            result.copied = len(plan.copies)
            result.deleted = len(plan.deletes)
            result.elapsed_s = self.clock() - started
            result.requests = self.request_counts()
            return result

        if plan.create_bucket:
            self.create_target_bucket()
            result.bucket_created = True
        if plan.copies:
            self.acl = self.acl_for_target()
        result.aborted_uploads = self.abort_uploads(leftover_uploads)

        self.progress = Progress(self.options.progress_file, len(plan.copies), plan.bytes_to_copy, self.clock)
        outcomes = self.copy_all(plan.copies)
        for outcome in outcomes:
            if outcome.copied:
                result.copied += 1
                result.bytes_copied += outcome.bytes_copied
                result.method_used[outcome.method or "server_side"] += 1
            else:
                result.failed += 1
                result.failures.append({"key": self.options.source_prefix + outcome.relative_key,
                                        "reason": outcome.reason or "unknown"})
        if plan.deletes:
            deleted, delete_failures = self.delete_extra(plan.deletes)
            result.deleted = deleted
            result.failed += len(delete_failures)
            result.failures.extend(delete_failures)
        if self.options.verify:
            copied = {item.relative_key: item.source for item in plan.copies}
            verified_keys = {outcome.relative_key for outcome in outcomes if outcome.copied}
            answered = {outcome.relative_key: outcome.target_etag for outcome in outcomes if outcome.copied}
            mismatches = self.verify({key: copied[key] for key in verified_keys}, answered)
            result.verified = len(verified_keys) - len(mismatches)
            for relative_key, reason in mismatches:
                result.copied -= 1
                result.failed += 1
                result.failures.append({"key": self.options.source_prefix + relative_key, "reason": reason})
        self.progress.finish("done" if not result.failed else "done_with_failures")
        result.changed = bool(result.copied or result.deleted or result.bucket_created or result.aborted_uploads
                              or result.failed)
        result.elapsed_s = self.clock() - started
        result.requests = self.request_counts()
        return result

    def request_counts(self) -> dict[str, dict[str, int]]:
        return {"source": dict(self.source_requests.counts), "target": dict(self.target_requests.counts),
                "writes": {"target": self.target_requests.writes(), "source": self.source_requests.writes()}}

    def acl_for_target(self) -> str | None:
        try:
            controls = self.target.get_bucket_ownership_controls(Bucket=self.options.target_bucket)
        except ClientError:
            return "bucket-owner-full-control"
        rules = controls.get("OwnershipControls", {}).get("Rules", [])
        if any(rule.get("ObjectOwnership") == "BucketOwnerEnforced" for rule in rules):
            return None  # ACLs are disabled; the bucket owner owns every object anyway
        return "bucket-owner-full-control"

    def abort_uploads(self, uploads: Iterable[tuple[str, str]]) -> int:
        """Abort the incomplete multipart uploads an interrupted earlier run left."""
        aborted = 0
        for key, upload_id in uploads:
            try:
                self.target.abort_multipart_upload(Bucket=self.options.target_bucket, Key=key, UploadId=upload_id)
                aborted += 1
            except ClientError as exc:
                if error_code(exc) != "NoSuchUpload":
                    raise
        return aborted

    def copy_all(self, copies: Iterable[ObjectCopy]) -> list[ObjectOutcome]:
        # Largest first: the long copies start early instead of finishing last, alone.
        copies = sorted(copies, key=lambda item: (-item.source.size, item.relative_key))
        if not copies:
            return []
        workers = min(self.options.concurrency, len(copies))
        with ThreadPoolExecutor(max_workers=self.options.concurrency, thread_name_prefix="s3-part") as parts, \
                ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3-object") as objects:
            self.part_pool = parts
            return list(objects.map(self.copy_one, copies))

    def copy_one(self, item: ObjectCopy) -> ObjectOutcome:
        options = self.options
        attributes: dict[str, Any] | None = None
        try:
            if options.method in ("auto", "server_side"):
                try:
                    if copies_in_one_request(item.source, options):
                        target_etag = self.copy_in_one_request(item)
                        if target_etag is not None:
                            return self.done(item, "server_side", target_etag)
                    attributes = self.source_attributes(item.source)
                    return self.done(item, "server_side", self.copy_server_side(item, attributes))
                except ServerSideDenied as exc:
                    if options.method == "server_side":
                        raise ObjectFailed(
                            f"the target identity may not read s3://{options.source_bucket}/"
                            f"{options.source_prefix}{item.relative_key} ({exc}); grant it s3:GetObject (and "
                            "s3:GetObjectTagging, to keep tags) in the source bucket policy, or use method: stream") from exc
            return self.done(item, "stream", self.copy_stream(item, attributes))
        except ObjectFailed as exc:
            return self.failed(item, str(exc))
        except (ClientError, BotoCoreError) as exc:
            return self.failed(item, describe(exc))

    def done(self, item: ObjectCopy, method: str, target_etag: str | None = None) -> ObjectOutcome:
        if self.progress:
            self.progress.object_done()
        return ObjectOutcome(relative_key=item.relative_key, copied=True, method=method, bytes_copied=item.source.size,
                             target_etag=target_etag)

    def failed(self, item: ObjectCopy, reason: str) -> ObjectOutcome:
        if self.progress:
            self.progress.object_done(failed=True)
        return ObjectOutcome(relative_key=item.relative_key, copied=False, reason=reason)

    # ---- one object ----------------------------------------------------------------------------

    def source_key(self, item: ObjectCopy) -> str:
        return self.options.source_prefix + item.relative_key

    def source_attributes(self, source: ObjectState, response: dict | None = None) -> dict[str, Any]:
        """Content headers, user metadata and tags of the source object, read as the source identity.

        ``response`` is the source's GetObject answer when the body was read anyway (stream mode).
        """
        key = self.options.source_prefix + source.relative_key
        from_get_object = response is not None
        if response is None:
            try:
                response = with_retries(lambda: self.source.head_object(Bucket=self.options.source_bucket, Key=key,
                                                                        IfMatch=source.etag))
            except ClientError as exc:
                if error_code(exc) in PRECONDITION_CODES:
                    raise SourceChanged(f"s3://{self.options.source_bucket}/{key} changed since it was listed; "
                                        "rerun to copy the new version") from exc
                raise
        wanted = self.options.metadata
        attributes: dict[str, Any] = {}
        for name, field_name in (("content_type", "ContentType"), ("cache_control", "CacheControl"),
                                 ("content_encoding", "ContentEncoding"),
                                 ("content_disposition", "ContentDisposition"),
                                 ("content_language", "ContentLanguage")):
            if name in wanted and response.get(field_name):
                attributes[field_name] = response[field_name]
        if "expires" in wanted:
            if response.get("Expires"):
                attributes["Expires"] = response["Expires"]
            elif response.get("ExpiresString"):
                attributes["Expires"] = response["ExpiresString"]
        metadata = dict(response.get("Metadata", {})) if "user" in wanted else {}
        metadata.pop(SOURCE_ETAG_METADATA, None)
        metadata[SOURCE_ETAG_METADATA] = normalise_etag(source.etag)
        attributes["Metadata"] = metadata
        # GetObject says how many tags there are (no header: none). HeadObject does not: leave the
        # tags unknown (None) until a write needs them, since a server-side CopyObject copies them itself.
        if "tags" not in wanted or (from_get_object and not response.get("TagCount")):
            attributes["Tagging"] = ""
        else:
            attributes["Tagging"] = None
        return attributes

    def tagging(self, source: ObjectState, attributes: dict[str, Any]) -> str:
        """The source object's tags, URL-encoded for a write (read as the source identity once)."""
        if attributes.get("Tagging") is None:
            key = self.options.source_prefix + source.relative_key
            tags = with_retries(lambda: self.source.get_object_tagging(Bucket=self.options.source_bucket,
                                                                       Key=key))["TagSet"]
            attributes["Tagging"] = encode_tags(tags)
        return str(attributes["Tagging"])

    def write_arguments(self, attributes: dict[str, Any], tagging: str = "") -> dict[str, Any]:
        arguments = {name: value for name, value in attributes.items() if name != "Tagging"}
        if tagging:
            arguments["Tagging"] = tagging
        if self.acl:
            arguments["ACL"] = self.acl
        if self.options.kms_key_id:
            arguments["ServerSideEncryption"] = "aws:kms"
            arguments["SSEKMSKeyId"] = self.options.kms_key_id
        if self.options.storage_class:
            arguments["StorageClass"] = self.options.storage_class
        return arguments

    def copy_in_one_request(self, item: ObjectCopy) -> str | None:
        """One ``CopyObject`` that has S3 copy the content headers, user metadata and tags itself.

        The target's ETag when it came out equal to the source's (see ``copies_in_one_request``);
        None when it did not (a source under SSE-KMS, a target bucket encrypting with KMS by
        default): the bytes are right but the rerun could not tell, so the caller copies the object
        again recording ``cutover-source-etag``.
        """
        options = self.options
        source = {"Bucket": options.source_bucket, "Key": self.source_key(item)}
        arguments: dict[str, Any] = {
            "MetadataDirective": "COPY",
            # COPY needs s3:GetObjectTagging on the source for the target identity, like s3:GetObject.
            "TaggingDirective": "COPY" if "tags" in options.metadata else "REPLACE",
        }
        if self.acl:
            arguments["ACL"] = self.acl
        if options.storage_class:
            arguments["StorageClass"] = options.storage_class
        with self.server_side_errors(item):
            answer = with_retries(lambda: self.target.copy_object(
                Bucket=options.target_bucket, Key=options.target_key(item.relative_key), CopySource=source,
                CopySourceIfMatch=item.source.etag, **arguments))
        target_etag = answer.get("CopyObjectResult", {}).get("ETag") or ""
        if normalise_etag(target_etag) != normalise_etag(item.source.etag):
            return None
        if self.progress:
            self.progress.add_bytes(item.source.size)
        return target_etag

    @contextmanager
    def server_side_errors(self, item: ObjectCopy) -> Iterator[None]:
        """A denied read of the source becomes ServerSideDenied, a changed source SourceChanged."""
        try:
            yield
        except ClientError as exc:
            code = error_code(exc)
            if code in ACCESS_DENIED_CODES:
                raise ServerSideDenied(describe(exc)) from exc
            if code in PRECONDITION_CODES:
                raise SourceChanged(f"s3://{self.options.source_bucket}/{self.source_key(item)} changed during the "
                                    "copy (CopySourceIfMatch failed); nothing was written for it, rerun to copy the "
                                    "new version") from exc
            raise

    def copy_server_side(self, item: ObjectCopy, attributes: dict[str, Any]) -> str | None:
        """CopyObject (REPLACE, recording the source ETag) or a multipart copy; the single copy's ETag."""
        options = self.options
        source = {"Bucket": options.source_bucket, "Key": self.source_key(item)}
        target_key = options.target_key(item.relative_key)
        etag = item.source.etag
        with self.server_side_errors(item):
            if not uses_multipart(item.source.size, options, "server_side"):
                arguments = self.write_arguments(attributes)
                # COPY has S3 copy the tags (the target identity needs s3:GetObjectTagging on the
                # source, like s3:GetObject); it saves a GetObjectTagging call per object.
                if attributes.get("Tagging") is None:
                    arguments["TaggingDirective"] = "COPY"
                else:
                    arguments.update(TaggingDirective="REPLACE", Tagging=attributes["Tagging"])
                answer = with_retries(lambda: self.target.copy_object(
                    Bucket=options.target_bucket, Key=target_key, CopySource=source, CopySourceIfMatch=etag,
                    MetadataDirective="REPLACE", **arguments))
                if self.progress:
                    self.progress.add_bytes(item.source.size)
                return answer.get("CopyObjectResult", {}).get("ETag")

            def copy_part(number: int, first: int, last: int, upload_id: str) -> dict[str, Any]:
                answer = with_retries(lambda: self.target.upload_part_copy(
                    Bucket=options.target_bucket, Key=target_key, UploadId=upload_id, PartNumber=number,
                    CopySource=source, CopySourceRange=f"bytes={first}-{last}", CopySourceIfMatch=etag))
                if self.progress:
                    self.progress.add_bytes(last - first + 1)
                return {"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]}

            self.multipart(item, attributes, copy_part)
        return None

    def copy_stream(self, item: ObjectCopy, attributes: dict[str, Any] | None) -> str | None:
        """One GET and one PUT, or a multipart upload of ranged GETs; the single PUT's ETag."""
        options = self.options
        bucket, key, etag = options.source_bucket, self.source_key(item), item.source.etag
        target_key = options.target_key(item.relative_key)
        try:
            if not uses_multipart(item.source.size, options, "stream"):
                with self.buffer_slots.hold(memory_slots(item.source.size, options)):
                    answer = with_retries(lambda: self.source.get_object(Bucket=bucket, Key=key, IfMatch=etag))
                    body = answer["Body"].read()
                    if len(body) != item.source.size:
                        raise ObjectFailed(f"s3://{bucket}/{key}: read {len(body)} bytes, listed {item.source.size}")
                    if attributes is None:
                        attributes = self.source_attributes(item.source, response=answer)
                    arguments = self.write_arguments(attributes, self.tagging(item.source, attributes))
                    answer = with_retries(lambda: self.target.put_object(Bucket=options.target_bucket,
                                                                         Key=target_key, Body=body, **arguments))
                if self.progress:
                    self.progress.add_bytes(item.source.size)
                return answer.get("ETag")
            if attributes is None:
                attributes = self.source_attributes(item.source)

            def stream_part(number: int, first: int, last: int, upload_id: str) -> dict[str, Any]:
                with self.buffer_slots.hold():
                    def transfer() -> dict[str, Any]:
                        answer = self.source.get_object(Bucket=bucket, Key=key, IfMatch=etag,
                                                        Range=f"bytes={first}-{last}")
                        body = answer["Body"].read()
                        if len(body) != last - first + 1:
                            raise ObjectFailed(f"s3://{bucket}/{key}: short read of part {number}")
                        return self.target.upload_part(Bucket=options.target_bucket, Key=target_key,
                                                       UploadId=upload_id, PartNumber=number, Body=body)
                    answer = with_retries(transfer)
                if self.progress:
                    self.progress.add_bytes(last - first + 1)
                return {"PartNumber": number, "ETag": answer["ETag"]}

            self.multipart(item, attributes, stream_part)
        except ClientError as exc:
            if error_code(exc) in PRECONDITION_CODES:
                raise SourceChanged(f"s3://{bucket}/{key} changed during the copy (If-Match failed); nothing was "
                                    "written for it, rerun to copy the new version") from exc
            raise
        return None

    def multipart(self, item: ObjectCopy, attributes: dict[str, Any],
                  transfer_part: Callable[[int, int, int, str], dict[str, Any]]) -> None:
        """Create, send the parts in parallel, complete; abort on any failure so nothing is left."""
        options = self.options
        target_key = options.target_key(item.relative_key)
        upload_id = with_retries(lambda: self.target.create_multipart_upload(
            Bucket=options.target_bucket, Key=target_key,
            **self.write_arguments(attributes, self.tagging(item.source, attributes))))["UploadId"]
        futures: list[Future] = []
        try:
            for number, first, last in part_ranges(item.source.size, options.part_size):
                futures.append(self.part_pool.submit(transfer_part, number, first, last, upload_id))
            pending = wait(futures, return_when=FIRST_EXCEPTION).not_done
            for future in pending:
                future.cancel()
            wait(futures)
            parts = [future.result() for future in futures]
            parts.sort(key=lambda part: part["PartNumber"])
            with_retries(lambda: self.target.complete_multipart_upload(
                Bucket=options.target_bucket, Key=target_key, UploadId=upload_id, MultipartUpload={"Parts": parts}))
        except BaseException:
            for future in futures:
                future.cancel()
            wait(futures)
            try:
                self.target.abort_multipart_upload(Bucket=options.target_bucket, Key=target_key, UploadId=upload_id)
            except (ClientError, BotoCoreError):
                pass  # the next run aborts what is left under the target prefix
            raise

    # ---- after the copy ------------------------------------------------------------------------

    def delete_extra(self, relative_keys: Iterable[str]) -> tuple[int, list[dict[str, str]]]:
        deleted = 0
        failures: list[dict[str, str]] = []
        keys = [self.options.target_key(key) for key in relative_keys]
        for batch in batches(keys):
            request = {"Objects": [{"Key": key} for key in batch], "Quiet": True}
            try:
                answer = with_retries(lambda request=request: self.target.delete_objects(  # type: ignore[misc]
                    Bucket=self.options.target_bucket, Delete=request))
            except ClientError as exc:
                failures.extend({"key": key, "reason": f"delete: {describe(exc)}"} for key in batch)
                continue
            errors = answer.get("Errors", [])
            failures.extend({"key": error["Key"], "reason": f"delete: {error.get('Code')}: {error.get('Message')}"}
                            for error in errors)
            deleted += len(batch) - len(errors)
        return deleted, failures

    def verify(self, copied: dict[str, ObjectState],
               answered: Mapping[str, str | None] | None = None) -> list[tuple[str, str]]:
        """Every copied object's size and source identity.

        An object whose single write S3 answered with the source's ETag is verified by that answer:
        S3 computed the ETag over the bytes it stored, and equal ETags (an MD5, or the MD5 of the
        parts' MD5s) mean equal bytes, hence equal size. The others (multipart uploads, targets
        whose ETag is no MD5) are read back: one HeadObject each when there are few, else one
        listing of the target and a HeadObject only where the ETags differ.
        """
        answered = answered or {}
        unproven = {key: source for key, source in copied.items()
                    if not answer_proves_copy(source, answered.get(key))}
        if not unproven:
            return []
        if len(unproven) <= VERIFY_HEAD_LIMIT:
            heads = self.head_targets(unproven)
            targets = {key: state for key, (state, _recorded) in heads.items() if state is not None}
            recorded = {key: value for key, (_state, value) in heads.items()}
        else:
            targets = {item.relative_key: item for item in self.list_side("target")}
            undecided = [key for key, source in unproven.items()
                         if key in targets and targets[key].size == source.size and targets[key].etag != source.etag]
            recorded = self.recorded_source_etags(undecided)
        mismatches = []
        for relative_key, source in sorted(unproven.items()):
            target = targets.get(relative_key)
            if is_copied(source, target, recorded.get(relative_key)):
                continue
            if target is None:
                reason = "verify: the object is missing from the target after the copy"
            elif target.size != source.size:
                reason = f"verify: target size {target.size} differs from source size {source.size}"
            else:
                reason = (f"verify: the target records source ETag {recorded.get(relative_key)!r}, the source has "
                          f"{source.etag}")
            mismatches.append((relative_key, reason))
        return mismatches

    def head_targets(self, relative_keys: Iterable[str]) -> dict[str, tuple[ObjectState | None, str | None]]:
        """Size, ETag and recorded source ETag of target objects (None where the object is missing)."""
        def read(relative_key: str) -> tuple[str, tuple[ObjectState | None, str | None]]:
            try:
                head = with_retries(lambda: self.target.head_object(Bucket=self.options.target_bucket,
                                                                    Key=self.options.target_key(relative_key)))
            except ClientError:
                return relative_key, (None, None)
            state = ObjectState(relative_key=relative_key, size=int(head.get("ContentLength", 0)),
                                etag=head.get("ETag", ""))
            return relative_key, (state, head.get("Metadata", {}).get(SOURCE_ETAG_METADATA))

        keys = list(relative_keys)
        if not keys:
            return {}
        with ThreadPoolExecutor(max_workers=min(self.options.concurrency, len(keys))) as pool:
            return dict(pool.map(read, keys))


def copy_bucket(source_account: Any, target_account: Any, options: CopyOptions, check_mode: bool = False,
                clock: Callable[[], float] | None = None) -> CopyResult:
    """List both sides, plan, and (unless ``check_mode``) copy, delete extras and verify."""
    with older_objects_left_out_of_collection():
        return BucketCopy(source_account, target_account, options, clock=clock).run(check_mode=check_mode)
