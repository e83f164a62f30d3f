"""eventindex.redact: the one definition of what a credential in a URL or a message looks like.

`has_userinfo` decides which URLs every parser refuses (user-info, a password holding `/`, `?` or `#`
included); `redact` masks credentials in any text: the CLIs' error lines and the supersink's log lines
(supersink.logs.Redactor runs it after masking the known secret values).
"""

from __future__ import annotations

import logging

import pytest

from eventindex.redact import has_userinfo, redact, userinfo_note
from supersink.logs import Redactor

#: (text, what must not survive, what the redacted text is)
MASKED = [
    ("s3://AKIAHUNT:wJalr/XUtnFEMI@bucket/p", ["AKIAHUNT", "wJalr", "XUtnFEMI"], "s3://***@bucket/p"),
    ("stomp://alice:Super/Secret7@mq:61613/queue/q", ["alice", "Super", "Secret7"], "stomp://***@mq:61613/queue/q"),
    ("stomp://alice:Super?Secret8@mq:61613/queue/q", ["alice", "Super", "Secret8"], "stomp://***@mq:61613/queue/q"),
    ("amqp://alice:Super#Secret9@mq:5672/q", ["alice", "Super", "Secret9"], "amqp://***@mq:5672/q"),
    ("webhdfs://alice:Super/Secret13@nn:9870/x", ["alice", "Super", "Secret13"], "webhdfs://***@nn:9870/x"),
    ("stomp://alice:pw@mq:61613/queue/q", ["alice", ":pw"], "stomp://***@mq:61613/queue/q"),
    ("stomp://alice@mq:61613/queue/q", ["alice"], "stomp://***@mq:61613/queue/q"),
    ("s3://AK:pa@ss@bucket/p", ["AK", "pa", "ss@"], "s3://***@bucket/p"),
    ("s3://:onlypass@bucket/p", ["onlypass"], "s3://***@bucket/p"),
    (
        "'s3://bucket/p?endpoint=http://AKIA:SuperSecret2@127.0.0.1:1': refused",
        ["AKIA", "SuperSecret2"],
        "'s3://bucket/p?endpoint=http://***@127.0.0.1:1': refused",
    ),
    (
        "s3://b/w?endpoint=http://h&aws_secret_access_key=SuperSecret4",
        ["SuperSecret4"],
        "s3://b/w?endpoint=http://h&aws_secret_access_key=***",
    ),
    (
        "s3://b/w?endpoint=http://h&secret_key=SuperSecret15",
        ["SuperSecret15"],
        "s3://b/w?endpoint=http://h&secret_key=***",
    ),
    ("x?password=abc&queue=q", ["abc"], "x?password=***&queue=q"),
    ("x?PASSCODE=abc", ["abc"], "x?PASSCODE=***"),
    ("x?secret=abc", ["abc"], "x?secret=***"),
    ("x?token=abc", ["abc"], "x?token=***"),
    ("x?session_token=abc&aws_session_token=def", ["abc", "def"], "x?session_token=***&aws_session_token=***"),
    ("x?client_secret=abc", ["abc"], "x?client_secret=***"),
    ("x?X-Amz-Signature=ff&X-Amz-Credential=AKIA/x", ["ff", "AKIA"], "x?X-Amz-Signature=***&X-Amz-Credential=***"),
    ("failed: password=hunter2 then", ["hunter2"], "failed: password=*** then"),
    ("Authorization: Bearer abc.def", ["abc.def"], "Authorization: Bearer ***"),
]

#: Text without credentials: left as it is.
KEPT = [
    "file:///home/a@b/store",
    "file:///home/a:b@c/store",
    "sqlite:///tmp/a@b/q.db",
    "s3://bucket/p@x?endpoint=http://127.0.0.1:9000",
    "stomp://[::1]:61613/queue/q",
    "metrics on http://127.0.0.1:9100/metrics",
    "task t1 (jobs 2 of 3) tokens=3 monkey=banana keys=2",
    "STOMP broker: key= file /etc/pki/client.key does not exist",
    "mail admin@example.org about s3://bucket/p",
    # a bare `key=` names no secret: Hive-style directories, POOL tokens, the TLS key file option
    "input error: part/key=run1/ev.jsonl line 1: expected an object",
    "provenance token is not a sequence of [KEY=value] fields",
    "stomp+ssl://h:61614/queue/q?ca=/a.pem&cert=/c.pem&key=/k.pem",
]


@pytest.mark.parametrize(("text", "secrets", "expected"), MASKED)
def test_credentials_are_masked(text: str, secrets: list[str], expected: str) -> None:
    masked = redact(text)
    assert masked == expected
    for secret in secrets:
        assert secret not in masked


@pytest.mark.parametrize("text", KEPT)
def test_text_without_credentials_stays_readable(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize("text", [text for text, _, _ in MASKED] + KEPT)
def test_the_log_redactor_masks_exactly_the_same(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One implementation: supersink.logs.Redactor adds the known secret values, nothing else."""
    for name in (
        "EI_BROKER_PASSWORD",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "HADOOP_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    assert Redactor()(text) == redact(text)


@pytest.mark.parametrize(
    "url",
    [
        "s3://AKIAHUNT:wJalr/XUtnFEMI@bucket/p?endpoint=http://127.0.0.1:1",
        "s3://AKIA:secret@bucket/p",
        "s3://AKIA@bucket/p",
        "stomp://alice:Super/Secret7@127.0.0.1:61613/queue/q",
        "stomp://alice:Super?Secret8@127.0.0.1:61613/queue/q",
        "stomp://alice:Super#Secret8@127.0.0.1:61613/queue/q",
        "stomp://h1:61613,alice:s3cret@h2:61613/queue/q",
        "amqp://alice:Super/Secret9@127.0.0.1:5672/q",
        "webhdfs://alice:Super/Secret13@127.0.0.1:9870/x",
        "sqlite://alice:SuperSecret10@/tmp/q.db",
        "http://:pw@host",
    ],
)
def test_user_info_is_found_on_the_raw_string(url: str) -> None:
    assert has_userinfo(url)


@pytest.mark.parametrize(
    "url",
    [
        "s3://bucket/p?endpoint=http://127.0.0.1:1",
        "s3://bucket/p@x",
        "file:///home/a@b/store",
        "file:///home/a:b@c/store",
        "sqlite:///tmp/a@b/q.db",
        "stomp://[::1]:61613/queue/q?ca=/etc/a@b.pem",
        "webhdfs://nn:9870/a%40b",
        "stomp://h:61613/queue/q",
        "no scheme: a:b@c",
    ],
)
def test_urls_without_user_info(url: str) -> None:
    assert not has_userinfo(url)


def test_the_note_on_an_at_sign_after_the_host() -> None:
    assert userinfo_note("stomp://alice:pw@h/queue/q") == ""
    assert "%40" in userinfo_note("webhdfs://nn:9870/a@b")


def test_the_producers_warnings_are_redacted() -> None:
    """ei-producer's warnings (a failover, the spool) go through the same function as its error lines."""
    from producer.cli import _RedactingFormatter

    record = logging.LogRecord(
        "producer", logging.WARNING, __file__, 1, "broker %s failed (%s)", ("stomp://a:b/c@h/queue/q", "x"), None
    )
    line = _RedactingFormatter("ei-producer: %(message)s").format(record)
    assert line == "ei-producer: broker stomp://***@h/queue/q failed (x)"
