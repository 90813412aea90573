"""Object storage delivery: upload a rendered video to S3 / MinIO and hand back a URL.

Speaks only boto3 with an endpoint URL and path-style addressing, which is what MinIO needs and
what AWS S3 still accepts. Credentials come from boto3's own chain (AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY, a mounted profile, an instance role) and never pass through this module's
messages: errors are built from the error code, the endpoint and the bucket only.
"""

from __future__ import annotations

import datetime as dt
import json
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from comfy_runtime.errors import HunyuanVideoError
from comfy_runtime.redact import url_without_credentials
from comfy_runtime.settings import Settings

CONTENT_TYPES = {".mp4": "video/mp4", ".webm": "video/webm", ".gif": "image/gif", ".json": "application/json"}
# Parts of 16 MiB: a 73-frame 848x480 mp4 (a few MB) goes in one PUT; long or high-quality renders
# go in parallel parts, and a failed part is retried alone instead of the whole file.
MULTIPART_THRESHOLD = 16 * 1024 * 1024
MULTIPART_CHUNK = 16 * 1024 * 1024

_BAD_CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken",
                    "ExpiredToken", "AuthorizationHeaderMalformed", "403"}
_MISSING_BUCKET = {"NoSuchBucket", "404"}


class StorageError(HunyuanVideoError, RuntimeError):
    """The upload did not happen. The message names the cause and what to fix, never a credential; `cause` is the
    cause alone, for a caller whose fix is another (a farm worker cannot run without its bucket)."""

    def __init__(self, message: str, cause: str = ""):
        super().__init__(message)
        self.cause = cause or message


@dataclass(frozen=True)
class StorageConfig:
    bucket: str
    endpoint_url: str | None = None
    region: str = "us-east-1"
    prefix: str = ""
    presign_seconds: int = 7 * 24 * 3600
    public_base_url: str | None = None
    max_attempts: int = 5
    sidecar: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> StorageConfig | None:
        if not settings.s3_bucket:
            return None
        return cls(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url or None,
            region=settings.s3_region,
            prefix=settings.s3_prefix,
            presign_seconds=settings.s3_presign_seconds,
            public_base_url=settings.s3_public_base_url or None,
            max_attempts=settings.s3_max_attempts,
            sidecar=settings.s3_sidecar,
        )

    @property
    def endpoint(self) -> str:
        """The endpoint as it may be shown: without any user:password@ a URL could carry."""
        if not self.endpoint_url:
            return f"AWS S3 ({self.region})"
        return url_without_credentials(self.endpoint_url)

    @property
    def where(self) -> str:
        return f"bucket {self.bucket!r} at {self.endpoint}"


@dataclass(frozen=True)
class Uploaded:
    key: str
    url: str
    content_type: str
    size: int
    sidecar_key: str | None = None


class ObjectStore:
    def __init__(self, config: StorageConfig):
        self.config = config
        self.client = boto3.client(
            "s3",
            endpoint_url=config.endpoint_url,
            region_name=config.region,
            config=Config(
                s3={"addressing_style": "path"},
                signature_version="s3v4",
                # botocore's "standard" mode: exponential backoff with jitter on throttling, 5xx and
                # connection errors, up to max_attempts per request (each multipart part counts alone).
                retries={"mode": "standard", "max_attempts": config.max_attempts},
                connect_timeout=5,
                read_timeout=60,
            ),
        )
        self.transfer = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNK)

    def check(self) -> None:
        """Prove at setup that the bucket is reachable and ours, so a wrong setting fails the boot, not a user."""
        try:
            self.client.head_bucket(Bucket=self.config.bucket)
        except (BotoCoreError, ClientError) as error:
            raise StorageError(f"object storage check at setup failed: {describe(error, self.config)}") from None

    def key_for(self, run_id: str, filename: str, now: dt.datetime | None = None) -> str:
        day = (now or dt.datetime.now(dt.UTC)).strftime("%Y/%m/%d")
        return f"{self.config.prefix}{day}/{run_id}/{filename}"

    def upload(self, path: Path, run_id: str, metadata: Mapping[str, Any] | None = None,
               key: str | None = None) -> Uploaded:
        """`key`: the object's full key, for a caller whose re-run must land on the same object (the farm's
        jobs); by default <prefix><date>/<run id>/<file name>."""
        path = Path(path)
        key = key or self.key_for(run_id, path.name)
        content_type = content_type_of(path)
        try:
            self.client.upload_file(
                str(path), self.config.bucket, key,
                ExtraArgs={"ContentType": content_type}, Config=self.transfer,
            )
            sidecar_key = None
            if self.config.sidecar and metadata is not None:
                sidecar_key = f"{key}.json"
                self.client.put_object(
                    Bucket=self.config.bucket, Key=sidecar_key, ContentType=CONTENT_TYPES[".json"],
                    Body=json.dumps({**metadata, "video_key": key}, indent=2, default=str).encode(),
                )
            url = self.url_for(key)
        except (BotoCoreError, ClientError, S3UploadFailedError) as error:
            # "from None": the chained botocore error would repeat the request in the traceback.
            cause = f"upload of {path.name} to {self.config.where} failed: {describe(error, self.config)}"
            raise StorageError(
                f"{cause}. The video is kept at {path}: fix the storage setting and upload it from there "
                "(or unset HV_S3_BUCKET to get files back instead of URLs)", cause,
            ) from None
        return Uploaded(key=key, url=url, content_type=content_type, size=path.stat().st_size, sidecar_key=sidecar_key)

    def url_for(self, key: str) -> str:
        if self.config.public_base_url:
            return f"{self.config.public_base_url.rstrip('/')}/{key}"
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.config.bucket, "Key": key}, ExpiresIn=self.config.presign_seconds
        )


def content_type_of(path: Path) -> str:
    return CONTENT_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def describe(error: BaseException, config: StorageConfig) -> str:
    """The cause in words with the fix, from the error's class and code only (never its request)."""
    if isinstance(error, S3UploadFailedError) and error.__context__ is not None:
        error = error.__context__
    if isinstance(error, EndpointConnectionError) or type(error).__name__ in {"ConnectTimeoutError", "ConnectionClosedError"}:
        return (f"endpoint unreachable: could not connect to {config.endpoint} after {config.max_attempts} "
                "attempts (is the S3/MinIO server up and HV_S3_ENDPOINT_URL right?)")
    if isinstance(error, NoCredentialsError):
        return "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    code = _error_code(error)
    if code in _MISSING_BUCKET:
        return f"missing bucket: {config.where} does not exist (create it or fix HV_S3_BUCKET)"
    if code in _BAD_CREDENTIALS:
        return (f"bad credentials: {config.where} refused them ({code}); "
                "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket policy")
    if code:
        return f"{config.where} answered {code}"
    return f"{type(error).__name__} talking to {config.where}"


def _error_code(error: BaseException) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    # S3UploadFailedError keeps only the text: "... An error occurred (NoSuchBucket) when calling ..."
    text = str(error)
    if "An error occurred (" in text:
        return text.split("An error occurred (", 1)[1].split(")", 1)[0]
    return ""
