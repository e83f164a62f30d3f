"""Credentials never come from a URL: every URL parser refuses user-info, a password holding `/`, `?` or `#`
included (which `urlsplit` does not put in the netloc), and no refusal shows any part of a secret.

Found by a security review: `s3://AKIAHUNT:wJalr/XUtnFEMI@bucket/p` was accepted (bucket 'AKIAHUNT:wJalr') and
the URL then went into errors and quarantine reasons; the STOMP, AMQP and WebHDFS parsers refused such URLs
but echoed them; a URL failing another check first (a scheme, an unknown parameter) was echoed verbatim.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from eventindex.errors import ConfigError, ForbiddenLocationError
from eventindex.store.s3 import S3Location, S3Store
from eventindex.store.webhdfs import WebHdfs, WebHdfsLocation, WebHdfsStore
from eventindex.transport import check_broker_url
from eventindex.transport.amqp import AmqpConfig
from eventindex.transport.embedded import EmbeddedQueue
from eventindex.transport.stomp import StompConfig
from tests.helpers import one_line

PARSERS: dict[str, Callable[[str], object]] = {
    "s3": S3Location.from_url,
    "stomp": lambda url: StompConfig.from_url(url, env={}),
    "amqp": lambda url: AmqpConfig.from_url(url, env={}),
    "sqlite": EmbeddedQueue.from_url,
    "webhdfs": lambda url: WebHdfsLocation.from_url(url, environ={}),
    "broker": check_broker_url,
}


def refusal(parser: str, url: str) -> str:
    with pytest.raises(ConfigError) as caught:
        PARSERS[parser](url)
    return one_line(caught)


#: (parser, URL, the pieces of its secret that must not be shown)
WITH_USER_INFO = [
    ("s3", "s3://AKIAHUNT:wJalr/XUtnFEMI@bucket/p?endpoint=http://127.0.0.1:1", ["AKIAHUNT", "wJalr", "XUtnFEMI"]),
    ("s3", "s3://AKIAHUNT:wJalr?XUtnFEMI@bucket/p", ["AKIAHUNT", "wJalr", "XUtnFEMI"]),
    ("s3", "s3://AKIAHUNT:wJalr#XUtnFEMI@bucket/p", ["AKIAHUNT", "wJalr", "XUtnFEMI"]),
    ("stomp", "stomp://alice:Super/Secret7@127.0.0.1:61613/queue/q", ["alice", "Super", "Secret7"]),
    ("stomp", "stomp://alice:Super?Secret8@127.0.0.1:61613/queue/q", ["alice", "Super", "Secret8"]),
    ("stomp", "stomp+ssl://alice:Super#Secret8@127.0.0.1:61614/queue/q", ["alice", "Super", "Secret8"]),
    ("amqp", "amqp://alice:Super/Secret9@127.0.0.1:5672/q", ["alice", "Super", "Secret9"]),
    ("amqp", "amqps://alice:Super?Secret9@127.0.0.1:5671/q", ["alice", "Super", "Secret9"]),
    ("broker", "stomp://alice:Super/Secret17@127.0.0.1:61613/queue/q", ["alice", "Super", "Secret17"]),
    ("broker", "sqlite://alice:SuperSecret10@/tmp/q.db", ["alice", "SuperSecret10"]),
    ("sqlite", "sqlite://alice:Super/Secret10@/tmp/q.db", ["alice", "Super", "Secret10"]),
    ("webhdfs", "webhdfs://alice:Super/Secret13@127.0.0.1:9870/x", ["alice", "Super", "Secret13"]),
    ("webhdfs", "swebhdfs://alice:Super?Secret13@127.0.0.1:9871/x", ["alice", "Super", "Secret13"]),
    ("webhdfs", "hdfs://alice:Super/Secret13@127.0.0.1:8020/x", ["alice", "Super", "Secret13"]),
]


@pytest.mark.parametrize(("parser", "url", "secrets"), WITH_USER_INFO)
def test_user_info_is_refused_whatever_the_password_holds(parser: str, url: str, secrets: list[str]) -> None:
    text = refusal(parser, url)
    assert "credentials" in text
    for secret in secrets:
        assert secret not in text


#: (parser, URL, the secret, what the refusal says): a URL that fails a check of its own, echoed redacted
OTHER_CHECKS = [
    ("s3", "s3://bucket/p?endpoint=ftp://AKIA:SuperSecret3@127.0.0.1:1", "SuperSecret3", "credentials"),
    ("s3", "s3://bucket/p?endpoint=ftp://AKIA:Super/Secret3@127.0.0.1:1", "Secret3", "credentials"),
    ("s3", "s3://bucket/p?endpoint=http://AK:Sup&er@127.0.0.1:1", "Sup", "credentials"),
    (
        "s3",
        "s3://bucket/p?endpoint=http://127.0.0.1:1&aws_secret_access_key=SuperSecret4",
        "SuperSecret4",
        "credentials",
    ),
    ("s3", "s3://bucket/w?endpoint=http://127.0.0.1:1&secret_key=SuperSecret15", "SuperSecret15", "credentials"),
    ("s3", "s3://bucket/w?aws_session_token=SuperSecret16", "SuperSecret16", "credentials"),
    ("sqlite", "sqlite:///tmp/q.db?password=SuperSecret18", "SuperSecret18", "unknown parameter"),
    ("webhdfs", "webhdfs://nn:9870/x?token=SuperSecret19", "SuperSecret19", "unknown query parameter"),
    ("webhdfs", "webhdfs://nn:9870/x?delegation_token=SuperSecret20", "SuperSecret20", "unknown query parameter"),
]


@pytest.mark.parametrize(("parser", "url", "secret", "words"), OTHER_CHECKS)
def test_a_url_failing_another_check_is_not_echoed_with_its_secret(
    parser: str, url: str, secret: str, words: str
) -> None:
    text = refusal(parser, url)
    assert words in text
    assert secret not in text


@pytest.mark.parametrize("bucket", ["AKIA:secretpart", "AKIA:secret]part", "AKIA secretpart"])
def test_an_s3_bucket_name_never_holds_a_colon_and_is_not_echoed(bucket: str) -> None:
    text = refusal("s3", f"s3://{bucket}/p")
    assert "bucket name" in text or "malformed" in text
    assert "secret" not in text


def test_urls_with_an_at_sign_but_no_user_info_are_still_accepted(tmp_path: Path) -> None:
    """`file:///home/a@b`-like paths: an `@` after the host, with no `user:` before it, is no credential."""
    assert S3Location.from_url("s3://bucket/p@x?endpoint=http://127.0.0.1:9000").prefix == "p@x"
    assert EmbeddedQueue.from_url(f"sqlite://{tmp_path}/a@b/q.db").path == tmp_path / "a@b" / "q.db"
    assert WebHdfsLocation.from_url("webhdfs://nn:9870/a%40b", environ={}).root == "/a@b"
    assert WebHdfsLocation.from_url("webhdfs://nn/a@b", environ={}).root == "/a@b"
    assert StompConfig.from_url("stomp://[::1]:61613/queue/q", env={}).hosts == (("::1", 61613),)


def test_an_at_sign_after_a_port_is_refused_with_how_to_write_it() -> None:
    """`host:port/...@...` cannot be told from `user:pass/word@host`: refused, the note says `%40`."""
    text = refusal("webhdfs", "webhdfs://nn:9870/a@b")
    assert "credentials" in text and "%40" in text
    assert "%40" not in refusal("webhdfs", "webhdfs://alice:pw@nn:9870/x")


def test_a_foreign_pointer_url_is_refused_without_its_credentials() -> None:
    """A pointer's URL (from a message) goes into the quarantine reason: the ledger, the status page."""
    s3 = S3Store(S3Location("bucket", "p", None, None), client=object())
    hdfs = WebHdfsStore(WebHdfs(WebHdfsLocation.from_url("webhdfs://nn:9870/p", environ={}), environ={}))
    for store, url in [
        (s3, "s3://AKIA:Super/Secret@bucket/p/k"),
        (s3, "s3://elsewhere/p/k?token=SuperSecret"),
        (hdfs, "webhdfs://alice:Super/Secret@nn:9870/p/k"),
        (hdfs, "webhdfs:///elsewhere/k?token=SuperSecret"),
    ]:
        with pytest.raises(ForbiddenLocationError) as caught:
            store.key_for_url(url)
        assert "Secret" not in str(caught.value) and "AKIA" not in str(caught.value)
