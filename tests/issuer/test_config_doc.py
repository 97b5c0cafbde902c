"""docs/CONFIG.md and the code's settings definition describe the same settings.

The table in docs/CONFIG.md is checked against :func:`issuer.config.settings` both ways (a setting
in one and not the other fails), and each row's flag, env var and default against the code: the
flag must be the one :func:`issuer.config.setting_flag` names and one ``sa-issuer serve --help``
lists; the default, set explicitly through the env var, must resolve to the same configuration as
setting nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from issuer.cli import build_parser
from issuer.config import ENV_PREFIX, load_config, setting_flag, settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "CONFIG.md"
_NONE = "\u2014"  # the em dash of "no flag"


@dataclass(frozen=True)
class Row:
    key: str
    flag: str | None
    env: str
    default: str | None  # env-var text, or None for "unset by default"
    unit: str
    meaning: str


def _code(cell: str) -> str:
    m = re.fullmatch(r"`([^`]+)`", cell.strip())
    assert m is not None, f"expected one `code` span, got {cell!r}"
    return m.group(1)


def _rows() -> list[Row]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows: list[Row] = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        assert len(cells) == 6, f"a settings row needs 6 cells: {line!r}"
        key, flag, env, default, unit, meaning = cells
        if default.startswith("none"):
            value = None
        else:
            m = re.match(r"`([^`]*)`", default)
            assert m is not None, f"{key}: the default must start with `value` or none"
            value = m.group(1)
        rows.append(
            Row(
                key=_code(key),
                flag=None if flag == _NONE else _code(flag),
                env=_code(env),
                default=value,
                unit=unit,
                meaning=meaning,
            )
        )
    return rows


ROWS = _rows()


def _serve_flags(capsys: pytest.CaptureFixture[str]) -> set[str]:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", capsys.readouterr().out))


def test_every_setting_is_documented_and_every_documented_setting_exists() -> None:
    documented = [r.key for r in ROWS]
    assert len(documented) == len(set(documented)), "a setting is documented twice"
    missing = set(settings()) - set(documented)
    unknown = set(documented) - set(settings())
    assert not missing, f"settings missing from docs/CONFIG.md: {sorted(missing)}"
    assert not unknown, f"docs/CONFIG.md documents settings the code lacks: {sorted(unknown)}"


@pytest.mark.parametrize("row", ROWS, ids=[r.key for r in ROWS])
def test_flag_and_env_var_match_the_code(row: Row) -> None:
    assert row.env == ENV_PREFIX + row.key.upper()
    assert row.flag == setting_flag(row.key)
    assert row.unit and row.meaning


def test_documented_flags_are_exactly_serves_flags(capsys: pytest.CaptureFixture[str]) -> None:
    documented = {r.flag for r in ROWS if r.flag is not None}
    serve = _serve_flags(capsys) - {"--help", "--config"}
    assert documented == serve, (
        f"only in docs: {sorted(documented - serve)}; only in serve: {sorted(serve - documented)}"
    )


@pytest.mark.parametrize("row", ROWS, ids=[r.key for r in ROWS])
def test_documented_default_is_the_codes_default(row: Row) -> None:
    default = load_config({}, {})
    if row.default is None:
        assert getattr(default, row.key) is None, f"{row.key} has a default; CONFIG.md says none"
        return
    explicit = load_config({}, {row.env: row.default})
    assert explicit == default, (
        f"{row.key}: CONFIG.md's default {row.default!r} differs from the code's "
        f"({getattr(default, row.key, None)!r})"
    )
