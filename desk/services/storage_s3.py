"""The S3-compatible bucket store (AWS S3, MinIO, Ceph, moto in tests), through boto3.

Only this module imports boto3; desk.services.storage creates it for
``s3://bucket/prefix`` URLs. Objects are written with a managed transfer
(multipart above 8 MB), read with ranged GETs, never made public: downloads
always stream through the app's authorized routes.
"""
from __future__ import annotations

from typing import BinaryIO, Iterator

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError
from botocore.exceptions import ClientError

from desk.services.storage import CHUNK
from desk.services.storage import ObjectInfo
from desk.services.storage import ObjectMissing
from desk.services.storage import Store
from desk.services.storage import StorageError
from desk.services.storage import _reader
from desk.services.storage import check_key
from desk.services.storage import check_prefix

MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
TRANSFER = TransferConfig(multipart_threshold=8 * CHUNK, multipart_chunksize=8 * CHUNK,
                          max_concurrency=4)


class _Counting:
    """Counts the bytes a transfer reads from a stream."""

    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.count += len(data)
        return data


def _failed(err: Exception, key: str) -> StorageError:
    """A store error that names the key and the S3 error code, never credentials."""
    code = getattr(err, "response", {}).get("Error", {}).get("Code", "") if isinstance(err, ClientError) else ""
    if code in MISSING_CODES:
        return ObjectMissing(key)
    return StorageError(f"object store: {code or type(err).__name__} on {key!r}")


class S3Store(Store):
    kind = "s3"

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str = "", region: str = "",
                 access_key_id: str = "", secret_access_key: str = ""):
        self.bucket = bucket
        self.prefix = (prefix.strip("/") + "/") if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url or None, region_name=region or None,
            aws_access_key_id=access_key_id or None, aws_secret_access_key=secret_access_key or None,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10,
                          read_timeout=60, s3={"addressing_style": "path"}))

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def put(self, key: str, stream: BinaryIO) -> int:
        counting = _Counting(stream)
        try:
            self.client.upload_fileobj(counting, self.bucket, self._name(key), Config=TRANSFER)
        except (ClientError, BotoCoreError) as err:
            raise _failed(err, key) from None
        return counting.count

    def open(self, key: str, start: int = 0, end: int | None = None) -> BinaryIO:
        args = {"Bucket": self.bucket, "Key": self._name(key)}
        if end is not None and end <= start:
            return _reader(_Empty(), 0)
        if start or end is not None:
            args["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            body = self.client.get_object(**args)["Body"]
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == "InvalidRange":
                return _reader(_Empty(), 0)
            raise _failed(err, key) from None
        except BotoCoreError as err:
            raise _failed(err, key) from None
        return _reader(body, None)

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._name(key))
        except (ClientError, BotoCoreError) as err:
            failure = _failed(err, key)
            if not isinstance(failure, ObjectMissing):
                raise failure from None

    def _head(self, key: str) -> dict:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        except (ClientError, BotoCoreError) as err:
            raise _failed(err, key) from None

    def exists(self, key: str) -> bool:
        try:
            self._head(key)
        except ObjectMissing:
            return False
        return True

    def size(self, key: str) -> int:
        return self._head(key)["ContentLength"]

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix)
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    yield ObjectInfo(item["Key"][len(self.prefix):], item["Size"], item["LastModified"])
        except (ClientError, BotoCoreError) as err:
            raise _failed(err, prefix) from None

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"


class _Empty:
    def read(self, size: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        pass
