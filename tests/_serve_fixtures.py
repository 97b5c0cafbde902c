"""Load tests/issuer/conftest.py (the real ``sa-issuer serve`` fixtures) for other test
directories' conftests to re-export: tests/issuer is not a package, and "issuer" is the real
package's name, so it is loaded by path, once."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_NAME = "_sa_issuer_serve_fixtures"


def load() -> ModuleType:
    """The module of tests/issuer/conftest.py (``issuer_factory``, ``IssuerFactory`` ...)."""
    if _NAME in sys.modules:
        return sys.modules[_NAME]
    path = Path(__file__).resolve().parent / "issuer" / "conftest.py"
    spec = importlib.util.spec_from_file_location(_NAME, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[_NAME] = module
    spec.loader.exec_module(module)
    return module
