"""Which milvus-lite is installed, and whether it is the one lookalike's search patch knows.

Apart from lite_patch.py (which imports milvus-lite's internals): every start-up surface asks
this, in processes that never import milvus-lite, on versions whose internals may differ.
"""

from __future__ import annotations

import importlib.metadata

# pyproject.toml allows exactly this version; lite_patch.py reimplements its internals.
SUPPORTED_VERSION = "3.2.2"


def installed_version() -> str | None:
    try:
        return importlib.metadata.version("milvus-lite")
    except importlib.metadata.PackageNotFoundError:
        return None


def unsupported_version() -> str | None:
    """None when the installed milvus-lite is the one the patch is written for (pyproject.toml
    allows only that one); else the sentence every start-up surface shows: the embedded store
    then runs unpatched, which nobody has tested."""
    version = installed_version()
    if version == SUPPORTED_VERSION:
        return None
    return (f"milvus-lite {version or '(not installed)'} is not {SUPPORTED_VERSION}, the version "
            "lookalike is tested with: the embedded store runs without lookalike's search "
            f"patch (slower, untested). Install milvus-lite=={SUPPORTED_VERSION}.")
