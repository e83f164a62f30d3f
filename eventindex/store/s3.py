"""`s3://bucket/prefix?endpoint=URL`: objects in an S3-compatible store (SeaweedFS, Ceph RGW, AWS).

Credentials come from the standard AWS environment or profile, never from the URL. Writes use
`If-None-Match: *`, so the store itself refuses a second writer of a key (412). TLS endpoints
(`https://`) verify against the system bundle, or `AWS_CA_BUNDLE`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from eventindex.errors import (
    ConfigError,
    ForbiddenLocationError,
    ObjectExistsError,
    ObjectNotFoundError,
    OversizedObjectError,
    StoreError,
    StoreUnavailableError,
)
from eventindex.store.base import DEFAULT_MAX_OBJECT_BYTES, ObjectStore, check_key

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: botocore's own retry loop (standard mode: capped exponential backoff with jitter, retrying
#: 5xx, throttling, timeouts and connection resets) is the single retry mechanism for S3.
S3_MAX_ATTEMPTS = 6
S3_CONNECT_TIMEOUT = 10.0
S3_READ_TIMEOUT = 60.0
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_EXISTS = {"PreconditionFailed", "412", "ConditionalRequestConflict"}


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str
    endpoint: str | None
    region: str | None

    @classmethod
    def from_url(cls, url: str) -> S3Location:
        parts = urlsplit(url)
        if parts.scheme != "s3":
            raise ConfigError(f"{url!r}: expected s3://bucket/prefix")
        if "@" in parts.netloc:
            raise ConfigError("s3 URL must not carry credentials: use the AWS environment or profile")
        if not parts.netloc:
            raise ConfigError(f"{url!r}: no bucket")
        query = parse_qs(parts.query, keep_blank_values=True)
        unknown = set(query) - {"endpoint", "region"}
        if unknown:
            raise ConfigError(f"{url!r}: unknown query parameter(s) {', '.join(sorted(unknown))}")
        endpoint = query.get("endpoint", [None])[-1]
        if endpoint is not None:
            ep = urlsplit(endpoint)
            if ep.scheme not in ("http", "https") or not ep.hostname:
                raise ConfigError(f"{url!r}: endpoint must be an http:// or https:// URL")
            if ep.username or ep.password:
                raise ConfigError("s3 endpoint must not carry credentials: use the AWS environment or profile")
        prefix = parts.path.strip("/")
        if prefix:
            check_key(prefix)
        return cls(parts.netloc, prefix, endpoint, query.get("region", [None])[-1])


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Store(ObjectStore):
    def __init__(self, location: S3Location, client: Any = None) -> None:
        self.location = location
        self.url = f"s3://{location.bucket}/{location.prefix}".rstrip("/")
        self.bucket = location.bucket
        self.client: S3Client = client or boto3.session.Session().client(
            "s3",
            endpoint_url=location.endpoint,
            region_name=location.region or None,
            config=Config(
                retries={"mode": "standard", "max_attempts": S3_MAX_ATTEMPTS},
                connect_timeout=S3_CONNECT_TIMEOUT,
                read_timeout=S3_READ_TIMEOUT,
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    @classmethod
    def from_url(cls, url: str) -> S3Store:
        return cls(S3Location.from_url(url))

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
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status >= 500 or code in ("SlowDown", "RequestTimeout"):
                return StoreUnavailableError(f"{what} {key} in {self.url}: {code} (HTTP {status}) after retries")
            return StoreError(f"{what} {key} in {self.url}: {code} (HTTP {status})")
        return StoreUnavailableError(f"{what} {key} in {self.url}: {type(exc).__name__}: {exc}")

    def put(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data, IfNoneMatch="*")
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("cannot write", key, exc) from exc

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

    def list(self, prefix: str = "") -> Iterator[str]:
        base = f"{self.location.prefix}/" if self.location.prefix else ""
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base + prefix):
                for item in page.get("Contents", []):
                    yield item["Key"][len(base) :]
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("cannot list", prefix, exc) from exc

    def object_url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"

    def key_for_url(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme != "s3" or parts.netloc != self.bucket or parts.query or "@" in parts.netloc:
            raise ForbiddenLocationError(f"pointer URL {url!r} lies outside the store {self.url}")
        path = parts.path.lstrip("/")
        base = f"{self.location.prefix}/" if self.location.prefix else ""
        if not path.startswith(base):
            raise ForbiddenLocationError(f"pointer URL {url!r} lies outside the store {self.url}")
        return check_key(path[len(base) :])

    def close(self) -> None:
        self.client.close()
