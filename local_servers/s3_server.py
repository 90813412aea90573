"""A real S3-protocol server for tests: moto's server in a process of its own on 127.0.0.1.

There is no MinIO server in the package registries; moto speaks the same S3 REST protocol over HTTP,
so boto3, presigned URLs and plain HTTP downloads go through a real socket. Faults are injected the
way they happen in production: the server stops, the bucket goes, the credentials stop being accepted.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import boto3
import httpx
from botocore.config import Config

from local_servers.processes import free_port, stop_process_group


class MotoS3Server:
    def __init__(self, log_path: Path, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> MotoS3Server:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"moto server exited with {self.process.returncode}: "
                                     + self.log_path.read_text(errors="replace")[-4000:])
            try:
                httpx.get(f"{self.url}/moto-api/", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()  # the process we started must not outlive the failed start
        raise AssertionError(f"moto server did not start on {self.url}: " + self.log_path.read_text(errors="replace")[-4000:])

    def stop(self) -> None:
        stop_process_group(self.process, grace=10)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self, access_key: str = "test-admin", secret_key: str = "test-admin"):
        return boto3.client(
            "s3", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
        )

    def require_auth(self, on: bool) -> None:
        """On: only keys moto's IAM knows are accepted (none are), so every request is refused as
        InvalidAccessKeyId, as real S3 does for a revoked key. Off: moto's default, any key is accepted."""
        body = b"0" if on else b"inf"
        httpx.post(f"{self.url}/moto-api/reset-auth", content=body, timeout=5).raise_for_status()

    def empty_and_delete(self, bucket: str) -> None:
        client = self.client()
        for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])
        client.delete_bucket(Bucket=bucket)
