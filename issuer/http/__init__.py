"""The issuer's own HTTP surface: discovery + JWKS (:mod:`.discovery`), health and metrics
(:mod:`.health`, :mod:`.metrics`) and the Kubernetes ``Status`` helpers every route uses
(:mod:`.status`). The authenticated Kubernetes API lives in :mod:`issuer.api`."""
