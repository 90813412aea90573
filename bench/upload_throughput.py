"""Upload throughput of the product's ObjectStore against moto's S3 server on 127.0.0.1.

Baseline, measured in the same run: a plain file copy (shutil.copyfile) of the same bytes on the same
disk. Prints medians, MB/s and the ratio upload time / copy time for a video-sized file (one PUT) and
a file past the multipart threshold (parallel parts). moto is a Python server: the figures bound
what the client side costs, not what MinIO or S3 would do.
    .venv/bin/python bench/upload_throughput.py [runs]
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import boto3
from botocore.config import Config
from harness import machine_line

from comfy_runtime.delivery.storage import MULTIPART_THRESHOLD, ObjectStore, StorageConfig
from local_servers.s3_server import MotoS3Server

SIZES = {"video-sized (8 MiB, one PUT)": 8 * 1024 * 1024,
         "large (48 MiB, multipart)": 3 * MULTIPART_THRESHOLD}


def timed(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(runs: int = 5) -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    with tempfile.TemporaryDirectory() as tmp, MotoS3Server(Path(tmp) / "moto.log") as s3:
        s3_url = s3.url
        boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1",
                     config=Config(s3={"addressing_style": "path"})).create_bucket(Bucket="bench")
        store = ObjectStore(StorageConfig(bucket="bench", endpoint_url=s3_url, sidecar=False))
        print(machine_line(runs=runs))
        for label, size in SIZES.items():
            source = Path(tmp) / "video.mp4"
            source.write_bytes(os.urandom(size))
            copy_s = timed(lambda source=source: shutil.copyfile(source, Path(tmp) / "copy.mp4"), runs)
            upload_s = timed(lambda source=source: store.upload(source, run_id="bench"), runs)
            mib = size / 2**20
            print(f"{label}: copy {copy_s * 1000:7.1f} ms ({mib / copy_s:7.0f} MiB/s), "
                  f"upload {upload_s * 1000:7.1f} ms ({mib / upload_s:5.0f} MiB/s), "
                  f"ratio upload / copy {upload_s / copy_s:6.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
