"""What the STOMP and AMQP URLs share (eventindex.transport.config): credentials only from the environment,
never echoed, and options whose values are not repeated in messages. Each test runs on both protocols."""

from __future__ import annotations

import pytest

from eventindex.errors import ConfigError
from eventindex.transport.amqp import AmqpConfig
from eventindex.transport.config import BrokerConfig
from eventindex.transport.stomp import StompConfig

#: a protocol's config class and a minimal URL of it
Case = tuple[type[StompConfig] | type[AmqpConfig], str]
PROTOCOLS: dict[str, Case] = {
    "stomp": (StompConfig, "stomp://h:1/queue/q"),
    "amqp": (AmqpConfig, "amqp://h:1/q"),
}


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> Case:
    return PROTOCOLS[request.param]


def parse(protocol: Case, url: str, env: dict[str, str]) -> BrokerConfig:
    config_type, _ = protocol
    return config_type.from_url(url, env=env)


def test_credentials_come_from_the_environment_and_stay_out_of_repr(
    protocol: Case,
) -> None:
    cfg = parse(protocol, protocol[1], {"EI_BROKER_USERNAME": "alice", "EI_BROKER_PASSWORD": "s3cret"})
    assert (cfg.username, cfg.password) == ("alice", "s3cret")
    assert "s3cret" not in repr(cfg)
    assert "s3cret" not in cfg.address


def test_environment_is_read_when_not_given(protocol: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EI_BROKER_USERNAME", "bob")
    monkeypatch.delenv("EI_BROKER_PASSWORD", raising=False)
    config_type, url = protocol
    assert config_type.from_url(url).username == "bob"


def test_password_without_username_is_rejected(protocol: Case) -> None:
    with pytest.raises(ConfigError, match="EI_BROKER_USERNAME"):
        parse(protocol, protocol[1], {"EI_BROKER_PASSWORD": "s3cret"})


@pytest.mark.parametrize(
    "url",
    [
        "stomp://alice:s3cret@h:61613/queue/q",
        "stomp://alice@h:61613/queue/q",
        "stomp://h1:61613,alice:s3cret@h2:61613/queue/q",
        "stomp+ssl://alice:s3cret@h/queue/q",
        "amqp://alice:s3cret@h:5672/q",
        "amqp://alice@h:5672/q",
        "amqps://alice:s3cret@h/q",
    ],
)
def test_credentials_in_the_url_are_rejected_without_echoing_them(url: str) -> None:
    config_type = AmqpConfig if url.startswith("amqp") else StompConfig
    with pytest.raises(ConfigError) as info:
        config_type.from_url(url, env={})
    text = str(info.value)
    assert "s3cret" not in text and "alice" not in text
    assert "EI_BROKER_USERNAME" in text
    assert "\n" not in text


def test_unknown_parameter_value_is_not_echoed(protocol: Case) -> None:
    with pytest.raises(ConfigError) as info:
        parse(protocol, f"{protocol[1]}?password=s3cret", {})
    assert "'password'" in str(info.value)
    assert "s3cret" not in str(info.value)
