"""CEL for :mod:`verifier.authconfig`: expressions compiled once at load, evaluated per token.

Kubernetes compiles every expression of an ``AuthenticationConfiguration`` with cel-go in one of two
environments (kube: staging/src/k8s.io/apiserver/pkg/authentication/cel/compile.go):

- ``claims``: ``map(string, dyn)`` — claim validation rules, claim mappings, extra values;
- ``user``: the ``UserInfo`` (``username``, ``uid``, ``groups``, ``extra``) — user validation
  rules.

Here the same expressions are compiled with Google's CEL C++ runtime (PyPI ``cel-expr-python``),
type-checked, with the ``strings`` and ``optional`` extensions kube's base environment has
(``'a,b'.split(',')``, ``claims.?email_verified.orValue(true)``). ``user`` is declared
``map(string, dyn)`` rather than kube's object type, so a misspelt field such as ``user.name`` is an
evaluation error (refusing the token) instead of a load error.

Why this library: it is the CEL team's own runtime (the C++ one, as a binary wheel), it type-checks
like cel-go, it evaluates every expression of kube's documentation — including the optional
syntax ``claims.?email_verified.orValue(true)`` that the documentation recommends, which
``common-expression-language`` (a Rust interpreter) refuses to parse — and one evaluation costs
about 2 us (docs/BENCHMARKS.md §7). ``cel-python`` is a pure-Python interpreter.

Return types are checked at load exactly where kube checks them (``compile.go``): validation rules
must be typed ``bool`` (``dyn`` is not enough — which is why kube's docs write
``claims.?email_verified.orValue(true) == true``); mappings may be anything, their value is checked
per token.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any, Final

from cel_expr_python import cel
from cel_expr_python.ext import ext_optional, ext_strings

__all__ = [
    "CelCompileError",
    "CelEvalError",
    "Program",
    "claims_activation",
    "compile_claims_expression",
    "compile_user_expression",
    "references_claim",
    "user_activation",
]

_lock: Final = threading.Lock()


class CelCompileError(ValueError):
    """An expression kube would refuse at load; ``detail`` is kube's wording."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class CelEvalError(Exception):
    """Evaluating an expression on one token failed (kube: "resulted in error")."""


def _env() -> Any:
    return cel.NewEnv(
        variables={"claims": cel.Type.Map(cel.Type.STRING, cel.Type.DYN)},
        extensions=[ext_strings.ExtStrings(), ext_optional.ExtOptional()],
    )


def _user_env() -> Any:
    return cel.NewEnv(
        variables={"user": cel.Type.Map(cel.Type.STRING, cel.Type.DYN)},
        extensions=[ext_strings.ExtStrings(), ext_optional.ExtOptional()],
    )


_CLAIMS_ENV: Final = _env()
_USER_ENV: Final = _user_env()


class Program:
    """One compiled expression: ``eval(activation)`` returns a plain Python value."""

    __slots__ = ("_expr", "return_type", "source")

    def __init__(self, source: str, expr: Any) -> None:
        self.source = source
        self._expr = expr
        #: The checked type's name as the C++ checker spells it: ``BOOL``, ``STRING``, ``DYN``...
        self.return_type: str = expr.return_type().name()

    def eval(self, activation: Any) -> Any:
        """Evaluate on ``activation`` (:func:`claims_activation` / :func:`user_activation`)."""
        try:
            value = self._expr.eval(activation)
        except Exception as exc:  # the binding raises RuntimeError/TypeError on bad input
            raise CelEvalError(_clean(str(exc))) from None
        if value.type().name() == "ERROR":
            raise CelEvalError(_clean(str(value.value())))
        return value.plain_value()

    def __repr__(self) -> str:
        return f"Program({self.source!r}, {self.return_type})"


def _clean(message: str) -> str:
    """The C++ status text without its code wrapper, one line, bounded."""
    message = re.sub(r"^[A-Z_]+: ", "", message.strip())
    message = re.sub(r"\s*\[[A-Z_]+\]$", "", message)
    return " ".join(message.split())[:300]


def _compile(env: Any, source: str, want_bool: bool) -> Program:
    with _lock:  # compile once at load; never on the token path
        try:
            expr = env.compile(source)
        except Exception as exc:
            # kube compile.go: "compilation failed: " + issues.String()
            raise CelCompileError("compilation failed: " + _clean(str(exc))) from None
    program = Program(source, expr)
    if want_bool and program.return_type != "BOOL":
        # kube compile.go: fmt.Sprintf("must evaluate to %v", cel.BoolType)
        raise CelCompileError("must evaluate to bool")
    return program


def compile_claims_expression(source: str, *, want_bool: bool = False) -> Program:
    """Compile an expression over ``claims`` (a validation rule when ``want_bool``)."""
    return _compile(_CLAIMS_ENV, source, want_bool)


def compile_user_expression(source: str) -> Program:
    """Compile a user validation rule over ``user`` (must be typed ``bool``)."""
    return _compile(_USER_ENV, source, True)


def claims_activation(claims: Mapping[str, Any]) -> Any:
    """The bindings for expressions over ``claims`` (converted once, shared by all of them)."""
    if type(claims) is not dict:  # the binding converts plain dicts only (not a mappingproxy)
        claims = dict(claims)
    try:
        return _CLAIMS_ENV.Activation({"claims": claims})
    except Exception as exc:  # e.g. an integer beyond int64 in a claim
        raise CelEvalError(
            f"claims cannot be converted to CEL values: {_clean(str(exc))}"
        ) from None


def user_activation(user: Mapping[str, Any]) -> Any:
    """The bindings for user validation rules."""
    return _USER_ENV.Activation({"user": user})


# CEL string literals (CEL spec "Lexical structure"): triple-quoted, then single-line, any prefix.
_STRING_LITERAL: Final = re.compile(
    r"""(?s)[rRbB]{0,2}(?:'''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")"""
)


def references_claim(source: str, claim: str) -> bool:
    """True when ``source`` selects ``claims.<claim>`` or ``claims.?<claim>``.

    kube's validation.go ``hasSelectExp`` walks the AST for exactly these two forms (an index
    ``claims["email"]`` does not count there either); here the same forms are found in the source
    with string literals blanked out.
    """
    code = _STRING_LITERAL.sub('""', source)
    return re.search(rf"\bclaims\s*\.\s*\??\s*{re.escape(claim)}\b", code) is not None
