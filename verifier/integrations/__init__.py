"""Web-framework integrations for :mod:`verifier.multi` (many issuers, mapped users).

Each module imports its own framework and is imported only by its user:

- :mod:`verifier.integrations.starlette` — ASGI middleware + per-route decorator;
- :mod:`verifier.integrations.fastapi` — a dependency that declares the bearer scheme in OpenAPI;
- :mod:`verifier.integrations.flask` and :mod:`verifier.integrations.django` — authlib's
  ``ResourceProtector`` with a ``BearerTokenValidator`` (:mod:`verifier.integrations.oauth`).

All of them answer the same way (:mod:`verifier.integrations.rules`, RFC 6750 §3): no Bearer token
→ 401 ``WWW-Authenticate: Bearer realm="..."``; a refused token or an audience the route does not
accept → 401 ``error="invalid_token"``; a valid token whose namespace, service account or groups
the route does not allow → 403 ``error="insufficient_scope"``; could not check → 503 with
``Retry-After``. The reason goes to the log, never to the caller.
"""
