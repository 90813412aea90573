"""ObjectStore against moto's S3 server on 127.0.0.1: multipart, content types, sidecar, URLs, messages."""

import json
import os

import httpx
import pytest
from boto3.s3.transfer import TransferConfig

from comfy_runtime.delivery.storage import ObjectStore, StorageConfig, StorageError
from comfy_runtime.settings import Settings
from local_servers.s3_server import MotoS3Server

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with MotoS3Server(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        server.client().create_bucket(Bucket="videos")
        yield server


@pytest.fixture
def credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "storage-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "storage-test")
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)  # only these keys may reach boto3


def test_a_large_file_goes_up_in_parts_with_its_content_type_and_bytes(s3, credentials, tmp_path):
    store = ObjectStore(StorageConfig(bucket="videos", endpoint_url=s3.url, sidecar=False))
    store.transfer = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)  # S3's smallest part
    video = tmp_path / "big.webm"
    video.write_bytes(os.urandom(11 * MIB))
    uploaded = store.upload(video, run_id="run1")
    stored = s3.client().get_object(Bucket="videos", Key=uploaded.key)
    assert stored["ETag"].strip('"').endswith("-3")  # three parts: S3's multipart ETag
    assert stored["ContentType"] == "video/webm" == uploaded.content_type
    assert stored["Body"].read() == video.read_bytes()
    assert httpx.get(uploaded.url).content == video.read_bytes()


def test_the_sidecar_holds_the_metadata_and_the_public_base_url_is_unsigned(s3, credentials, tmp_path):
    # A public bucket, as HV_S3_PUBLIC_BASE_URL assumes: anyone may GET its objects.
    s3.client().create_bucket(Bucket="public")
    s3.client().put_bucket_policy(Bucket="public", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::public/*"}]}))
    config = StorageConfig(bucket="public", endpoint_url=s3.url, prefix="p/", public_base_url=f"{s3.url}/public/")
    store = ObjectStore(config)
    video = tmp_path / "clip.gif"
    video.write_bytes(b"GIF89a...")
    uploaded = store.upload(video, run_id="run2", metadata={"seed": 9})
    assert uploaded.key.startswith("p/") and uploaded.key.endswith("/run2/clip.gif")
    assert uploaded.url == f"{s3.url}/public/{uploaded.key}" and "Signature" not in uploaded.url
    response = httpx.get(uploaded.url)
    assert response.content == b"GIF89a..." and response.headers["content-type"] == "image/gif"
    sidecar = json.loads(s3.client().get_object(Bucket="public", Key=uploaded.sidecar_key)["Body"].read())
    assert sidecar == {"seed": 9, "video_key": uploaded.key}


def test_messages_never_show_credentials_in_the_endpoint(credentials):
    config = StorageConfig(bucket="videos", endpoint_url="http://admin:hunter2@127.0.0.1:1")
    with pytest.raises(StorageError) as error:
        ObjectStore(StorageConfig(**{**config.__dict__, "max_attempts": 1})).check()
    message = str(error.value)
    assert "endpoint unreachable: could not connect to http://127.0.0.1:1" in message
    assert "hunter2" not in message and "admin" not in message


def test_settings_without_a_bucket_mean_no_upload():
    assert StorageConfig.from_settings(Settings(s3_bucket="")) is None
    config = StorageConfig.from_settings(Settings(s3_bucket="b", s3_endpoint_url="http://minio:9000", s3_max_attempts=3))
    assert (config.bucket, config.endpoint_url, config.max_attempts) == ("b", "http://minio:9000", 3)
