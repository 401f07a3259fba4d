"""``Batch``: the tick path's commands in one round trip, against the tests' private Redis."""

from __future__ import annotations

from decimal import Decimal

import pytest
import redis
from redis.exceptions import ResponseError

from workers.ticks.pipelines import Batch

pytestmark = pytest.mark.integration

INCRBY = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


def test_replies_come_back_in_order_with_errors_in_place(redis_client: redis.Redis) -> None:
    script = redis_client.register_script(INCRBY)
    redis_client.script_load(INCRBY)
    redis_client.set("text", "not a number")
    batch = Batch(redis_client)
    batch.script(script, ["n"], [5])
    batch.command("INCRBY", "text", 1)
    batch.command("GET", "n")
    batch.script(script, ["n"], [2])
    replies = batch.execute([script])
    assert replies[0] == 5
    assert isinstance(replies[1], ResponseError)
    assert replies[2:] == [b"5", 7]
    assert Batch(redis_client).execute([script]) == []


def test_scripts_survive_a_flushed_script_cache(redis_client: redis.Redis) -> None:
    """Scripts go as bare EVALSHA (no SCRIPT EXISTS round trip); after Redis lost its
    scripts the refused calls are sent again once (after the others), and nothing runs
    twice."""
    script = redis_client.register_script(INCRBY)
    redis_client.script_flush()
    batch = Batch(redis_client)
    batch.script(script, ["n"], [1])
    batch.command("INCRBY", "n", 10)
    batch.script(script, ["n"], [100])
    assert batch.execute([script]) == [11, 10, 111]
    assert batch.resent == [0, 2]
    assert int(redis_client.get("n") or 0) == 111


def test_a_connection_closed_by_the_server_is_made_again(
    redis_client: redis.Redis, redis_url: str
) -> None:
    """A pooled connection the server dropped (a restart, a client kill) is reconnected by
    the client's retry policy, as a pipeline's is."""
    first = Batch(redis_client)
    first.command("CLIENT", "ID")
    (victim,) = first.execute()
    other = redis.Redis.from_url(redis_url)
    assert other.execute_command("CLIENT", "KILL", "ID", victim) == 1
    other.close()
    again = Batch(redis_client)
    again.command("CLIENT", "ID")
    again.command("SET", "k", "v")
    again.command("GET", "k")
    new_id, *rest = again.execute()
    assert new_id != victim
    assert rest == [b"OK", b"v"]


def test_execute_checked_raises_the_first_error(redis_client: redis.Redis) -> None:
    redis_client.set("text", "not a number")
    batch = Batch(redis_client)
    batch.command("SET", "k", "v")
    batch.command("INCRBY", "text", 1)
    with pytest.raises(ResponseError):
        batch.execute_checked()
    assert redis_client.get("k") == b"v"


def test_values_are_packed_as_redis_py_packs_them(redis_client: redis.Redis) -> None:
    """Every kind of value the tick path sends arrives as redis-py would have sent it."""
    values: tuple[object, ...] = ("plain", "caf\u00e9", b"\x00\xffbytes", 7, -3, 2.5, 0.1 + 0.2)
    batch = Batch(redis_client)
    batch.command("RPUSH", "values", *values)
    batch.command("LRANGE", "values", 0, -1)
    _, stored = batch.execute_checked()
    redis_client.delete("values")
    redis_client.rpush("values", *values)  # type: ignore[arg-type]
    assert stored == redis_client.lrange("values", 0, -1)
    assert stored[1] == "caf\u00e9".encode()
    assert stored[6] == repr(0.1 + 0.2).encode()


def test_a_value_redis_cannot_take_is_refused_before_anything_is_sent(
    redis_client: redis.Redis,
) -> None:
    batch = Batch(redis_client)
    batch.command("SET", "sent", "v")
    batch.command("SET", "k", Decimal("1.25"))
    with pytest.raises(redis.DataError):
        batch.execute()
    assert redis_client.exists("sent") == 0
