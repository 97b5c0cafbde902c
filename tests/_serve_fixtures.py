"""Load a test helper file by path, once, under a name of its own: how the conftests of other
test directories share tests/issuer/conftest.py (the real ``sa-issuer serve`` fixtures) and other
helper files. tests/issuer is not a package, and "issuer" is the real package's name."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

TESTS = Path(__file__).resolve().parent


def load_module(name: str, path: Path) -> ModuleType:
    """The module of the file ``path``, as ``sys.modules[name]`` (loaded on first use)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load() -> ModuleType:
    """tests/issuer/conftest.py (``issuer_factory``, ``IssuerFactory``, ``IssuerProcess`` ...)."""
    return load_module("_sa_issuer_serve_fixtures", TESTS / "issuer" / "conftest.py")
