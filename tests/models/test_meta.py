"""The state hash's meta fields: named once (models.meta), never a struct field's name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from models.meta import META_FIELDS, in_lua
from models.state import STATE_FIELDS

ROOT = Path(__file__).resolve().parents[2]


def test_meta_fields_are_apart_from_the_struct() -> None:
    assert len(set(META_FIELDS)) == len(META_FIELDS)
    assert all(name.startswith("_") for name in META_FIELDS)
    assert not set(META_FIELDS) & set(STATE_FIELDS)


def test_lua_scripts_get_the_names_substituted() -> None:
    script = in_lua("redis.call('HSET', KEYS[1], '$FENCE_FIELD', ARGV[1], '$CURSOR_FIELD', 1)")
    assert script == "redis.call('HSET', KEYS[1], '_fence', ARGV[1], '_cursor', 1)"
    with pytest.raises(KeyError):
        in_lua("'$NOT_A_FIELD'")


def test_no_module_spells_a_meta_field_but_models_meta() -> None:
    spelled = []
    for package in ("trading", "models", "workers"):
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "models" / "meta.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    code = "\n".join(
                        line
                        for line in node.value.splitlines()
                        if not line.lstrip().startswith("--")
                    )
                    spelled += [
                        f"{path.relative_to(ROOT)}:{node.lineno} {name}"
                        for name in META_FIELDS
                        if code == name or f"'{name}'" in code
                    ]
    assert spelled == []
