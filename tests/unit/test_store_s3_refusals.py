"""S3 refusals an administrator meets that the local servers cannot produce: the session-token errors of
AWS (HTTP 400, not 403), and an s3 URL whose '#' would silently drop the endpoint."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from eventindex.errors import ConfigError, StoreAccessError, StoreError, StoreUnavailableError
from eventindex.store.s3 import S3Location, S3Store


def _classify(code: str, status: int) -> StoreError:
    store = S3Store(S3Location("b", "p", "http://127.0.0.1:9", None), client=object())
    response: Any = {"Error": {"Code": code, "Message": "..."}, "ResponseMetadata": {"HTTPStatusCode": status}}
    error = ClientError(response, "GetObject")
    return store._fail("cannot read", "k", error)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ExpiredToken", 400),
        ("InvalidToken", 400),
        ("AuthorizationHeaderMalformed", 400),
        ("TokenRefreshRequired", 400),
    ],
)
def test_an_expired_or_invalid_session_token_refuses_the_service(code: str, status: int) -> None:
    """`ei-supersink run` ends (exit 4, message put back) on a StoreAccessError; any other StoreError it
    retries forever with backoff, which an expired token never heals."""
    error = _classify(code, status)
    assert type(error) is StoreAccessError
    assert str(error) == f"cannot read k in s3://b/p: {code} (HTTP {status})"


def test_other_client_errors_keep_their_class() -> None:
    assert type(_classify("SlowDown", 503)) is StoreUnavailableError
    assert type(_classify("InvalidArgument", 400)) is StoreError


@pytest.mark.parametrize(
    "url",
    [
        "s3://bucket/pre#fix?endpoint=http://127.0.0.1:8333",
        "s3://bucket/prefix?endpoint=http://127.0.0.1:8333#x",
        "s3://bucket#/prefix",
    ],
)
def test_a_hash_in_an_s3_url_is_refused(url: str) -> None:
    """Before: `s3://bucket/pre#fix?endpoint=...` parsed as prefix 'pre' with no endpoint (AWS)."""
    with pytest.raises(ConfigError, match="no '#'"):
        S3Location.from_url(url)
