"""lookalike: similar-product search for e-commerce (Ray-free core).

The Ray side sits at a checkout's top level (`deployments/`, `launch/`, `pipelines/`, and the
entry modules `serve_app.py` and `ingest_job.py` beside the Serve configs), where `serve run` and
`ray job submit --working-dir .` look for them. A wheel installs the same files as
`lookalike.deployments`, `lookalike.launch`, `lookalike.pipelines` and `lookalike.app`
(pyproject.toml's package-dir), so no generic top-level name lands in site-packages. In a
checkout, `_CheckoutRaySide` gives those names the checkout's folders: code imports one name
whether it runs from a wheel, an editable install or a bare checkout (a Ray job's working_dir).
Nothing here imports Ray.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path

__version__ = "0.1.0"

_CHECKOUT = Path(__file__).resolve().parent.parent
RAY_SIDE = {"lookalike.deployments": "deployments", "lookalike.launch": "launch",
            "lookalike.pipelines": "pipelines", "lookalike.app": "."}


class _CheckoutRaySide:
    """First on sys.meta_path, so the Ray side always comes from beside the `lookalike` that was
    imported (an editable install's finder would map it to the installed checkout, not to the
    one a test or a Ray job runs from). Outside a checkout (no serve_app.py beside the package,
    as in site-packages) it finds nothing and the wheel's real subpackages load as usual."""

    @staticmethod
    def find_spec(name: str, path: object = None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        folder = RAY_SIDE.get(name)
        if folder is None or not (_CHECKOUT / "serve_app.py").is_file():
            return None
        where = (_CHECKOUT / folder).resolve()
        init = where / "__init__.py"
        if init.is_file():
            return importlib.util.spec_from_file_location(
                name, init, submodule_search_locations=[str(where)])
        # The checkout's root holds the entry modules but is no package: a namespace package.
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(where)]
        return spec


if not any(f is _CheckoutRaySide or getattr(f, "__name__", "") == "_CheckoutRaySide"
           for f in sys.meta_path):
    sys.meta_path.insert(0, _CheckoutRaySide)
