"""A real S3-compatible store for the tests: moto's S3 server on 127.0.0.1, reached by s3fs through
AWS_ENDPOINT_URL (set in the environment, so Beam worker processes started by the job inherit it)."""

from __future__ import annotations

import logging
import os
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BUCKET = "sgv-test"
ENV = {
    "AWS_ACCESS_KEY_ID": "sgv-test-key-id",
    "AWS_SECRET_ACCESS_KEY": "sgv-test-secret-access-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class S3Server:
    """The running server: its endpoint, the test bucket and an s3fs filesystem without listing caches."""

    endpoint: str
    bucket: str
    fs: object

    def prefix(self, name: str) -> str:
        """A fresh ``s3://`` prefix in the test bucket."""
        return f"s3://{self.bucket}/{name}-{uuid.uuid4().hex[:8]}"

    def download(self, url: str, local: Path) -> Path:
        """Copy everything under ``url`` to the local folder ``local``."""
        self.fs.invalidate_cache()
        root = url.removeprefix("s3://").rstrip("/")
        for path in self.fs.find(root):
            target = local / path[len(root):].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.fs.cat_file(path))
        return local

    def upload(self, local: Path, url: str) -> str:
        """Copy the local folder ``local`` to ``url``; returns ``url``."""
        root = url.removeprefix("s3://").rstrip("/")
        for path in sorted(local.rglob("*")):
            if path.is_file():
                self.fs.pipe_file(f"{root}/{path.relative_to(local).as_posix()}", path.read_bytes())
        self.fs.invalidate_cache()
        return url


def _clear_s3fs_instances() -> None:
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # cached instances would keep an earlier server's endpoint


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    """moto's S3 server on a free port of 127.0.0.1 with bucket ``sgv-test``; stopped at the end of the module."""
    pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    config = tmp_path_factory.mktemp("aws")
    env = dict(ENV, AWS_ENDPOINT_URL=endpoint, AWS_CONFIG_FILE=str(config / "config"),
               AWS_SHARED_CREDENTIALS_FILE=str(config / "credentials"))
    saved = {k: os.environ.get(k) for k in [*env, "AWS_SESSION_TOKEN", "AWS_PROFILE"]}
    os.environ.update(env)
    for k in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        os.environ.pop(k, None)
    _clear_s3fs_instances()
    try:
        import s3fs

        # moto's state lives in this process: start from an empty store even if another module used one
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).close()
        fs = s3fs.S3FileSystem(use_listings_cache=False, skip_instance_cache=True)
        fs.mkdir(BUCKET)
        yield S3Server(endpoint, BUCKET, fs)
    finally:
        _clear_s3fs_instances()
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
