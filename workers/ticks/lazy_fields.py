"""What a tick step reads: the state fields every step needs are read in the begin round
trip (an HMGET behind the begin script); the rest of the state hash and the candle history are
read on demand, for every step of the round at once."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import redis

from models.codec import decode_candle
from models.meta import CURSOR_FIELD, PROGRESS_FIELD
from trading.market import Candle
from workers.ticks.pipelines import Batch

BEGIN_FIELDS = (
    PROGRESS_FIELD,
    "session",
    "latest_partial_candle",
    "open_position",
    "orders",
    "contract_details",
    "account_pnl_info",
)
"""Fields read in the begin round trip besides ``_cursor`` and ``candle_key`` (which the begin
script reads and returns): what every step
reads (``orders``: the protective stop the step watches follows from them;
``contract_details`` and ``account_pnl_info``: a step marks an open position to market, and
without them every step of a session holding a position would read its whole hash, and with
it those of the rest of its round). The rest of the hash is read only by a step that needs it
(a candle closed)."""
_BEGUN = (CURSOR_FIELD, "candle_key", *BEGIN_FIELDS)


class RoundLoader:
    """Reads whole state hashes for the steps of one round: when one step needs a field the
    begin round trip did not read, the hashes of every step of the round not loaded yet are read
    in one pipeline (steps that close a candle come together: at a candle's end, every
    session's step closes one)."""

    __slots__ = ("_client", "_pending")

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._pending: list[LazyFields] = []

    def fields(self, key: str, values: Sequence[bytes | None]) -> LazyFields:
        """The fields of one step, loaded with the others of its round when needed."""
        fields = LazyFields(self, key, values)
        self._pending.append(fields)
        return fields

    def close(self) -> None:
        """Forget the round's fields (they refer to this loader: without this, each round would
        leave a reference cycle that only the garbage collector frees)."""
        self._pending = []

    def load(self, first: LazyFields) -> None:
        wanted = [first, *(f for f in self._pending if f is not first and not f.loaded)]
        self._pending = []
        batch = Batch(self._client)
        for fields in wanted:
            batch.command("HGETALL", fields.key)
        for fields, flat in zip(wanted, batch.execute_checked(), strict=True):
            fields.fill(flat)


_CANDLES: dict[bytes, Candle] = {}
_CANDLES_KEPT = 200_000
"""Decoded history candles by stored text, per process (emptied when full): a strategy reads
its last N candles on every close, and all but one of them were read on the close before."""


def _candle(raw: bytes) -> Candle:
    candle = _CANDLES.get(raw)
    if candle is None:
        if len(_CANDLES) >= _CANDLES_KEPT:
            _CANDLES.clear()
        candle = _CANDLES[raw] = decode_candle(raw)
    return candle


class RoundHistory:
    """Reads the candle histories of the steps of one round: the first step that reads its
    history reads, in one pipeline, as many last candles of each step of the round still to
    run (those that close a candle come together, like the hashes); a step that wants more
    candles than were read for it reads its own."""

    __slots__ = ("_client", "_keys", "_order", "_read")

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._keys: list[str] = []
        self._order: dict[str, int] = {}
        self._read: dict[str, tuple[int, list[bytes]]] = {}

    def reader(self, key: str) -> Callable[[int], list[Candle]]:
        """The history of the step whose candle list is ``key``; every step of the round is
        registered before the first one runs, and they run in that order."""
        self._order.setdefault(key, len(self._keys))
        self._keys.append(key)

        def read(count: int) -> list[Candle]:
            return [_candle(raw) for raw in self._raw(key, count)]

        return read

    def _raw(self, key: str, count: int) -> list[bytes]:
        if count <= 0:
            return []
        known = self._read.pop(key, None)
        if known is not None and known[0] >= count:
            return known[1][-count:]
        later = self._keys[self._order[key] + 1 :]
        keys = [key, *(k for k in later if k not in self._read)]
        batch = Batch(self._client)
        for k in keys:
            batch.command("LRANGE", k, -count, -1)
        replies: list[list[bytes]] = batch.execute_checked()
        for k, raws in zip(keys[1:], replies[1:], strict=True):
            self._read[k] = (count, raws)
        return replies[0]


class LazyFields(Mapping[str, str]):
    """The state fields read in the begin round trip; the first look-up of any other field reads
    the whole hash (under the same lease: nobody else writes meanwhile). Values are kept as
    read and decoded to text when first looked up: most steps look at a few of them."""

    __slots__ = ("_loader", "_raw", "_text", "key", "loaded")

    def __init__(self, loader: RoundLoader, key: str, values: Sequence[bytes | None]) -> None:
        self._loader = loader
        self.key = key
        self._raw: dict[str, bytes | str | None] = dict(zip(_BEGUN, values, strict=True))
        self._text: dict[str, str] = {}
        self.loaded = False

    def __getitem__(self, name: str) -> str:
        value = self._text.get(name)
        if value is not None:
            return value
        if name not in self._raw:
            self._load()
        raw = self._raw.get(name)
        if raw is None:
            raise KeyError(name)
        value = self._text[name] = _text(raw)
        return value

    def __contains__(self, name: object) -> bool:
        if name not in self._raw:
            self._load()
        return self._raw.get(name) is not None  # type: ignore[call-overload]

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter([name for name, raw in self._raw.items() if raw is not None])

    def __len__(self) -> int:
        self._load()
        return sum(1 for raw in self._raw.values() if raw is not None)

    def _load(self) -> None:
        if not self.loaded:
            self._loader.load(self)

    def fill(self, flat: Sequence[bytes]) -> None:
        """The whole hash as read (``RoundLoader``: HGETALL's name, value, ... reply)."""
        self._raw = {_text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}
        self._text = {}
        self.loaded = True


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
