"""SSE-S3's cost: 64 MiB PUT and GET with and without encryption, against one fresh coordinator.

    PYTHONPATH=src python bench/sse.py [--size-mib 64] [--rounds 5] [--workers 2]

The coordinator runs with a key file in a temp dir (outside its data dir); bucket `plain` stores as sent,
bucket `enc` has default encryption (AES256). Each round PUTs then GETs one object per bucket with boto3
(no client checksums, so the client's own hashing does not dominate); the median MB/s per operation is
printed (MB = 10^6 bytes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import start_coordinator, tunnelmesh_exe  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    size = args.size_mib * 1024 * 1024
    data = os.urandom(size)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        keys = tmp / "keys" / "sse.json"
        keys.parent.mkdir(mode=0o700)
        subprocess.run([tunnelmesh_exe(), "sse", "init", "--key-file", str(keys)], check=True, capture_output=True)
        c = start_coordinator(tmp, extra_yaml=f"  sse_key_file: {keys}\n", workers=args.workers)
        try:
            s3 = c.client(request_checksum_calculation="when_required", response_checksum_validation="when_required")
            s3.create_bucket(Bucket="plain")
            s3.create_bucket(Bucket="enc")
            conf = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
            s3.put_bucket_encryption(Bucket="enc", ServerSideEncryptionConfiguration=conf)
            rates: dict[str, list[float]] = {}
            for _ in range(args.rounds):
                for bucket in ("plain", "enc"):
                    t = time.perf_counter()
                    s3.put_object(Bucket=bucket, Key="big", Body=data)
                    rates.setdefault(f"PUT {bucket}", []).append(size / (time.perf_counter() - t) / 1e6)
                    t = time.perf_counter()
                    got = s3.get_object(Bucket=bucket, Key="big")["Body"].read()
                    rates.setdefault(f"GET {bucket}", []).append(size / (time.perf_counter() - t) / 1e6)
                    assert got == data
            for name, values in rates.items():
                print(
                    f"{name:10s} {args.size_mib} MiB: median {statistics.median(values):7.0f} MB/s "
                    f"(min {min(values):.0f}, max {max(values):.0f}, {len(values)} rounds)"
                )
        finally:
            c.stop()


if __name__ == "__main__":
    main()
