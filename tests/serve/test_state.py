"""The shared state of ``portcullis serve``: the same behaviour in memory and in a real Redis."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis
from tests.serve import redis_fixture

from portcullis._exceptions import ConfigError, GatewayError
from portcullis.serve.state import MemoryState, RedisState, gcra, mask_url, open_state

pytestmark = pytest.mark.anyio

# The Redis fixtures, for this module (a conftest may import them too: they share one server).
redis_url = redis_fixture.redis_url
redis_clean = redis_fixture.redis_clean

# A bound on every wait, never asserted on.
BOUND = 10.0

State = MemoryState | RedisState
Factory = Callable[[], Awaitable[State]]


@pytest.fixture(params=["memory", "redis"])
async def replicas(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    """Makes the state of one more replica: Redis replicas share a prefix, memory is one object."""
    made: list[State] = []
    if request.param == "memory":
        single = MemoryState()
        made.append(single)

        async def factory() -> State:
            return single

    else:
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_clean")

        async def factory() -> State:
            state = RedisState(url, prefix=prefix)
            made.append(state)
            return state

    yield factory
    for state in made:
        await state.close()


@pytest.fixture
async def state(replicas: Factory) -> State:
    return await replicas()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_first_use_then_replay(state: State) -> None:
    """A nonce is accepted once; its replay and only its replay is refused."""
    assert await state.first_use("n-1", 30)
    assert not await state.first_use("n-1", 30)
    assert await state.first_use("n-2", 30)


async def test_first_use_shared_by_replicas(replicas: Factory) -> None:
    """A nonce used on one replica is a replay on another."""
    a, b = await replicas(), await replicas()
    assert await a.first_use("shared-nonce", 30)
    assert not await b.first_use("shared-nonce", 30)


async def test_rate_limit_blocks_then_recovers(replicas: Factory) -> None:
    """Past the limit calls wait (on every replica); after the advised wait they pass again."""
    a, b = await replicas(), await replicas()
    window = 0.6
    assert await a.hit("alice", 3, window) is None
    assert await b.hit("alice", 3, window) is None
    assert await a.hit("alice", 3, window) is None
    wait = await b.hit("alice", 3, window)
    assert wait is not None
    assert 0 < wait <= window
    assert await a.hit("bob", 3, window) is None  # keys are separate
    await asyncio.sleep(wait + 0.05)
    assert await a.hit("alice", 3, window) is None


def test_gcra_pure_steps() -> None:
    """GCRA lets ``limit`` calls through at once, then one per ``window/limit``."""
    tat, wait = gcra(None, 100.0, 2, 1.0)
    assert wait is None
    tat, wait = gcra(tat, 100.0, 2, 1.0)
    assert wait is None
    same, wait = gcra(tat, 100.0, 2, 1.0)
    assert same == tat
    assert wait == pytest.approx(0.5)
    assert gcra(tat, 100.5, 2, 1.0)[1] is None
    assert gcra(None, 0.0, 0, 1.0)[1] == 1.0  # limit 0: nothing passes


async def test_approval_first_answer_wins(replicas: Factory) -> None:
    """Two concurrent answers (from two replicas): exactly one wins; a third loses too."""
    a, b = await replicas(), await replicas()
    await a.approval_put("r1", {"rid": "r1", "tool": "delete"}, 30)
    assert await b.approval_list() == [{"rid": "r1", "tool": "delete"}]
    results = await asyncio.gather(
        a.approval_answer("r1", {"outcome": "approved", "by": "a"}),
        b.approval_answer("r1", {"outcome": "denied", "by": "b"}),
    )
    assert sorted(results) == [False, True]
    assert not await a.approval_answer("r1", {"outcome": "approved"})
    assert await a.approval_list() == []  # answered: no longer listed
    assert await b.approval_get("r1") == {"rid": "r1", "tool": "delete"}
    assert not await b.approval_answer("unknown", {"outcome": "approved"})
    assert await b.approval_get("unknown") is None


async def test_approval_wait_released_by_another_replica(replicas: Factory) -> None:
    """A wait on one replica returns the outcome an answer on another replica gave."""
    a, b = await replicas(), await replicas()
    await a.approval_put("r2", {"rid": "r2"}, 30)
    waiter = asyncio.create_task(a.approval_wait("r2", BOUND))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    assert await b.approval_answer("r2", {"outcome": "approved", "approver": "carol"})
    assert await asyncio.wait_for(waiter, BOUND) == {"outcome": "approved", "approver": "carol"}
    # Already answered: a later wait returns at once.
    assert await a.approval_wait("r2", BOUND) == {"outcome": "approved", "approver": "carol"}


async def test_approval_wait_times_out(state: State) -> None:
    """An unanswered request's wait returns None after its timeout."""
    await state.approval_put("r3", {"rid": "r3"}, 30)
    assert await asyncio.wait_for(state.approval_wait("r3", 0.3), BOUND) is None


async def test_approval_withdraw(replicas: Factory) -> None:
    """A withdrawn request releases its waiters with None and can no longer be answered."""
    a, b = await replicas(), await replicas()
    await a.approval_put("r4", {"rid": "r4"}, 30)
    waiter = asyncio.create_task(a.approval_wait("r4", BOUND))
    await asyncio.sleep(0.1)
    await b.approval_withdraw("r4")
    assert await asyncio.wait_for(waiter, BOUND) is None
    assert await a.approval_list() == []
    assert await a.approval_get("r4") is None
    assert not await b.approval_answer("r4", {"outcome": "approved"})


async def test_approval_expires(state: State) -> None:
    """An expired request is neither listed, nor found, nor answerable."""
    await state.approval_put("r5", {"rid": "r5"}, 0.2)
    await state.approval_put("r6", {"rid": "r6"}, 30)
    await asyncio.sleep(0.4)
    assert await state.approval_list() == [{"rid": "r6"}]
    assert await state.approval_get("r5") is None
    assert not await state.approval_answer("r5", {"outcome": "approved"})


async def test_shared_secret_same_on_every_replica(replicas: Factory) -> None:
    """Every replica gets the same secret for a name; other names get other secrets."""
    a, b = await replicas(), await replicas()
    one = await a.shared_secret("cookie")
    assert len(one) == 32
    assert await b.shared_secret("cookie") == one
    assert await a.shared_secret("cookie") == one
    other = await b.shared_secret("csrf", 16)
    assert len(other) == 16
    assert other != one[:16]


async def test_session_revocation_shared(replicas: Factory) -> None:
    """A session ended on one replica cannot be used on another."""
    a, b = await replicas(), await replicas()
    assert not await b.session_revoked("sid-1")
    await a.session_revoke("sid-1", 30)
    assert await b.session_revoked("sid-1")
    assert not await b.session_revoked("sid-2")


async def test_sync_nonce_store(replicas: Factory) -> None:
    """The synchronous nonce store accepts a nonce once, across replicas."""
    a, b = await replicas(), await replicas()
    store_a, store_b = a.nonce_store(), b.nonce_store()
    expiry = time.time() + 30
    assert store_a.use("seal-1", expiry)
    if isinstance(a, RedisState):
        assert not store_b.use("seal-1", expiry)
    assert not store_a.use("seal-1", expiry)
    assert store_b.use("seal-2", expiry)


async def test_redis_keys_all_have_ttls(redis_url: str, redis_clean: str) -> None:
    """Every key written under the prefix carries a TTL (nothing grows forever)."""
    state = RedisState(redis_url, prefix=redis_clean)
    try:
        await state.shared_secret("s")
        await state.first_use("n", 30)
        await state.hit("k", 2, 10)
        await state.approval_put("r", {"rid": "r"}, 30)
        await state.approval_put("q", {"rid": "q"}, 30)
        await state.approval_answer("q", {"outcome": "denied"})
        await state.session_revoke("sid", 30)
        state.nonce_store().use("seal", time.time() + 30)
    finally:
        await state.close()
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        keys = sorted(k.decode() for k in client.scan_iter(match=redis_clean + "*"))
        kinds = {k[len(redis_clean) :].split(":")[0] for k in keys}
        assert kinds == {
            "secret",
            "nonce",
            "rate",
            "approval",
            "approvals",
            "revoked",
            "seal-nonce",
        }
        assert any(k.endswith(":outcome") for k in keys)
        ttls = {k: client.pttl(k) for k in keys}
        assert all(ttl > 0 for ttl in ttls.values()), ttls
    finally:
        client.close()


async def test_unreachable_redis_is_a_clear_error_without_password() -> None:
    """A Redis nobody listens on is a GatewayError naming it, never showing the password."""
    url = f"redis://:hunter2-topsecret@127.0.0.1:{_closed_port()}/0"
    with pytest.raises(GatewayError) as err:
        await asyncio.wait_for(open_state(url), BOUND)
    text = str(err.value)
    assert "hunter2-topsecret" not in text
    assert "127.0.0.1" in text
    assert "***" in text


async def test_wrong_password_is_a_clear_error_without_password(redis_url: str) -> None:
    """A password Redis refuses is a GatewayError that shows neither password."""
    real = redis_url.split("://:", 1)[1].split("@", 1)[0]
    url = redis_url.replace(real, "wrong-password-xyz")
    with pytest.raises(GatewayError) as err:
        await asyncio.wait_for(open_state(url), BOUND)
    assert "wrong-password-xyz" not in str(err.value)
    assert real not in str(err.value)


async def test_bad_url_is_a_config_error_without_password() -> None:
    """A URL that is not a Redis URL is a ConfigError; its password is masked."""
    with pytest.raises(ConfigError) as err:
        await open_state("http://:pw-abc123@127.0.0.1:6379/0")
    assert "pw-abc123" not in str(err.value)
    assert "not a Redis URL" in str(err.value)
    assert mask_url("redis://user:pw@[::1]:6380/2") == "redis://***@[::1]:6380/2"


async def test_no_url_is_memory() -> None:
    """Without a URL the state lives in memory."""
    assert isinstance(await open_state(None), MemoryState)


async def test_redis_down_is_an_error_and_sync_store_fails_closed() -> None:
    """With Redis gone, async calls raise GatewayError and the sync nonce store says replayed."""
    url = f"redis://:pw-zz9@127.0.0.1:{_closed_port()}/0"
    state = RedisState(url)
    try:
        with pytest.raises(GatewayError):
            await asyncio.wait_for(state.first_use("n", 30), BOUND)
        with pytest.raises(GatewayError):
            await asyncio.wait_for(state.hit("k", 1, 1), BOUND)
        assert state.nonce_store().use("n", time.time() + 30) is False
    finally:
        await state.close()


async def test_approval_wait_released_by_notification(
    redis_url: str, redis_clean: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With polling made too slow to matter, the pub/sub notification alone releases the wait."""
    monkeypatch.setattr("portcullis.serve.state.POLL_S", 60.0)
    a = RedisState(redis_url, prefix=redis_clean)
    b = RedisState(redis_url, prefix=redis_clean)
    try:
        await a.approval_put("r7", {"rid": "r7"}, 60)
        waiter = asyncio.create_task(a.approval_wait("r7", 40))
        await asyncio.sleep(0.2)
        assert await b.approval_answer("r7", {"outcome": "approved"})
        # Without the notification the wait would last its full 40 s and this bound would trip.
        assert await asyncio.wait_for(waiter, 20) == {"outcome": "approved"}
    finally:
        await a.close()
        await b.close()


async def test_many_pending_approvals_do_not_exhaust_the_connections(
    redis_url: str, redis_clean: str
) -> None:
    """Eighty waits at once share the pool with other calls: none fails, all are released."""
    a = RedisState(redis_url, prefix=redis_clean)
    b = RedisState(redis_url, prefix=redis_clean)
    rids = [f"many{i}" for i in range(80)]
    try:
        for rid in rids:
            await a.approval_put(rid, {"rid": rid}, 60)
        waits = [asyncio.create_task(a.approval_wait(rid, 40)) for rid in rids]
        await asyncio.sleep(1.0)
        assert [w for w in waits if w.done()] == []  # none failed ("Too many connections")
        assert await asyncio.wait_for(a.hit("busy", 10, 60), BOUND) is None
        assert await asyncio.wait_for(a.session_revoked("s"), BOUND) is False
        for rid in rids:
            assert await b.approval_answer(rid, {"outcome": "approved"})
        done = await asyncio.wait_for(asyncio.gather(*waits), 30)
        assert done == [{"outcome": "approved"}] * len(rids)
    finally:
        await a.close()
        await b.close()
