"""`s3://bucket/prefix?endpoint=URL[&ca=PATH]`: objects in an S3-compatible store (SeaweedFS, Ceph RGW, AWS).

Credentials come from the standard AWS environment or profile, never from the URL. TLS endpoints
(`https://`) verify against `ca=PATH` when given, else `AWS_CA_BUNDLE`, else the system bundle.

Every write is write-once:
- up to the multipart threshold, one `PutObject` with `If-None-Match: *`: the store refuses a
  second writer of a key (412), atomically on SeaweedFS, Ceph RGW and AWS;
- above it, a multipart upload: a `HEAD` first (an existing key fails fast, before any byte is
  sent), the parts, then `CompleteMultipartUpload` with `If-None-Match: *`, then a `HEAD` whose
  ETag must be the one the completion returned. Any failure, an interrupt included, aborts the
  upload, so no parts are left behind. An abort that cannot reach the store (it went down mid-upload)
  is tried again once the store answers (the next write, and `close()`); one still failing at
  `close()` is logged, and a bucket lifecycle rule `AbortIncompleteMultipartUpload` is the backstop.
  SeaweedFS 4 checks `If-None-Match` on completion against an existing object but not atomically
  against a *concurrent* completion of the same key (measured: up to 6 of 6 racing completions
  succeed). The final `HEAD` narrows that window; what remains cannot load wrong data, because the
  manifest (small, one atomic `PutObject`) carries each chunk's sha256 and the supersink checks it.

The bucket is checked once, before the first write (`GetBucketVersioning`):
- a bucket that does not exist is a StoreAccessError, not a write: SeaweedFS creates a missing bucket
  on the first `PutObject` of an identity with the Admin action, so a typo in the bucket would
  otherwise fill a new bucket the supersink never reads;
- a bucket with versioning *enabled* is refused (StoreAccessError): Ceph RGW 16 ignores
  `If-None-Match: *` there (a second write becomes a new current version, measured for `PutObject`
  and for `CompleteMultipartUpload`), and retention's deletes would only add delete markers, keeping
  every byte as a noncurrent version. Versioning *suspended* (RGW then honours the header) is accepted.
A store that refuses `GetBucketVersioning` (a policy granting writes only) cannot tell: the writes go on.

Retries: botocore's own loop (standard mode: capped exponential backoff with jitter, retrying 5xx,
throttling, timeouts and connection resets) retries each request, so a failed part of a multipart
upload is re-sent alone. It is the only retry inside this adapter; above it, the producer retries a
whole write through a store outage (producer.write_retry) and the supersink postpones a task's load
with its own backoff.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, SSLError
from botocore.exceptions import ConnectionError as BotoConnectionError

from eventindex.errors import (
    ConfigError,
    ForbiddenLocationError,
    ObjectExistsError,
    ObjectNotFoundError,
    OversizedObjectError,
    StoreAccessError,
    StoreError,
    StoreUnavailableError,
)
from eventindex.redact import has_userinfo, redact, userinfo_note
from eventindex.store.base import (
    DEFAULT_MAX_OBJECT_BYTES,
    MAX_PARTS,
    ObjectStore,
    StoreOptions,
    check_key,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger(__name__)

S3_CONNECT_TIMEOUT = 10.0
S3_READ_TIMEOUT = 60.0
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_EXISTS = {"PreconditionFailed", "412", "ConditionalRequestConflict"}
_NO_UPLOAD = {"NoSuchUpload"}
#: Codes that refuse the service itself whatever the HTTP status (an expired or invalid session token,
#: a malformed authorization or wrong region are HTTP 400 on AWS): waiting will not fix them.
_ACCESS = {
    "NoSuchBucket",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AuthorizationHeaderMalformed",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "RequestTimeTooSkewed",
}
#: Keys per DeleteObjects request (S3's maximum).
DELETE_BATCH = 1000


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str
    endpoint: str | None
    region: str | None
    #: CA bundle that verifies an https:// endpoint (boto3 `verify=`)
    ca: str | None = None

    @classmethod
    def from_url(cls, url: str) -> S3Location:
        # credentials first, on the raw string: a password holding "/", "?" or "#" hides its "@" from urlsplit's
        # netloc; and no message below shows the URL but redacted (an option value may be a misplaced secret)
        if has_userinfo(url):
            raise ConfigError("s3 URL must not carry credentials: use the AWS environment or profile")
        shown = redact(url)
        try:
            parts = urlsplit(url)
        except ValueError as exc:  # e.g. an unclosed [ in the bucket
            raise ConfigError(f"s3 URL is malformed: {exc}") from None  # not shown: what is malformed may be a secret
        if parts.scheme != "s3":
            raise ConfigError(f"{shown!r}: expected s3://bucket/prefix")
        if not parts.netloc:
            raise ConfigError(f"{shown!r}: no bucket")
        if parts.fragment or "#" in url:
            # urlsplit would take everything after it, `?endpoint=` included, for a fragment: the client would
            # then sign requests for AWS instead of the intended endpoint
            raise ConfigError("s3 URL: no '#' (a '#' in a prefix is written %23, and is not a clean key either)")
        if any(c in parts.netloc for c in ":@[] ") or not parts.netloc.isprintable():
            # no bucket name has these; the bucket is not shown: it may be the start of a misplaced user:password
            raise ConfigError("s3 URL: a bucket name has no ':', '@', '[', ']', space or control character")
        query = parse_qs(parts.query, keep_blank_values=True)
        endpoint = query.get("endpoint", [None])[-1]
        if endpoint is not None and has_userinfo(endpoint):
            raise ConfigError(
                f"s3 endpoint must not carry credentials: use the AWS environment or profile{userinfo_note(endpoint)}"
            )
        if shown != url:  # user-info elsewhere (an "&" in an endpoint's password), a secret_key=...
            raise ConfigError(
                "s3 URL must not carry credentials (user-info or a secret-looking parameter): use the AWS environment "
                "or profile" + (" (an '@' of a path or an option is written %40)" if "@" in url else "")
            )
        unknown = set(query) - {"endpoint", "region", "ca"}
        if unknown:
            raise ConfigError(f"{shown!r}: unknown query parameter(s) {', '.join(sorted(unknown))}")
        if endpoint is not None:
            try:
                ep = urlsplit(endpoint)
                ep_host, ep_user, ep_password = ep.hostname, ep.username, ep.password
            except ValueError:
                raise ConfigError(f"{shown!r}: endpoint must be an http:// or https:// URL") from None
            if ep.scheme not in ("http", "https") or not ep_host:
                raise ConfigError(f"{shown!r}: endpoint must be an http:// or https:// URL")
            if ep_user or ep_password:
                raise ConfigError("s3 endpoint must not carry credentials: use the AWS environment or profile")
        ca = query.get("ca", [None])[-1]
        if ca is not None:
            if endpoint is None or urlsplit(endpoint).scheme != "https":
                raise ConfigError("s3 URL: ca= needs an https:// endpoint")
            if not Path(ca).is_file():
                raise ConfigError(f"s3 URL: ca= file {ca} does not exist")
        prefix = parts.path.strip("/")
        if prefix:
            check_key(prefix)
        return cls(parts.netloc, prefix, endpoint, query.get("region", [None])[-1], ca)


def _raw_timestamp(value: str) -> str:
    return value


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


class S3Store(ObjectStore):
    def __init__(self, location: S3Location, client: Any = None, options: StoreOptions | None = None) -> None:
        self.location = location
        self.options = options or StoreOptions()
        self.url = f"s3://{location.bucket}/{location.prefix}".rstrip("/")
        self.bucket = location.bucket
        self.client: S3Client = client or self._client(location, self.options)
        #: the bucket was found fit for writes (see the module docstring), once per store
        self._bucket_checked = False
        self._check_lock = threading.Lock()
        #: multipart uploads whose abort could not reach the store: (key, full key, upload id)
        self._unaborted: list[tuple[str, str, str]] = []
        self._unaborted_lock = threading.Lock()

    @staticmethod
    def _client(location: S3Location, options: StoreOptions) -> S3Client:
        try:
            core = botocore.session.Session()
            # Response timestamps (LastModified, ...) are left as the strings the server sent: nothing here reads
            # them, and parsing each with dateutil cost ~10 % of the CPU of a small GET (measured on SeaweedFS).
            core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_raw_timestamp)
            return boto3.session.Session(botocore_session=core).client(
                "s3",
                endpoint_url=location.endpoint,
                region_name=location.region or None,
                verify=location.ca,
                config=Config(
                    retries={"mode": "standard", "max_attempts": options.max_attempts},
                    connect_timeout=S3_CONNECT_TIMEOUT,
                    read_timeout=S3_READ_TIMEOUT,
                    max_pool_connections=options.connections,
                    s3={"addressing_style": "path"},
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                ),
            )
        except BotoCoreError as exc:  # e.g. an empty AWS_CA_BUNDLE, an unknown profile
            raise ConfigError(f"s3 store: {exc}") from exc

    @classmethod
    def from_url(cls, url: str, options: StoreOptions | None = None) -> S3Store:
        return cls(S3Location.from_url(url), options=options)

    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self.location.prefix}/{key}" if self.location.prefix else key

    def _fail(self, what: str, key: str, exc: Exception) -> StoreError:
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code in _NOT_FOUND:
                return ObjectNotFoundError(f"object {key} not found in {self.url}")
            if code in _EXISTS:
                return ObjectExistsError(f"object {key} already exists in {self.url}")
            status = _status(exc)
            if status >= 500 or code in ("SlowDown", "RequestTimeout"):
                return StoreUnavailableError(
                    f"{what} {key} in {self.url}: {code} (HTTP {status}), {self.options.max_attempts} attempts"
                )
            if status in (401, 403) or code in _ACCESS:  # wrong credentials, an expired token, no permission,
                # a skewed clock, the bucket gone: every request fails alike
                return StoreAccessError(f"{what} {key} in {self.url}: {code} (HTTP {status})")
            return StoreError(f"{what} {key} in {self.url}: {code} (HTTP {status})")
        detail = f"{what} {key} in {self.url}: {type(exc).__name__}: {exc}"
        if isinstance(exc, SSLError) or not isinstance(exc, (BotoConnectionError, HTTPClientError)):
            # a refused certificate or missing credentials: waiting will not fix it
            return StoreAccessError(detail)
        return StoreUnavailableError(f"{detail}, {self.options.max_attempts} attempts")

    def put(self, key: str, data: bytes) -> None:
        full = self._full(key)
        self._check_bucket_for_writes(key)
        if len(data) > self.options.multipart_threshold:
            self._put_multipart(key, data)
            return
        try:
            self.client.put_object(Bucket=self.bucket, Key=full, Body=data, IfNoneMatch="*")
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("cannot write", key, exc) from exc
        self._abort_leftovers()

    def _check_bucket_for_writes(self, key: str) -> None:
        """Before the first write: refuse a bucket that does not exist or has versioning enabled (see the
        module docstring). A store that does not answer fails the write as unavailable (checked again at
        the next); one that refuses the request cannot tell, and the write goes on."""
        if self._bucket_checked:
            return
        with self._check_lock:
            if self._bucket_checked:
                return
            try:
                versioning = self.client.get_bucket_versioning(Bucket=self.bucket).get("Status")
            except ClientError as exc:
                code, status = _code(exc), _status(exc)
                if code == "NoSuchBucket" or status == 404:
                    raise StoreAccessError(
                        f"cannot write {key} in {self.url}: no such bucket {self.bucket!r}"
                    ) from None
                if status >= 500 or code in ("SlowDown", "RequestTimeout"):
                    raise self._fail("cannot write", key, exc) from exc
                versioning = None  # refused (403) or not implemented: the writes themselves will say
            except BotoCoreError as exc:
                raise self._fail("cannot write", key, exc) from exc
            if versioning == "Enabled":
                raise StoreAccessError(
                    f"cannot write {key} in {self.url}: bucket {self.bucket!r} has versioning enabled; objects "
                    "are write-once only in a bucket without versioning (Ceph RGW ignores If-None-Match in a "
                    "versioned bucket) and retention could not free their space: suspend versioning or use "
                    "another bucket"
                )
            self._bucket_checked = True

    def part_size(self, size: int) -> int:
        """The part size for an object of `size` bytes: the configured one, grown to stay within MAX_PARTS."""
        return max(self.options.part_size, -(-size // MAX_PARTS))

    def _exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND or _status(exc) == 404:
                return False
            raise self._fail("cannot check", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("cannot check", key, exc) from exc
        return True

    def _put_multipart(self, key: str, data: bytes) -> None:
        full = self._full(key)
        if self._exists(key):
            raise ObjectExistsError(f"object {key} already exists in {self.url}")
        self._abort_leftovers()  # the store answers again: clean up after an earlier outage
        try:
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=full)["UploadId"]
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("cannot start a multipart upload of", key, exc) from exc
        try:
            etag = self._upload_parts(key, full, upload_id, data)
        except BaseException:
            self._abort(key, full, upload_id)
            raise
        try:
            stored = self.client.head_object(Bucket=self.bucket, Key=full)["ETag"]
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("cannot check", key, exc) from exc
        if stored != etag:
            # SeaweedFS lets a concurrent completion of the same key win after ours: it is not our object
            raise ObjectExistsError(f"object {key} in {self.url} was overwritten by a concurrent writer")

    def _upload_parts(self, key: str, full: str, upload_id: str, data: bytes) -> str:
        """Send every part and complete the upload; return the completed object's ETag."""
        size = self.part_size(len(data))
        parts: list[CompletedPartTypeDef] = []
        try:
            for number, offset in enumerate(range(0, len(data), size), start=1):
                response = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=full,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data[offset : offset + size],
                )
                parts.append({"PartNumber": number, "ETag": response["ETag"]})
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("cannot upload a part of", key, exc) from exc
        try:
            done = self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=full, UploadId=upload_id, MultipartUpload={"Parts": parts}, IfNoneMatch="*"
            )
        except ClientError as exc:
            if _code(exc) in _NO_UPLOAD and self._exists(key):
                # a retried completion whose first try had succeeded: the caller compares the content
                raise ObjectExistsError(f"object {key} already exists in {self.url}") from exc
            raise self._fail("cannot complete the multipart upload of", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("cannot complete the multipart upload of", key, exc) from exc
        return str(done["ETag"])

    def _abort(self, key: str, full: str, upload_id: str, *, remember: bool = True) -> bool:
        """Abort an upload; False (and, with `remember`, kept to be aborted later) when the store did not
        take the abort."""
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
        except (ClientError, BotoCoreError) as exc:
            if isinstance(exc, ClientError) and _code(exc) in _NO_UPLOAD:
                return True
            if remember:
                with self._unaborted_lock:
                    self._unaborted.append((key, full, upload_id))
                log.warning(
                    "could not abort the multipart upload of %s in %s (tried again when the store answers): %s",
                    key,
                    self.url,
                    " ".join(str(exc).split()),
                )
            return False
        return True

    def _abort_leftovers(self) -> None:
        """Abort the uploads an outage kept us from aborting; stop at the first that still fails."""
        if not self._unaborted:
            return
        with self._unaborted_lock:
            pending, self._unaborted = self._unaborted, []
        for index, (key, full, upload_id) in enumerate(pending):
            if not self._abort(key, full, upload_id, remember=False):
                with self._unaborted_lock:
                    self._unaborted.extend(pending[index:])
                return

    def get(self, key: str, max_bytes: int = DEFAULT_MAX_OBJECT_BYTES) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
            body = response["Body"]
            try:
                if response["ContentLength"] > max_bytes:
                    raise OversizedObjectError(
                        f"object {key} is {response['ContentLength']} bytes, above the limit of {max_bytes}"
                    )
                return body.read()
            finally:
                body.close()
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("cannot read", key, exc) from exc

    def check_bucket(self) -> None:
        """ConfigError when the store says the bucket does not exist (a typo: an empty answer, or every
        object missing, would pass for a real one). Any other answer cannot tell (a 403: a policy may grant
        reading a prefix and not HeadBucket; a store that does not answer): the operations report it."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _status(exc) == 404 or _code(exc) in ("NoSuchBucket", "404", "NotFound"):
                raise ConfigError(f"{self.url}: no such bucket {self.bucket!r}") from exc
        except BotoCoreError:
            pass

    def list(self, prefix: str = "") -> Iterator[str]:
        base = f"{self.location.prefix}/" if self.location.prefix else ""
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base + prefix):
                for item in page.get("Contents", []):
                    yield item["Key"][len(base) :]
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("cannot list", prefix, exc) from exc

    def delete(self, keys: Sequence[str]) -> None:
        """DeleteObjects in batches of up to 1,000 keys (S3's limit); absent keys are no error."""
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            try:
                response = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": self._full(key)} for key in batch], "Quiet": True},
                )
            except (ClientError, BotoCoreError) as exc:
                raise self._fail("cannot delete", batch[0], exc) from exc
            errors = [e for e in response.get("Errors", []) if e.get("Code") not in _NOT_FOUND]
            if errors:
                first = errors[0]
                raise StoreError(
                    f"cannot delete {len(errors)} object(s) in {self.url}, e.g. {first.get('Key')}: "
                    f"{first.get('Code')} {first.get('Message', '')}".rstrip()
                )

    def object_url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"

    def key_for_url(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme != "s3" or parts.netloc != self.bucket or parts.query or "@" in parts.netloc:
            raise ForbiddenLocationError(f"pointer URL {redact(url)!r} lies outside the store {self.url}")
        path = parts.path.lstrip("/")
        base = f"{self.location.prefix}/" if self.location.prefix else ""
        if not path.startswith(base):
            raise ForbiddenLocationError(f"pointer URL {redact(url)!r} lies outside the store {self.url}")
        return check_key(path[len(base) :])

    def close(self) -> None:
        self._abort_leftovers()
        if self._unaborted:
            log.warning(
                "%d multipart upload(s) in %s could not be aborted (the store does not answer), e.g. of %s: "
                "a bucket lifecycle rule AbortIncompleteMultipartUpload removes them",
                len(self._unaborted),
                self.url,
                self._unaborted[0][0],
            )
        self.client.close()
