"""issuer.config: precedence (flags > env > file > defaults) and every validation error."""

from __future__ import annotations

from pathlib import Path

import pytest

from issuer.config import Config, ConfigError, config_to_env, load_config, parse_duration


def write(tmp_path: Path, text: str, name: str = "issuer.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults() -> None:
    c = load_config({}, {}, None)
    assert c.data_dir == Path(".sa-issuer")
    assert (c.listen_host, c.listen_port, c.listen) == ("127.0.0.1", 8080, "127.0.0.1:8080")
    assert c.issuer == "https://127.0.0.1:8080"
    assert c.store == "sqlite"
    assert c.workers == 1
    assert c.tls_cert is None and c.tls_key is None
    assert c.api_audiences == ("https://127.0.0.1:8080",)
    assert c.token_max_expiration == 86400
    assert c.extended_expiration is False
    assert c.jwks_max_age == 3600
    assert c.admin_token_file == Path(".sa-issuer/admin-token")
    assert c.audit_log == ".sa-issuer/audit.log"
    assert c.jwks_uri == "https://127.0.0.1:8080/openid/v1/jwks"
    assert c.discovery_url == "https://127.0.0.1:8080/.well-known/openid-configuration"
    assert c.store_description() == "sqlite:.sa-issuer/issuer.db"


@pytest.mark.parametrize(
    ("store", "shown"),
    [
        ("sqlite?synchronous=normal", "sqlite:.sa-issuer/issuer.db (synchronous=normal)"),
        ("sqlite:////srv/sa/issuer.db", "sqlite:/srv/sa/issuer.db"),
        ("sqlite:////srv/sa/i.db?synchronous=normal", "sqlite:/srv/sa/i.db (synchronous=normal)"),
    ],
)
def test_sqlite_store_descriptions(store: str, shown: str) -> None:
    assert load_config({"store": store}, {}).store_description() == shown


def test_default_issuer_follows_listen() -> None:
    assert load_config({"listen": "127.0.0.2:9000"}, {}).issuer == "https://127.0.0.2:9000"
    assert load_config({"listen": "[::1]:9000"}, {}).issuer == "https://[::1]:9000"
    # --tls off: plain http is asked for, so the default issuer is http.
    assert load_config({"tls": "off"}, {}).issuer == "http://127.0.0.1:8080"


def test_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        'listen = "127.0.0.1:1111"\nissuer = "https://file.example"\nworkers = 3\n'
        'store = "redis://file:6379/0"\nrotation_period = "2h"\n',
    )
    env = {
        "SA_ISSUER_LISTEN": "127.0.0.1:2222",
        "SA_ISSUER_ISSUER": "https://env.example",
        "SA_ISSUER_WORKERS": "2",
    }
    c = load_config({"issuer": "https://flag.example", "workers": None}, env, f)
    assert c.issuer == "https://flag.example"  # flag
    assert c.listen == "127.0.0.1:2222"  # env beats file
    assert c.workers == 2  # env (flag None = not given)
    assert c.store == "redis://file:6379/0"  # file
    assert c.rotation_period == 7200.0  # file
    assert c.config_file == f


def test_config_file_from_flag_and_env(tmp_path: Path) -> None:
    f = write(tmp_path, 'issuer = "https://a.example"\n')
    assert load_config({"config": str(f)}, {}).issuer == "https://a.example"
    assert load_config({}, {"SA_ISSUER_CONFIG": str(f)}).issuer == "https://a.example"


def test_env_file_only_settings_and_types(tmp_path: Path) -> None:
    env = {
        "SA_ISSUER_API_AUDIENCES": "a, b,,c",
        "SA_ISSUER_EXTENDED_EXPIRATION": "yes",
        "SA_ISSUER_JWKS_MAX_AGE": "10m",
        "SA_ISSUER_TOKEN_MAX_EXPIRATION": "48h",
        "SA_ISSUER_KEY_ALG": "ES256",
        "SA_ISSUER_DATA_DIR": str(tmp_path / "d"),
    }
    c = load_config({}, env)
    assert c.api_audiences == ("a", "b", "c")
    assert c.extended_expiration is True
    assert c.jwks_max_age == 600
    assert c.token_max_expiration == 172800
    assert c.key_alg == "ES256"
    assert c.admin_token_file == tmp_path / "d" / "admin-token"
    assert c.max_token_lifetime == 365 * 86400  # extended expiration: pod tokens live a year
    plain = load_config({}, {"SA_ISSUER_TOKEN_MAX_EXPIRATION": "48h"})
    assert plain.max_token_lifetime == 172800


def test_file_relative_paths_resolve_against_file_dir(tmp_path: Path) -> None:
    sub = tmp_path / "etc"
    sub.mkdir()
    (sub / "kek.b64").write_text("x")
    f = write(sub, 'data_dir = "data"\nkek = "kek.b64"\naudit_log = "audit.jsonl"\n')
    c = load_config({}, {}, f)
    assert c.data_dir == sub / "data"
    assert c.kek == str(sub / "kek.b64")
    assert c.audit_log == str(sub / "audit.jsonl")
    # base64 KEK text is not a path: left alone, and never shown in repr
    f2 = write(sub, 'kek = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI="\n', "b.toml")
    c2 = load_config({}, {}, f2)
    assert c2.kek == "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI="
    assert "c2VjcmV0" not in repr(c2)


def test_https_issuer_with_path() -> None:
    c = load_config({"issuer": "https://h.example/tenant-a"}, {})
    assert c.issuer_path == "/tenant-a"
    assert c.jwks_uri == "https://h.example/tenant-a/openid/v1/jwks"
    assert c.discovery_url == "https://h.example/tenant-a/.well-known/openid-configuration"


@pytest.mark.parametrize("issuer", ["http://localhost:8080", "http://127.9.9.9", "http://[::1]:1"])
def test_http_issuer_on_loopback_is_fine(issuer: str) -> None:
    assert load_config({"issuer": issuer}, {}).issuer == issuer


def test_insecure_http_issuer_warns(caplog: pytest.LogCaptureFixture) -> None:
    c = load_config(
        {
            "issuer": "http://issuer.example",
            "insecure_allow_http_issuer": True,
            "listen": "0.0.0.0:1",
        },
        {},
    )
    assert c.insecure_allow_http_issuer
    assert "INSECURE" in caplog.text


def test_store_description_redacts_password() -> None:
    c = load_config({"store": "redis://user:hunter2@r.example:6379/0"}, {})
    assert "hunter2" not in c.store_description()
    assert c.store_description() == "redis://user:***@r.example:6379/0"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "redis+sentinel://:hunter2@s1:26379,s2:26379/mymaster",
            "redis+sentinel://:***@s1:26379,s2:26379/mymaster",
        ),
        ("redis+cluster://u:hunter2@n1:7000,n2:7001", "redis+cluster://u:***@n1:7000,n2:7001"),
        (
            "rediss+cluster://n1:7000?password=hunter2&prefix=a",
            "rediss+cluster://n1:7000?password=***&prefix=a",
        ),
        ("redis://r:6379/0?cluster=true", "redis://r:6379/0?cluster=true"),
    ],
)
def test_multi_host_store_urls_are_accepted_and_redacted(url: str, shown: str) -> None:
    c = load_config({"store": url}, {})
    assert c.store_description() == shown
    assert "hunter2" not in repr(c)


def test_config_to_env_round_trips(tmp_path: Path) -> None:
    c = load_config(
        {"data_dir": str(tmp_path), "issuer": "https://x.example/p", "listen": "127.0.0.1:9"},
        {
            "SA_ISSUER_API_AUDIENCES": "a,b",
            "SA_ISSUER_ROTATION_PERIOD": "6s",
            "SA_ISSUER_JWKS_MAX_AGE": "2",
            "SA_ISSUER_PUBLISH_MARGIN": "1",
        },
    )
    again = load_config({}, config_to_env(c))
    assert again == c


def test_durations() -> None:
    assert parse_duration(5) == 5.0
    assert parse_duration("1.5") == 1.5
    assert parse_duration("250ms") == 0.25
    assert parse_duration("7d") == 7 * 86400


# --- every validation error: (flags, env, toml text or None) -> (where fragment, why fragment) ---

ERRORS = [
    ({"issuer": "ftp://x.example"}, {}, None, "--issuer", "must be an https URL"),
    ({"issuer": "https://x.example?a=1"}, {}, None, "--issuer", "must not have a query"),
    ({"issuer": "https://x.example?"}, {}, None, "--issuer", "must not have a query"),
    ({"issuer": "https://x.example#f"}, {}, None, "--issuer", "must not have a fragment"),
    ({"issuer": "https://u:p@x.example"}, {}, None, "--issuer", "user information"),
    ({"issuer": "https://"}, {}, None, "--issuer", "with a host"),
    ({"issuer": "https://x.example:99999"}, {}, None, "--issuer", "not a valid URL"),
    ({"issuer": "http://x.example"}, {}, None, "--issuer", "must be https"),
    (
        {"issuer": "http://127.0.0.1:8080", "listen": "0.0.0.0:8080"},
        {},
        None,
        "--issuer",
        "non-loopback",
    ),
    ({}, {"SA_ISSUER_ISSUER": "http://x.example"}, None, "SA_ISSUER_ISSUER", "must be https"),
    ({"listen": "8080"}, {}, None, "--listen", "expected HOST:PORT"),
    ({"listen": "host:"}, {}, None, "--listen", "expected HOST:PORT"),
    ({"listen": "host:0"}, {}, None, "--listen", "port must be 1..65535"),
    ({"listen": "host:70000"}, {}, None, "--listen", "port must be 1..65535"),
    ({"listen": "::1:80"}, {}, None, "--listen", "expected HOST:PORT"),
    ({"listen": "[zz::1]:80"}, {}, None, "--listen", "expected HOST:PORT"),
    ({"tls_cert": "c.pem"}, {}, None, "--tls-cert", "--tls-key is missing"),
    ({}, {"SA_ISSUER_TLS_KEY": "k.pem"}, None, "SA_ISSUER_TLS_KEY", "--tls-cert is missing"),
    ({"workers": 0}, {}, None, "--workers", "must be >= 1"),
    ({}, {"SA_ISSUER_WORKERS": "two"}, None, "SA_ISSUER_WORKERS", "expected an integer"),
    ({"store": "mysql://db/x"}, {}, None, "--store", "unsupported store URL"),
    ({"store": "redis"}, {}, None, "--store", "unsupported store URL"),
    ({"store": "sqlite://rel/path"}, {}, None, "--store", "sqlite:///ABSOLUTE/PATH"),
    ({"store": "sqlite:rel"}, {}, None, "--store", "sqlite:///ABSOLUTE/PATH"),
    ({"store": "sqlite?synchronous=off"}, {}, None, "--store", "synchronous=full|normal"),
    ({"store": "sqlite?cache=shared"}, {}, None, "--store", "the only one is synchronous"),
    ({}, {}, "bogus = 1\n", "key 'bogus'", "unknown key"),
    ({}, {}, "workers = '2'\n", "key 'workers'", "expected an integer, got str"),
    ({}, {}, "workers = true\n", "key 'workers'", "expected an integer, got bool"),
    ({}, {}, "issuer = 5\n", "key 'issuer'", "expected a string"),
    ({}, {}, "extended_expiration = 'yes'\n", "key 'extended_expiration'", "expected a boolean"),
    ({}, {}, "api_audiences = [1]\n", "key 'api_audiences'", "list of strings"),
    ({}, {}, "api_audiences = []\n", "key 'api_audiences'", "at least one audience"),
    ({}, {}, "[server]\nlisten = 'x'\n", "key 'server'", "unknown key"),
    ({}, {}, "listen = \n", "config file", "not valid TOML"),
    ({}, {}, "rotation_period = 'soon'\n", "key 'rotation_period'", "duration like"),
    ({}, {}, "rotation_period = 0\n", "rotation_period", "must be > 0"),
    ({}, {}, "rotation_period = -1\n", "rotation_period", ">= 0"),
    ({}, {}, "jwks_max_age = 1.5\n", "jwks_max_age", "whole number"),
    ({}, {}, "rotation_period = '1h'\n", "rotation_period", "longer than jwks_max_age"),
    ({}, {}, "token_max_expiration = 60\n", "token_max_expiration", "1h, as kube-apiserver"),
    ({}, {}, "key_alg = 'HS256'\n", "key_alg", "must be one of RS256"),
    ({}, {}, "rsa_bits = 1024\n", "rsa_bits", "2048, 3072 or 4096"),
    ({}, {}, "log_level = 'loud'\n", "log_level", "must be one of"),
    ({}, {}, "max_body_bytes = 10\n", "max_body_bytes", ">= 1024"),
    ({}, {"SA_ISSUER_EXTENDED_EXPIRATION": "maybe"}, None, "SA_ISSUER_EXTENDED", "boolean"),
    ({}, {"SA_ISSUER_KEK": ""}, None, "SA_ISSUER_KEK", "must not be empty"),
]


@pytest.mark.parametrize(("flags", "env", "toml", "where", "why"), ERRORS)
def test_validation_errors(
    tmp_path: Path,
    flags: dict[str, object],
    env: dict[str, str],
    toml: str | None,
    where: str,
    why: str,
) -> None:
    f = write(tmp_path, toml) if toml is not None else None
    with pytest.raises(ConfigError) as ei:
        load_config(flags, env, f)
    msg = str(ei.value)
    assert where in msg, msg
    assert why in msg, msg
    assert "\n" not in msg


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as ei:
        load_config({"config": str(tmp_path / "nope.toml")}, {})
    assert ei.value.where == "--config"
    with pytest.raises(ConfigError, match="SA_ISSUER_CONFIG: config file"):
        load_config({}, {"SA_ISSUER_CONFIG": str(tmp_path / "nope.toml")})


def test_config_is_frozen() -> None:
    c = Config()
    with pytest.raises(AttributeError):
        c.workers = 2  # type: ignore[misc]
