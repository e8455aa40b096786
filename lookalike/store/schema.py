"""The collection schema and index parameters, in one place.

Data model: one row per product *image* (primary key "<product_id>#<write_version>#<n>"), each
row carrying the product's fields and text vector. Why: a shopper's photo may match any of a product's
photos (front, back, detail), and averaging them into one vector blurs all of them; one row
per image keeps each photo exact. Searches group by `product_id`, so results stay one per
product; the text vector is repeated per image row (a few KB per image, cheap against the
1280-d image vector) so text, image and hybrid searches all read one collection.

Why a write version in the key: Milvus has no multi-request transactions, and a product write
is two steps (insert the new rows, delete the old ones). With the version in the primary key a
write never overwrites another write's rows: a crash between the steps, or two replicas writing
one product at once, leaves whole versions side by side, never a mix of two writes' rows, and
readers keep only the newest version of each product (see MilvusStore).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pymilvus import DataType, Function, FunctionType, MilvusClient

if TYPE_CHECKING:
    from lookalike.config import Settings

PK_MAX = 160
TEXT_MAX = 16384  # bytes; the manifest caps title/description at 4,000 characters
SHORT_MAX = 512

PRODUCT_FIELDS = ["product_id", "image_index", "title", "description", "category", "color",
                  "size", "price", "images", "attributes", "write_version"]
# Fields a collection made by this code has; an older collection lacks some and is refused.
REQUIRED_FIELDS = ("write_version", "source")
NO_PRICE = -1.0  # Milvus-lite scalar fields are not nullable: -1 means "no price"
# Full-text search: Milvus' BM25 function turns `lexical_text` (title, description, facets,
# product id and free attributes such as brand or material) into the sparse `lexical` vector
# at insert and at query time. A collection made before these fields searches without them.
LEXICAL_FIELDS = ("lexical_text", "lexical")
# Variant groups (lookalike/variants.py): each row carries its product's group label (its own
# product id when it has no variants) and its photo's 64-bit perceptual hash as a +-1 vector,
# whose cosine is 1 - hamming / 32, so Milvus' own ANN search finds near-identical photos
# (milvus-lite has no BINARY_VECTOR). A collection made before these fields never collapses.
VARIANT_FIELDS = ("group_id", "phash_vector")
PHASH_BITS = 64


def row_pk(product_id: str, write_version: int, image_index: int) -> str:
    return f"{product_id}#{write_version}#{image_index}"


def build_schema(*, image_dim: int, text_dim: int, partition_key: bool = True) -> Any:
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=PK_MAX)
    schema.add_field("product_id", DataType.VARCHAR, max_length=SHORT_MAX)
    schema.add_field("image_index", DataType.INT64)
    schema.add_field("title", DataType.VARCHAR, max_length=TEXT_MAX)
    schema.add_field("description", DataType.VARCHAR, max_length=TEXT_MAX)
    # Partition key on category: category filters prune whole partitions on Milvus.
    schema.add_field("category", DataType.VARCHAR, max_length=SHORT_MAX, is_partition_key=partition_key)
    schema.add_field("color", DataType.VARCHAR, max_length=SHORT_MAX)
    schema.add_field("size", DataType.VARCHAR, max_length=SHORT_MAX)
    # DOUBLE, not FLOAT: a float32 price (40.83 -> 40.8300018) fails `price <= 40.83`.
    schema.add_field("price", DataType.DOUBLE)
    schema.add_field("images", DataType.JSON)
    schema.add_field("attributes", DataType.JSON)
    schema.add_field("content_hash", DataType.VARCHAR, max_length=64)
    schema.add_field("model_version", DataType.VARCHAR, max_length=SHORT_MAX)
    # Which write made the row (unique per write, ordered by time): readers keep the newest.
    schema.add_field("write_version", DataType.INT64)
    # Who owns the product: "catalog:<name>" for a manifest's products, "api" for PUTs, so a
    # catalogue's --delete-missing never removes products it did not write.
    schema.add_field("source", DataType.VARCHAR, max_length=SHORT_MAX)
    schema.add_field("image_vector", DataType.FLOAT_VECTOR, dim=image_dim)
    schema.add_field("text_vector", DataType.FLOAT_VECTOR, dim=text_dim)
    schema.add_field("lexical_text", DataType.VARCHAR, max_length=TEXT_MAX, enable_analyzer=True)
    schema.add_field("lexical", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("group_id", DataType.VARCHAR, max_length=SHORT_MAX)
    schema.add_field("phash_vector", DataType.FLOAT_VECTOR, dim=PHASH_BITS)
    schema.add_function(Function(name="lexical_bm25", function_type=FunctionType.BM25,
                                 input_field_names=["lexical_text"], output_field_names=["lexical"]))
    return schema


def lexical_text(product: Any) -> str:
    """The words BM25 indexes, cut to the field's byte limit."""
    attrs = [str(v) for v in (product.attributes or {}).values() if isinstance(v, (str, int, float))]
    text = " ".join(p for p in (product.title, product.description, product.category,
                                product.color, product.size, product.product_id, *attrs) if p)
    return text.encode()[:TEXT_MAX].decode(errors="ignore")


def index_build_params(settings: Settings) -> dict[str, Any]:
    if settings.index_type == "HNSW":
        return {"M": settings.hnsw_m, "efConstruction": settings.hnsw_ef_construction}
    if settings.index_type in ("IVF_FLAT", "IVF_SQ8"):
        return {"nlist": settings.ivf_nlist}
    return {}


def search_params(settings: Settings) -> dict[str, Any]:
    if settings.index_type == "HNSW":
        return {"ef": settings.search_ef}
    if settings.index_type in ("IVF_FLAT", "IVF_SQ8"):
        return {"nprobe": settings.ivf_nprobe}
    return {}


def build_index_params(client: MilvusClient, settings: Settings) -> Any:
    params = client.prepare_index_params()
    for field in ("image_vector", "text_vector"):
        # Nested {"params": {...}}: Milvus' proxy flattens it, and it is the only form that
        # reaches milvus-lite through pymilvus 3.0.2 (flat keys are silently dropped there).
        params.add_index(field_name=field, index_type=settings.index_type, metric_type="COSINE",
                         params={"params": index_build_params(settings)})
    params.add_index(field_name="phash_vector", index_type="HNSW", metric_type="COSINE",
                     params={"params": {"M": 16, "efConstruction": 200}})
    for field in ("product_id", "color", "size", "source", "group_id"):
        params.add_index(field_name=field, index_type="INVERTED")
    params.add_index(field_name="lexical", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    return params
