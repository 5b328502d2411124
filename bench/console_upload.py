"""A large upload through the console in a real browser against `aws s3 cp` of the same file to the same
coordinator (docs/operations.md 1.4: "the console is as fast as any S3 client").

    python bench/console_upload.py --size-mib 200 --runs 3

One coordinator at its production settings (bench/run.py's `start_tunnelmesh`: one worker per core, SigV4,
fsync), one bucket, one file of random bytes. Runs alternate (console, CLI, console, CLI, ...) so that a change
in the machine's load falls on both alike.

- console: Debian's chromium driven by Playwright signs in with the admin token, opens the bucket's page and
  picks the file; the time is the page's own: from the `tm-upload` event that starts the upload (state
  `uploading`) to the one that reports it `done` (after CompleteMultipartUpload), both stamped with
  `performance.now()` in the page. 16 MiB parts, 3 at a time.
- aws: `aws --endpoint-url http://127.0.0.1:PORT/s3 s3 cp FILE s3://BUCKET/cli/run-N/bench.bin` with the CLI's
  defaults (8 MiB parts, 10 at a time) and path-style addressing, timed around the process.

Each object's size is checked afterwards. Prints a Markdown table; no figure is asserted anywhere.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import start_tunnelmesh

os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
CHROMIUM_ARGS = [  # as tests/browser/conftest.py
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BUCKET = "bench-console"
RECORD = """() => {
  window.seen = [];
  document.addEventListener("tm-upload", (e) => window.seen.push({ ...e.detail, t: performance.now() }));
}"""
MiB = 1024 * 1024


def console_upload(browser: Any, base: str, token: str, source: Path, run: int) -> tuple[float, str]:
    """(seconds from the page's start event to its done event, the key)."""
    context = browser.new_context(base_url=base)
    try:
        page = context.new_page()
        page.goto("/console/login")
        page.fill("#token", token)
        page.click("#sign-in")
        page.wait_for_selector("#logout")
        prefix = f"console/run-{run}/"
        page.goto(f"/console/b/{BUCKET}/?prefix={prefix}")
        page.evaluate(RECORD)
        page.set_input_files("#upload-files", str(source))
        key = prefix + source.name
        page.wait_for_selector("#uploads li[data-state=done], #uploads li[data-state=failed]", timeout=3_600_000)
        seen = page.evaluate("window.seen")
        states = [e for e in seen if e["key"] == key]
        if states[-1]["state"] != "done":
            raise SystemExit(f"console upload failed: {page.locator('#uploads .status').inner_text()}")
        start = next(e["t"] for e in states if e["state"] == "uploading")
        return (states[-1]["t"] - start) / 1000, key
    finally:
        context.close()


def aws(base: str, token: str, aws_config: Path, *args: str) -> tuple[float, list[str]]:
    """(seconds, command) of one `aws` run against the coordinator, the process's whole life."""
    cmd = ["aws", "--endpoint-url", f"{base}/s3", *args]
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID="admin",
        AWS_SECRET_ACCESS_KEY=token,
        AWS_CONFIG_FILE=str(aws_config),
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0, cmd


def cli_upload(base: str, token: str, source: Path, run: int, aws_config: Path) -> tuple[float, str, list[str]]:
    key = f"cli/run-{run}/{source.name}"
    seconds, cmd = aws(base, token, aws_config, "s3", "cp", "--only-show-errors", str(source), f"s3://{BUCKET}/{key}")
    return seconds, key, cmd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=0, help="coordinator workers; 0: one per core")
    args = ap.parse_args()
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    from playwright.sync_api import sync_playwright

    size = args.size_mib * MiB
    with tempfile.TemporaryDirectory() as d, sync_playwright() as pw:
        tmp = Path(d)
        source = tmp / "bench.bin"
        with source.open("wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(MiB))
        aws_config = tmp / "aws-config"
        aws_config.write_text("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n")
        token = secrets.token_urlsafe(24)
        server = start_tunnelmesh(tmp, workers=args.workers, token=token)
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            s3 = boto3.client(
                "s3",
                endpoint_url=server.base + "/s3",
                aws_access_key_id="admin",
                aws_secret_access_key=token,
                region_name="us-east-1",
                config=Config(s3={"addressing_style": "path"}),
            )
            s3.create_bucket(Bucket=BUCKET)
            # what of the CLI's time is its own start (Python, botocore) rather than the upload: one tiny request
            startup = statistics.median(
                aws(server.base, token, aws_config, "s3api", "list-buckets")[0] for _ in range(3)
            )
            console_s: list[float] = []
            cli_s: list[float] = []
            cmd: list[str] = []
            for run in range(1, args.runs + 1):
                seconds, key = console_upload(browser, server.base, token, source, run)
                assert s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == size
                console_s.append(seconds)
                seconds, key, cmd = cli_upload(server.base, token, source, run, aws_config)
                assert s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == size
                cli_s.append(seconds)
                print(f"run {run}: console {console_s[-1]:.2f} s, aws s3 cp {cli_s[-1]:.2f} s", file=sys.stderr)
        finally:
            browser.close()
            server.stop()
    version = subprocess.run(["aws", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"{args.size_mib} MiB, {os.cpu_count()} cores, {version}; `{' '.join(cmd)}`\n")
    print(f"`aws s3api list-buckets` (the CLI's start-up and one request): {startup:.2f} s, median of 3\n")
    print("| run | console s | console MiB/s | aws s3 cp s | aws s3 cp MiB/s |")
    print("|---|---|---|---|---|")
    for i, (c, a) in enumerate(zip(console_s, cli_s, strict=True), 1):
        print(f"| {i} | {c:.2f} | {args.size_mib / c:.1f} | {a:.2f} | {args.size_mib / a:.1f} |")
    c, a = statistics.median(console_s), statistics.median(cli_s)
    print(f"| median | {c:.2f} | {args.size_mib / c:.1f} | {a:.2f} | {args.size_mib / a:.1f} |")


if __name__ == "__main__":
    main()
