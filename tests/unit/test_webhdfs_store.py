"""webhdfs:// and swebhdfs:// URLs, and how hdfs and requests failures become typed errors (no server needed;
the store and filesystem against the WebHDFS test endpoint are in tests/integration/test_webhdfs_store.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import requests
from hdfs import HdfsError

from eventindex.errors import (
    ConfigError,
    ObjectExistsError,
    ObjectNotFoundError,
    StoreError,
    StoreUnavailableError,
)
from eventindex.store.webhdfs import (
    WebHdfs,
    WebHdfsError,
    WebHdfsExistsError,
    WebHdfsLocation,
    WebHdfsNotFoundError,
    WebHdfsUnavailableError,
)


def test_namenodes_ports_root_and_client_url() -> None:
    loc = WebHdfsLocation.from_url("webhdfs://nn1.example.org:9870,nn2.example.org/warehouse/ei/", environ={})
    assert loc.namenodes == ("nn1.example.org:9870", "nn2.example.org:9870")
    assert loc.root == "/warehouse/ei"
    assert loc.client_url == "http://nn1.example.org:9870;http://nn2.example.org:9870"
    assert loc.url == "webhdfs://nn1.example.org:9870,nn2.example.org:9870/warehouse/ei"
    assert loc.path("dataset=d/task=t/_SUCCESS.json") == "/warehouse/ei/dataset=d/task=t/_SUCCESS.json"
    assert (loc.ca, loc.kerberos) == (None, False)

    root = WebHdfsLocation.from_url("swebhdfs://[::1]:50470", environ={})
    assert (root.namenodes, root.root, root.client_url) == (("[::1]:50470",), "/", "https://[::1]:50470")
    assert root.path("k") == "/k"
    assert WebHdfsLocation.from_url("swebhdfs://nn", environ={}).namenodes == ("nn:9871",)


def test_ca_only_with_tls_and_only_an_existing_file(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert WebHdfsLocation.from_url(f"swebhdfs://nn:9871/p?ca={ca}", environ={}).ca == str(ca)
    with pytest.raises(ConfigError, match="needs swebhdfs"):
        WebHdfsLocation.from_url(f"webhdfs://nn:9870/p?ca={ca}", environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        WebHdfsLocation.from_url(f"swebhdfs://nn:9871/p?ca={tmp_path / 'missing.pem'}", environ={})


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("webhdfs://alice:secret@nn:9870/p", "must not carry credentials"),
        ("webhdfs://alice@nn:9870/p", "must not carry credentials"),
        ("hdfs://nn:8020/p", "expected webhdfs://"),
        ("webhdfs:///p", "namenode address is missing"),
        ("webhdfs://nn1:9870,/p", "namenode address is missing"),
        ("webhdfs://nn:port/p", "bad namenode address"),
        ("webhdfs://nn:9870/a/../b", "must be clean"),
        ("webhdfs://nn:9870/p?user.name=root", "unknown query parameter"),
        ("webhdfs://nn:9870/p?auth=token", "auth must be simple or kerberos"),
        ("webhdfs://nn:9870/p#x", "no fragment"),
    ],
)
def test_bad_urls_are_refused_in_one_line(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        WebHdfsLocation.from_url(url, environ={})
    assert "\n" not in str(caught.value)
    assert "secret" not in str(caught.value)


def test_kerberos_from_the_url_or_the_environment() -> None:
    assert WebHdfsLocation.from_url("webhdfs://nn/p?auth=kerberos", environ={}).kerberos
    assert WebHdfsLocation.from_url("webhdfs://nn/p", environ={"EI_WEBHDFS_AUTH": "kerberos"}).kerberos
    assert not WebHdfsLocation.from_url("webhdfs://nn/p?auth=simple", environ={"EI_WEBHDFS_AUTH": "kerberos"}).kerberos
    with pytest.raises(ConfigError, match="EI_WEBHDFS_AUTH"):
        WebHdfsLocation.from_url("webhdfs://nn/p", environ={"EI_WEBHDFS_AUTH": "yes"})


def test_kerberos_needs_the_extra() -> None:
    location = WebHdfsLocation.from_url("webhdfs://127.0.0.1:9/p?auth=kerberos", environ={})
    if importlib.util.find_spec("requests_kerberos") is not None:
        hdfs = WebHdfs(location, environ={})
        assert type(hdfs.client).__name__ == "KerberosClient"
        return
    with pytest.raises(ConfigError, match=r"hdfs\[kerberos\]") as caught:
        WebHdfs(location, environ={})
    assert "\n" not in str(caught.value)


def test_the_user_comes_from_hadoop_user_name() -> None:
    location = WebHdfsLocation.from_url("webhdfs://127.0.0.1:9/p", environ={})
    hdfs = WebHdfs(location, environ={"HADOOP_USER_NAME": "atlevind"})
    params = hdfs.session.params
    assert isinstance(params, dict) and params["user.name"] == "atlevind"
    with pytest.raises(ConfigError, match="attempts"):
        WebHdfs(location, attempts=0, environ={})


def _hdfs() -> WebHdfs:
    return WebHdfs(WebHdfsLocation.from_url("webhdfs://127.0.0.1:9,127.0.0.1:10/p", environ={}), environ={})


@pytest.mark.parametrize(
    ("exception", "kind", "project"),
    [
        ("FileNotFoundException", WebHdfsNotFoundError, ObjectNotFoundError),
        ("FileAlreadyExistsException", WebHdfsExistsError, ObjectExistsError),
        ("StandbyException", WebHdfsUnavailableError, StoreUnavailableError),
        ("RetriableException", WebHdfsUnavailableError, StoreUnavailableError),
        ("RuntimeException", WebHdfsUnavailableError, StoreUnavailableError),
        ("AccessControlException", WebHdfsError, StoreError),
        (None, WebHdfsError, StoreError),
    ],
)
def test_hdfs_errors_become_typed_errors_that_pyarrow_also_takes(
    exception: str | None, kind: type[Exception], project: type[Exception]
) -> None:
    error = _hdfs().error("cannot read", "/p/k", HdfsError("Permission denied:\n user=x", exception=exception))
    assert type(error) is kind
    assert isinstance(error, project) and isinstance(error, OSError)
    assert str(error).startswith("cannot read /p/k on webhdfs://127.0.0.1:9,127.0.0.1:10/p: ")
    assert "\n" not in str(error)


def test_connection_failures_are_unavailability_but_a_refused_certificate_is_not() -> None:
    hdfs = _hdfs()
    refused = requests.ConnectionError("HTTPConnectionPool(host='127.0.0.1', port=9): Connection refused")
    assert isinstance(hdfs.error("cannot list", "/p", refused), WebHdfsUnavailableError)
    assert isinstance(hdfs.error("cannot list", "/p", requests.ReadTimeout("read timed out")), WebHdfsUnavailableError)
    cut = hdfs.error("cannot read", "/p", requests.exceptions.ChunkedEncodingError("IncompleteRead(10 bytes read)"))
    assert isinstance(cut, WebHdfsUnavailableError)
    tls = hdfs.error("cannot list", "/p", requests.exceptions.SSLError("certificate verify failed"))
    assert type(tls) is WebHdfsError and "certificate verify failed" in str(tls)
    not_json = hdfs.error("cannot list", "/p", requests.exceptions.InvalidJSONError("Expecting value: line 1"))
    assert type(not_json) is WebHdfsError
    assert type(hdfs.error("cannot rename /a to", "/b", KeyError("boolean"))) is WebHdfsError


def test_retries_stop_at_the_attempts_and_say_so() -> None:
    """Every namenode refusing the connection: retried `attempts` times, then one typed, one-line error."""
    hdfs = WebHdfs(WebHdfsLocation.from_url("webhdfs://127.0.0.1:9,127.0.0.1:10/p", environ={}), attempts=2)
    with pytest.raises(WebHdfsUnavailableError, match=r"\(2 attempts\)$") as caught:
        hdfs.status("/p")
    assert "ConnectionError" in str(caught.value) and "\n" not in str(caught.value)
