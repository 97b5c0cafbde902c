"""sa-oidc issuer: a Starlette service that mints and reviews Kubernetes-style service-account
tokens and publishes OIDC discovery + JWKS with safe key rotation. See docs/ARCHITECTURE.md."""

__version__ = "0.1.0"
