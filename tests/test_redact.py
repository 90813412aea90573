"""Endpoint settings may carry user:password@; nothing shown to a user or a log may."""

from comfy_runtime.backends.remote import RemoteRuntime
from comfy_runtime.delivery.storage import StorageConfig
from comfy_runtime.redact import url_without_credentials


def test_credentials_are_cut_from_a_url_and_the_rest_is_kept():
    assert url_without_credentials("http://user:s3cret@comfy.internal:8188/base") == "http://comfy.internal:8188/base"
    assert url_without_credentials("https://s3cret@minio:9000") == "https://minio:9000"
    assert url_without_credentials("http://127.0.0.1:8188") == "http://127.0.0.1:8188"


def test_both_backends_edges_show_the_endpoint_without_its_credentials():
    runtime = RemoteRuntime("http://user:s3cret@127.0.0.1:9/")
    try:
        assert runtime.shown_url == "http://127.0.0.1:9" and "s3cret" not in runtime.shown_url
    finally:
        runtime.close()
    config = StorageConfig(bucket="videos", endpoint_url="http://key:s3cret@127.0.0.1:9000")
    assert config.endpoint == "http://127.0.0.1:9000"
