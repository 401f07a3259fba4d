from __future__ import annotations

import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from trading.exceptions import StrategyError, UnknownRegisteredName
from trading.strategies import Strategy, get_strategy, refresh_registry, strategy_names
from trading.strategies.breakout import Breakout
from trading.strategies.registry import ENTRY_POINT_GROUP
from trading.strategies.sma_cross import SmaCross

PLUGIN_SOURCE = """
class Demo:
    name = "demo"

    def warmup_periods(self, args):
        return 1

    def initial_state(self, args):
        return {}

    def validate_args(self, raw):
        return dict(raw)

    def on_candle(self, context, args):
        return [], {}


class NotAStrategy:
    pass


def _fails():
    raise RuntimeError("boom")
"""

PLUGIN_ENTRY_POINTS = """
[tradefleet.strategies]
demo = tf_test_plugin:Demo
sma_cross = tf_test_plugin:Demo
not_a_strategy = tf_test_plugin:NotAStrategy
missing = tf_test_plugin:Missing
twice = tf_test_plugin:Demo
"""


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    refresh_registry()
    yield
    refresh_registry()


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real installed distribution (a dist-info on sys.path) declaring strategies."""
    (tmp_path / "tf_test_plugin.py").write_text(PLUGIN_SOURCE)
    for dist, extra in (("tf_test_plugin", ""), ("tf_other_plugin", "twice = other:Thing\n")):
        info = tmp_path / f"{dist}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        points = PLUGIN_ENTRY_POINTS if not extra else f"[tradefleet.strategies]\n{extra}"
        (info / "entry_points.txt").write_text(points)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tf_test_plugin", raising=False)
    refresh_registry()


def test_builtins_by_name() -> None:
    assert isinstance(get_strategy("sma_cross"), SmaCross)
    assert isinstance(get_strategy("breakout"), Breakout)
    assert get_strategy("breakout").name == "breakout"
    assert isinstance(get_strategy("sma_cross"), Strategy)
    assert get_strategy("sma_cross") is get_strategy("sma_cross")
    assert {"sma_cross", "breakout"} <= set(strategy_names())


def test_installed_package_declares_the_builtins_as_entry_points() -> None:
    declared = {p.name: p.value for p in entry_points(group=ENTRY_POINT_GROUP)}
    assert declared["sma_cross"] == "trading.strategies.sma_cross:SmaCross"
    assert declared["breakout"] == "trading.strategies.breakout:Breakout"
    for name, value in declared.items():
        if value.startswith("trading.strategies."):
            assert type(get_strategy(name)).__name__ == value.rsplit(":", 1)[1]


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownRegisteredName, match=r"unknown strategy 'nope'") as caught:
        get_strategy("nope")
    assert "breakout, " in str(caught.value)
    assert "sma_cross" in str(caught.value)
    assert caught.value.kind == "strategy"
    assert caught.value.name == "nope"


def test_module_paths_are_never_imported_from_input() -> None:
    with pytest.raises(UnknownRegisteredName):
        get_strategy("trading.strategies.sma_cross:SmaCross")
    with pytest.raises(UnknownRegisteredName):
        get_strategy("os:system")


@pytest.mark.usefixtures("plugin")
def test_plugin_entry_points_are_discovered() -> None:
    names = strategy_names()
    assert {"demo", "sma_cross", "breakout", "twice"} <= set(names)
    demo = get_strategy("demo")
    assert type(demo).__name__ == "Demo"
    assert demo.warmup_periods({}) == 1


@pytest.mark.usefixtures("plugin")
def test_plugin_cannot_replace_a_builtin() -> None:
    assert isinstance(get_strategy("sma_cross"), SmaCross)


@pytest.mark.usefixtures("plugin")
def test_broken_plugins_are_strategy_errors() -> None:
    with pytest.raises(StrategyError, match=r"'not_a_strategy'.*is not a strategy"):
        get_strategy("not_a_strategy")
    with pytest.raises(StrategyError, match=r"'missing'.*failed to load: AttributeError"):
        get_strategy("missing")
    with pytest.raises(StrategyError, match="'twice' is registered more than once"):
        get_strategy("twice")


def test_no_plugin_strategies_without_their_distribution() -> None:
    assert "demo" not in strategy_names()
    with pytest.raises(UnknownRegisteredName):
        get_strategy("demo")
