"""Uploaded photos in an S3-compatible bucket (MinIO, AWS S3, Ceph RGW ...), through boto3.

Every router replica on every node reads and writes the same bucket, so a photo uploaded
through one replica is served by all of them. Object key: `<prefix><sha256>.<ext>`; the stored
reference stays `media:<sha256>.<ext>` (lookalike/media.py), so moving from a local directory
to a bucket changes no stored row: copy the files (`aws s3 sync data/media s3://BUCKET/PREFIX`).

Removal has no cross-node lock to lean on (LocalMedia uses flock). Instead `save` always
writes the object after the product row is stored, and removal spares objects written less
than `grace_s` ago by the server's clock: an upload racing a delete of the same photo either is
seen by the store check, rewrites the object after the delete, or finds it spared. What is
left is a window of one HEAD-to-DELETE round trip.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lookalike.images import sniff_content_type
from lookalike.media import MEDIA, NameResolver, Referenced, media_name

if TYPE_CHECKING:
    from lookalike.config import Settings


class S3Media:
    def __init__(self, client: Any, bucket: str, *, prefix: str = "",
                 legacy_dir: Path | None = None, grace_s: float = 60.0,
                 max_bytes: int = 64 * 1024 * 1024) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.names = NameResolver(legacy_dir)
        self.grace_s = grace_s
        self.max_bytes = max_bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Media:
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:  # an extra: pip install 'lookalike[s3]'
            raise RuntimeError("LOOKALIKE_MEDIA_BACKEND=s3 needs boto3: "
                               "pip install 'lookalike[s3]'") from exc
        client = boto3.client(
            "s3", endpoint_url=settings.media_s3_endpoint or None,
            region_name=settings.media_s3_region,
            aws_access_key_id=settings.media_s3_access_key.get_secret_value() or None,
            aws_secret_access_key=settings.media_s3_secret_key.get_secret_value() or None,
            # Path-style addressing: MinIO and most self-hosted servers have no per-bucket DNS.
            config=Config(s3={"addressing_style": "path"}, connect_timeout=5, read_timeout=30,
                          retries={"max_attempts": 3, "mode": "standard"}))
        media = cls(client, settings.media_s3_bucket, prefix=settings.media_s3_prefix,
                    legacy_dir=settings.media_dir, grace_s=settings.media_s3_grace_s,
                    max_bytes=settings.max_upload_bytes)
        media.ensure_bucket()
        return media

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (idempotent, like ensure_collection)."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise
            self.client.create_bucket(Bucket=self.bucket)

    def key(self, name: str) -> str:
        return self.prefix + name

    def ref_for(self, data: bytes) -> str:
        return MEDIA + media_name(data)

    def owns(self, ref: str) -> bool:
        return self.names.name_of(ref) is not None

    def save(self, data: bytes) -> str:
        # Always written, even if present: the write is what a racing removal spares (above).
        ref = self.ref_for(data)
        self.client.put_object(Bucket=self.bucket, Key=self.key(ref[len(MEDIA):]), Body=data,
                               ContentType=sniff_content_type(data) or "application/octet-stream")
        return ref

    def locate(self, ref: str) -> bytes | None:
        from botocore.exceptions import ClientError

        name = self.names.name_of(ref)
        if name is None:
            return None
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self.key(name))
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        with obj["Body"] as body:
            data: bytes = body.read(self.max_bytes + 1)
        return data if len(data) <= self.max_bytes else None

    def remove_unreferenced(self, refs: Sequence[str], referenced: Referenced) -> list[str]:
        from botocore.exceptions import ClientError

        removed: list[str] = []
        for name, given in self.names.unreferenced(refs, referenced).items():
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=self.key(name))
            except ClientError as exc:
                if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                    continue
                raise
            if _age_s(head) < self.grace_s:
                continue  # just written: an upload of the same photo is in flight
            self.client.delete_object(Bucket=self.bucket, Key=self.key(name))
            removed += given
        return removed


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _age_s(head: dict[str, Any]) -> float:
    """The object's age by the server's own clock (its Date header), immune to our clock's skew."""
    modified: dt.datetime = head["LastModified"]
    date = head.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    now = parsedate_to_datetime(date) if date else dt.datetime.now(dt.timezone.utc)
    return (now - modified).total_seconds()
