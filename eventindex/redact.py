"""Credentials out of text: the one place that decides what a credential in a URL or a message looks like.

Credentials come from the environment or a profile, never from a URL, and never appear in an error, a
log line, a metric or the status page. Two functions serve that rule:

- `has_userinfo(url)`: does a URL carry user-info (`user@`, `user:password@`)? Every URL parser refuses
  such a URL before anything else, and without echoing it. A password may hold `/`, `?` or `#`
  (`s3://AKIA:wJalr/XUtn@bucket/p`), which ends the authority for `urllib.parse.urlsplit`: its
  `netloc` is then `AKIA:wJalr` and has no `@`. So the raw string is read: a `user:` right after `://`
  (no `/`, `?`, `#` or `@` in the user) and an `@` later on is user-info, wherever that `@` is.
  The price: a `host:port/path` with an `@` further on (`webhdfs://nn:9870/a@b`) is refused too; an
  `@` in a path or an option is written `%40` there.
- `redact(text)`: masks, anywhere in a text (an error line, a log line, an exception), URL user-info of
  the same shapes, `Authorization` values (`Bearer ...`, `Basic ...`) and the values of parameters whose
  names look secret (`password=`, `secret_key=`, `aws_secret_access_key=`, `token=`, ...).
  `file:///home/a@b/store` stays readable: no `:` comes between `://` and the `@`.
"""

from __future__ import annotations

import re

MASK = "***"

#: What ends a URL's authority (its `host:port`, or its user-info for a parser that splits there).
_AUTHORITY_END = re.compile(r"[/?#]")

#: The words a secret parameter's name is, or ends with after `_`, `-` or `.` (`aws_secret_access_key`,
#: `x-amz-security-token`, `client_secret`).
SECRET_NAMES = (
    "password",
    "passwd",
    "passcode",
    "secret",
    "secret_key",
    "secret_access_key",
    "token",
    "session_token",
    "security_token",
    "signature",
    "credential",
)

_PATTERNS = (
    # URL user-info: `user:password@` (the password may hold `/`, `?`, `#`; what follows up to the last `@`
    # of the authority is masked too), or `user@` with nothing but the user between `://` and the `@`.
    (
        re.compile(r"(?<=://)(?:[^\s/?#@:\[\]]*:[^\s@]*@(?:[^\s/?#@]*@)*|[^\s/?#@]+@)"),
        MASK + "@",
    ),
    # Authorization header values.
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + MASK),
    # `name=value` with a secret-looking name: a whole name, not the end of a longer word (`monkey=`).
    (
        re.compile(r"(?i)(?<![A-Za-z0-9_.-])((?:[A-Za-z0-9_.-]*[_.-])?(?:" + "|".join(SECRET_NAMES) + r"))=[^&\s]+"),
        r"\1=" + MASK,
    ),
)


def has_userinfo(url: str) -> bool:
    """True when `url` carries user-info (`user@`, `user:password@`, the password holding `/`, `?` or `#`
    included): the URL must be refused, and not echoed."""
    _, sep, rest = url.partition("://")
    if not sep:
        return False
    head, at, _ = rest.partition("@")
    if not at:
        return False
    found = _AUTHORITY_END.search(head)
    if found is None:  # the `@` is in the authority: user-info as every parser sees it
        return True
    user, colon, _ = head[: found.start()].partition(":")
    return bool(colon) and "[" not in user and "]" not in user  # not an [IPv6]:port host


def userinfo_note(url: str) -> str:
    """What to add to the refusal of a URL `has_userinfo` found user-info in: nothing when the `@` is in the
    authority; when it comes after a `/`, `?` or `#`, the URL may be a `host:port` and an `@` of a path or an
    option, which is written `%40`."""
    head = url.partition("://")[2].partition("@")[0]
    return "" if _AUTHORITY_END.search(head) is None else " (an '@' of a path or an option is written %40)"


def redact(text: str) -> str:
    """`text` with URL user-info, Authorization values and secret-looking parameter values replaced by `***`."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
