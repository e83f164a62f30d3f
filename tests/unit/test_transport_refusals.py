"""Which broker answers are refusals no retry fixes, and how an ERROR frame reads: the STOMP and AMQP adapters'
classification (tests/integration/test_broker_faults.py meets each answer on a real RabbitMQ)."""

from __future__ import annotations

import logging

import pika.exceptions
import pytest
from stomp.utils import Frame

from eventindex.transport import amqp
from eventindex.transport.stomp import _error_text, is_final_error


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        # RabbitMQ: the header is generic, the body names the reason
        (
            {"message": "Bad CONNECT"},
            b"Access refused for user 'alice'\n",
            "Bad CONNECT: Access refused for user 'alice'",
        ),
        # ActiveMQ: the body is a stack trace whose first line repeats the message
        (
            {"message": "User bob is not authorized to write to: queue://q"},
            b"java.lang.SecurityException: User bob is not authorized to write to: queue://q\n\tat org.apache...",
            "User bob is not authorized to write to: queue://q",
        ),
        ({}, b"only a body\nsecond line", "only a body"),
        ({}, b"", "ERROR frame"),
        ({"message": "plain"}, b"", "plain"),
    ],
)
def test_an_error_frame_reads_as_one_line_with_its_reason(headers: dict[str, str], body: bytes, expected: str) -> None:
    assert _error_text(Frame("ERROR", headers, body)) == expected


@pytest.mark.parametrize(
    ("text", "final"),
    [
        ("access_refused: ACCESS_REFUSED - access to exchange 'amq.default' in vhost '/' refused for user 'u'", True),
        ("User bob is not authorized to write to: queue://q", True),
        ("precondition_failed: PRECONDITION_FAILED - inequivalent arg 'durable'", True),
        ("Usage Manager Store is Full", False),
        ("connection closed by the broker: shutdown", False),
    ],
)
def test_a_stomp_error_is_final_only_when_it_names_a_refusal(text: str, final: bool) -> None:
    assert is_final_error(text) is final


def closed_by_broker(code: int, text: str) -> str:
    return repr(pika.exceptions.ConnectionClosedByBroker(code, text))


@pytest.mark.parametrize(
    ("exc", "final"),
    [
        (
            pika.exceptions.ProbableAuthenticationError(closed_by_broker(403, "ACCESS_REFUSED - Login was refused")),
            True,
        ),
        (pika.exceptions.ProbableAccessDeniedError(closed_by_broker(530, "NOT_ALLOWED - vhost v not found")), True),
        # the socket dropped during the login (a broker stopping, a network cut): pika still says "probable"
        (
            pika.exceptions.ProbableAuthenticationError(
                repr(pika.exceptions.StreamLostError("Transport indicated EOF"))
            ),
            False,
        ),
        (pika.exceptions.ProbableAccessDeniedError(closed_by_broker(320, "CONNECTION_FORCED - shutdown")), False),
        (pika.exceptions.ChannelClosedByBroker(403, "ACCESS_REFUSED - access to exchange 'amq.default'"), True),
        (pika.exceptions.ChannelClosedByBroker(406, "PRECONDITION_FAILED - inequivalent arg 'durable'"), True),
        (pika.exceptions.ConnectionClosedByBroker(320, "CONNECTION_FORCED - broker forced connection closure"), False),
        (pika.exceptions.StreamLostError("Transport indicated EOF"), False),
    ],
)
def test_an_amqp_failure_is_final_only_when_the_broker_refused(exc: BaseException, final: bool) -> None:
    assert amqp._is_final(exc) is final


@pytest.mark.parametrize(
    ("exc", "used_as_it_is"),
    [
        (
            pika.exceptions.ChannelClosedByBroker(406, "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for q"),
            True,
        ),
        (pika.exceptions.ChannelClosedByBroker(406, "PRECONDITION_FAILED - inequivalent arg 'durable' for q"), False),
        (pika.exceptions.ChannelClosedByBroker(403, "ACCESS_REFUSED - inequivalent arg 'x-queue-type'"), False),
    ],
)
def test_only_an_operators_queue_argument_is_accepted(exc: BaseException, used_as_it_is: bool) -> None:
    assert amqp._is_operator_argument(exc) is used_as_it_is


def test_pika_is_quiet_unless_the_program_chose_its_level(monkeypatch: pytest.MonkeyPatch) -> None:
    logger = logging.getLogger("pika")
    monkeypatch.setattr(logger, "level", logging.NOTSET)
    amqp.quiet_pika()
    assert logger.level == logging.CRITICAL
    monkeypatch.setattr(logger, "level", logging.DEBUG)
    amqp.quiet_pika()
    assert logger.level == logging.DEBUG
