"""Pure ServiceAccount admission for Pods (kube: plugin/pkg/admission/serviceaccount/admission.go).

:func:`admit_pod` mutates a decoded Pod the way kube's ``Admit`` + ``Validate`` do:

- an empty ``spec.serviceAccountName`` becomes ``default``;
- the service account must exist, else 403 ``error looking up service account NS/NAME:
  serviceaccount "NAME" not found``;
- automount precedence: the pod's ``automountServiceAccountToken``, then the service account's,
  then true (``shouldAutomount``); when mounting, a projected volume ``kube-api-access-xxxxx``
  (``TokenVolumeSource``) and a read-only mount at ``/var/run/secrets/kubernetes.io/serviceaccount``
  in every container without one there;
- a pod without ``imagePullSecrets`` gets the service account's;
- ``kubernetes.io/enforce-mountable-secrets: "true"`` on the service account restricts secret
  volumes, ``env[].valueFrom.secretKeyRef``, ``envFrom[].secretRef`` and ``imagePullSecrets`` to
  what the account lists (``limitSecretReferences``), else 403 with kube's text.

The service account is passed in (``None`` = not found): no I/O here.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from typing import Any, Final

from issuer.api.errors import forbidden
from issuer.goquote import go_quote
from issuer.http.status import StatusError

__all__ = [
    "DEFAULT_API_TOKEN_MOUNT_PATH",
    "DEFAULT_SERVICE_ACCOUNT_NAME",
    "ENFORCE_MOUNTABLE_SECRETS_ANNOTATION",
    "SERVICE_ACCOUNT_VOLUME_PREFIX",
    "WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS",
    "admit_pod",
    "random_suffix",
    "should_automount",
    "token_volume_source",
]

DEFAULT_SERVICE_ACCOUNT_NAME: Final = "default"
ENFORCE_MOUNTABLE_SECRETS_ANNOTATION: Final = "kubernetes.io/enforce-mountable-secrets"
SERVICE_ACCOUNT_VOLUME_PREFIX: Final = "kube-api-access-"
DEFAULT_API_TOKEN_MOUNT_PATH: Final = "/var/run/secrets/kubernetes.io/serviceaccount"  # noqa: S105
#: kube: pkg/serviceaccount/claims.go WarnOnlyBoundTokenExpirationSeconds (1 h + 7 s).
WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS: Final = 60 * 60 + 7

#: kube: apimachinery/pkg/util/rand — no vowels, no confusable digits.
_RAND_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"


def random_suffix(n: int = 5) -> str:
    """``n`` characters from kube's name-generation alphabet (utilrand.String)."""
    return "".join(secrets.choice(_RAND_ALPHABET) for _ in range(n))


def token_volume_source() -> dict[str, Any]:
    """kube: admission.go TokenVolumeSource — token (3607 s), kube-root-ca.crt, namespace."""
    return {
        "defaultMode": 420,  # 0644, corev1.ProjectedVolumeSourceDefaultMode (kube #104464)
        "sources": [
            {
                "serviceAccountToken": {
                    "expirationSeconds": WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS,
                    "path": "token",
                }
            },
            {
                "configMap": {
                    "name": "kube-root-ca.crt",
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                }
            },
            {
                "downwardAPI": {
                    "items": [
                        {
                            "path": "namespace",
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                        }
                    ]
                }
            },
        ],
    }


def should_automount(sa: Mapping[str, Any], pod_spec: Mapping[str, Any]) -> bool:
    """kube: admission.go shouldAutomount — the pod's choice wins, then the account's, then true."""
    if pod_spec.get("automountServiceAccountToken") is not None:
        return bool(pod_spec["automountServiceAccountToken"])
    if sa.get("automountServiceAccountToken") is not None:
        return bool(sa["automountServiceAccountToken"])
    return True


def _parse_go_bool(value: str) -> bool:
    # strconv.ParseBool's true values; anything else (including errors) is false, as in kube.
    return value in ("1", "t", "T", "TRUE", "true", "True")


def _enforce_mountable_secrets(sa: Mapping[str, Any]) -> bool:
    annotations = (sa.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(ENFORCE_MOUNTABLE_SECRETS_ANNOTATION)
    return value is not None and _parse_go_bool(value)


def _mount_token(pod_spec: dict[str, Any], suffix: Callable[[], str]) -> None:
    # kube: admission.go mountServiceAccountToken.
    volumes: list[dict[str, Any]] = pod_spec.setdefault("volumes", [])
    volume_name = ""
    for v in volumes:
        if str(v.get("name", "")).startswith(SERVICE_ACCOUNT_VOLUME_PREFIX):
            volume_name = v["name"]
            break
    has_volume = bool(volume_name)
    if not volume_name:
        volume_name = SERVICE_ACCOUNT_VOLUME_PREFIX + suffix()
    mount = {"name": volume_name, "readOnly": True, "mountPath": DEFAULT_API_TOKEN_MOUNT_PATH}
    needs_volume = False
    for group in ("initContainers", "containers"):
        for c in pod_spec.get(group) or []:
            mounts: list[dict[str, Any]] = c.setdefault("volumeMounts", [])
            # Existing mounts at the default mount path prevent mounting of the API token.
            if any(m.get("mountPath") == DEFAULT_API_TOKEN_MOUNT_PATH for m in mounts):
                continue
            mounts.append(dict(mount))
            needs_volume = True
    if not has_volume and needs_volume:
        volumes.append({"name": volume_name, "projected": token_volume_source()})
    if not volumes:
        del pod_spec["volumes"]


def _limit_secret_references(sa: Mapping[str, Any], pod_spec: Mapping[str, Any]) -> str | None:
    # kube: admission.go limitSecretReferences; texts verbatim.
    sa_name = (sa.get("metadata") or {}).get("name", "")
    mountable = {s.get("name") for s in sa.get("secrets") or []}
    for v in pod_spec.get("volumes") or []:
        src = v.get("secret")
        if src is None:
            continue
        name = src.get("secretName", "")
        if name not in mountable:
            return (
                f'volume with secret.secretName="{name}" is not allowed because service account '
                f"{sa_name} does not reference that secret"
            )
    for group, label in (
        ("initContainers", "init container"),
        ("containers", "container"),
        ("ephemeralContainers", "ephemeral container"),
    ):
        for c in pod_spec.get(group) or []:
            for env in c.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref is not None and ref.get("name", "") not in mountable:
                    return (
                        f"{label} {c.get('name', '')} with envVar {env.get('name', '')} "
                        "referencing "
                        f'secret.secretName="{ref.get("name", "")}" is not allowed because service '
                        f"account {sa_name} does not reference that secret"
                    )
            for ef in c.get("envFrom") or []:
                ref = ef.get("secretRef")
                if ref is not None and ref.get("name", "") not in mountable:
                    return (
                        f'{label} {c.get("name", "")} with envFrom referencing secret.secretName="'
                        f'{ref.get("name", "")}" is not allowed because service account {sa_name} '
                        "does not reference that secret"
                    )
    pull = {s.get("name") for s in sa.get("imagePullSecrets") or []}
    for i, ref in enumerate(pod_spec.get("imagePullSecrets") or []):
        if ref.get("name", "") not in pull:
            return (
                f'imagePullSecrets[{i}].name="{ref.get("name", "")}" is not allowed because '
                f"service account {sa_name} does not reference that imagePullSecret"
            )
    return None


def admit_pod(
    pod: dict[str, Any],
    namespace: str,
    lookup_service_account: Callable[[str], Mapping[str, Any] | None],
    suffix: Callable[[], str] = random_suffix,
) -> dict[str, Any]:
    """Apply ServiceAccount admission to ``pod`` (mutated in place and returned).

    ``lookup_service_account(name)`` returns the account or None when it does not exist. Raises a
    403 Forbidden :class:`StatusError` with kube's text when admission refuses the pod.
    """
    spec: dict[str, Any] = pod["spec"]
    pod_name = pod["metadata"].get("name", "")
    # The deprecated spec.serviceAccount alias (kube: pod defaulting keeps the two in sync).
    if not spec.get("serviceAccountName") and spec.get("serviceAccount"):
        spec["serviceAccountName"] = spec["serviceAccount"]
    if not spec.get("serviceAccountName"):
        spec["serviceAccountName"] = DEFAULT_SERVICE_ACCOUNT_NAME
    sa_name = spec["serviceAccountName"]
    spec["serviceAccount"] = sa_name
    sa = lookup_service_account(sa_name)
    if sa is None:
        raise _forbidden(
            pod_name,
            f"error looking up service account {namespace}/{sa_name}: serviceaccount "
            f"{go_quote(sa_name)} not found",
        )
    if should_automount(sa, spec):
        _mount_token(spec, suffix)
    if not spec.get("imagePullSecrets") and sa.get("imagePullSecrets"):
        spec["imagePullSecrets"] = [{"name": s.get("name", "")} for s in sa["imagePullSecrets"]]
    if _enforce_mountable_secrets(sa):
        why = _limit_secret_references(sa, spec)
        if why is not None:
            raise _forbidden(pod_name, why)
    return pod


def _forbidden(pod_name: str, why: str) -> StatusError:
    # kube: admission.NewForbidden -> errors.NewForbidden(pods, name, err)
    return forbidden("pods", pod_name, why)
