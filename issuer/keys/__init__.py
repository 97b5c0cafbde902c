"""Signing keys: crypto, the pure rotation decision, and the KeyManager (one public facade).

::

    from issuer.keys import KeyManager, KeyPolicy, Kek, load_kek
    km = KeyManager(store, load_kek(), KeyPolicy(max_token_lifetime=86400))
    km.start()                       # bootstrap / load, watch the store, rotate in the background
    token = km.signer().sign_jwt(claims)
    snap = km.published()            # .jwks, .jwks_json, .algorithms, .next_change, .keyset ...

The lifecycle and its invariants are in :mod:`issuer.keys.rotation` (docs/CONTRACTS.md "Keys").
"""

from issuer.crypto import Kek, KekError, Signer, create_kek_file, load_kek
from issuer.keys.manager import KeyManager, NoActiveKey, PublishedKeys
from issuer.keys.rotation import EXTENDED_TOKEN_LIFETIME, KeyPolicy, UnknownKey

__all__ = [
    "EXTENDED_TOKEN_LIFETIME",
    "Kek",
    "KekError",
    "KeyManager",
    "KeyPolicy",
    "NoActiveKey",
    "PublishedKeys",
    "Signer",
    "UnknownKey",
    "create_kek_file",
    "load_kek",
]
