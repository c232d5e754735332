"""The modules of a package, found rather than listed: a new route, page or command group
is one new module in its folder (``http/routes/``, ``pages/``, ``cli/``), registered by
the app that finds it, never by a hand-kept list beside it."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def submodules(package: str, attribute: str) -> list[ModuleType]:
    """The modules of ``package`` (not its subpackages; not ``_private`` ones, such as
    ``__main__``) that define ``attribute``, by name: a stable order for the OpenAPI
    document, the pages and the CLI's help."""
    found = importlib.import_module(package)
    names = sorted(
        info.name
        for info in pkgutil.iter_modules(found.__path__)
        if not info.ispkg and not info.name.startswith("_")
    )
    modules = [importlib.import_module(f"{package}.{name}") for name in names]
    return [module for module in modules if hasattr(module, attribute)]
