"""The state ``portcullis serve`` replicas share: secrets, nonces, rate limits, approvals, sessions.

Two classes with the same async API: :class:`MemoryState` for one process, :class:`RedisState`
for replicas behind a load balancer (``serve.state: redis://…``). :func:`open_state` picks one
from the URL and checks that Redis answers, so a bad URL or an unreachable server stops
``portcullis serve`` at start-up with a message that never includes the password.

Redis keys all live under a prefix (``portcullis:`` by default), every key has a TTL (nothing
grows forever) and values are msgspec JSON. Client-supplied strings (nonces, session ids) are
hashed into keys, so a key's length is bounded and the ids themselves are not stored.

Rate limiting is GCRA (the generic cell rate algorithm, a sliding window without buckets):
``limit`` calls may come at once, then one every ``window_s / limit`` seconds. In Redis it runs
in a Lua script on the server's clock (``TIME``), so replicas with skewed clocks agree.

Approvals: ``approval_answer`` is a Lua script (only the first answer wins, on any replica) that
also publishes on a per-request channel; ``approval_wait`` is woken through one pattern
subscription shared by every wait (one connection, not one per pending approval) and polls the
outcome key as well, so a lost notification only delays the release by one poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import secrets
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

import msgspec

from portcullis._exceptions import ConfigError, GatewayError

__all__ = [
    "MemoryState",
    "NonceStore",
    "RedisState",
    "gcra",
    "mask_url",
    "open_state",
]

#: Seconds for a Redis connect or reply; a slow Redis fails the call instead of hanging it.
TIMEOUT_S = 2.0
#: The synchronous nonce store is on a call's path: shorter still.
SYNC_TIMEOUT_S = 1.0
#: How often ``approval_wait`` looks at the outcome key should a notification be lost.
POLL_S = 0.5
#: How long a shared secret lives without being read (each read renews it).
SECRET_TTL_S = 30 * 24 * 3600
#: How long an answer is kept after the request it answers (for late waiters).
OUTCOME_GRACE_S = 60.0
#: The memory stores' bound on remembered nonces (expired ones are pruned first).
MAX_NONCES = 100_000
#: Redis schemes accepted by ``serve.state``.
SCHEMES = ("redis", "rediss", "unix")

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode


class NonceStore(Protocol):
    """A synchronous set of used nonces (for synchronous code such as the approval seal)."""

    def use(self, nonce: str, expiry: float) -> bool:
        """Remember ``nonce`` until ``expiry`` (epoch seconds); True the first time only."""
        ...


def mask_url(url: str) -> str:
    """``url`` without its password (and user name), for messages and logs."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<an unparsable URL>"
    auth = "***@" if (parts.password or parts.username) else ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{auth}{host}{port}{parts.path}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def gcra(tat: float | None, now: float, limit: int, window_s: float) -> tuple[float, float | None]:
    """One GCRA step: ``(new theoretical arrival time, None)`` if allowed, else ``(tat, wait)``.

    ``tat`` is the stored theoretical arrival time (None: never seen). ``limit`` calls may come
    at once; after that one call every ``window_s / limit`` seconds.
    """
    if limit <= 0:
        return (tat if tat is not None else now), window_s
    interval = window_s / limit
    base = max(tat if tat is not None else now, now)
    new_tat = base + interval
    allow_at = new_tat - window_s
    if allow_at > now:
        return (tat if tat is not None else now), allow_at - now
    return new_tat, None


# --------------------------------------------------------------------------------------------
# One process
# --------------------------------------------------------------------------------------------


class _MemoryNonces:
    """Used nonces with their expiry, bounded (see :data:`MAX_NONCES`)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._used: dict[str, float] = {}

    def use(self, nonce: str, expiry: float) -> bool:
        now = self._clock()
        seen = self._used.get(nonce)
        if seen is not None and seen >= now:
            return False
        if len(self._used) >= MAX_NONCES:
            self._used = {n: x for n, x in self._used.items() if x >= now}
            while len(self._used) >= MAX_NONCES:  # all still live: drop the soonest to expire
                del self._used[min(self._used, key=self._used.__getitem__)]
        self._used[nonce] = expiry
        return True


class _Approval:
    __slots__ = ("done", "expires", "outcome", "record")

    def __init__(self, record: dict[str, Any], expires: float) -> None:
        self.record = record
        self.expires = expires
        self.outcome: dict[str, Any] | None = None
        self.done = asyncio.Event()  # set on an answer or a withdrawal


class MemoryState:
    """The shared state of a single ``portcullis serve`` process (nothing leaves the process)."""

    def __init__(self) -> None:
        self._secrets: dict[str, bytes] = {}
        self._nonces = _MemoryNonces()
        self._rates: dict[str, tuple[float, float]] = {}  # key -> (tat, forget after)
        self._approvals: dict[str, _Approval] = {}
        self._revoked: dict[str, float] = {}  # sid digest -> expiry (monotonic)

    async def ping(self) -> None:
        """Always reachable."""

    async def shared_secret(self, name: str, nbytes: int = 32) -> bytes:
        """A random secret made on first use and the same for the life of the process."""
        secret = self._secrets.get(name)
        if secret is None:
            secret = self._secrets[name] = secrets.token_bytes(nbytes)
        return secret

    async def first_use(self, nonce: str, ttl_s: float) -> bool:
        """True the first time ``nonce`` is seen within ``ttl_s`` seconds; False on a replay."""
        return self._nonces.use(_digest(nonce), time.time() + ttl_s)

    async def hit(self, key: str, limit: int, window_s: float) -> float | None:
        """Count one call against ``key``: None when allowed, else seconds until a retry."""
        now = time.monotonic()
        if len(self._rates) > MAX_NONCES:
            self._rates = {k: v for k, v in self._rates.items() if v[1] > now}
        stored = self._rates.get(key)
        tat = stored[0] if stored is not None and stored[1] > now else None
        new_tat, wait = gcra(tat, now, limit, window_s)
        if wait is None:
            self._rates[key] = (new_tat, new_tat)
        return wait

    def _approval(self, rid: str) -> _Approval | None:
        entry = self._approvals.get(rid)
        now = time.monotonic()
        if entry is not None and entry.expires + (OUTCOME_GRACE_S if entry.outcome else 0) < now:
            del self._approvals[rid]
            entry.done.set()
            return None
        return entry

    def _prune(self) -> None:
        for rid in list(self._approvals):
            self._approval(rid)

    async def approval_put(self, rid: str, record: dict[str, Any], ttl_s: float) -> None:
        """Queue an approval request ``rid`` for ``ttl_s`` seconds."""
        self._prune()
        old = self._approvals.get(rid)
        if old is not None:
            old.done.set()
        self._approvals[rid] = _Approval(record, time.monotonic() + ttl_s)

    async def approval_list(self) -> list[dict[str, Any]]:
        """The queued requests that are neither expired nor answered."""
        self._prune()
        now = time.monotonic()
        return [
            e.record for e in self._approvals.values() if e.outcome is None and e.expires >= now
        ]

    async def approval_get(self, rid: str) -> dict[str, Any] | None:
        """The record put for ``rid``, or None when unknown or expired."""
        entry = self._approval(rid)
        if entry is None or (entry.outcome is None and entry.expires < time.monotonic()):
            return None
        return entry.record

    async def approval_answer(self, rid: str, outcome: dict[str, Any]) -> bool:
        """Answer ``rid``: True for the first answer, False when unknown, expired or answered."""
        entry = self._approval(rid)
        if entry is None or entry.outcome is not None or entry.expires < time.monotonic():
            return False
        entry.outcome = outcome
        entry.done.set()
        return True

    async def approval_wait(self, rid: str, timeout_s: float) -> dict[str, Any] | None:
        """The outcome of ``rid`` once answered; None on timeout, withdrawal or expiry."""
        entry = self._approval(rid)
        if entry is None:
            return None
        remaining = min(timeout_s, max(0.0, entry.expires - time.monotonic()))
        if entry.outcome is None:
            try:
                await asyncio.wait_for(entry.done.wait(), remaining)
            except TimeoutError:
                return None
        return entry.outcome

    async def approval_withdraw(self, rid: str) -> None:
        """Drop ``rid`` (answered or not); its waiters return None unless already answered."""
        entry = self._approvals.pop(rid, None)
        if entry is not None:
            entry.done.set()

    async def session_revoke(self, sid: str, ttl_s: float) -> None:
        """Remember for ``ttl_s`` seconds that session ``sid`` was ended."""
        now = time.monotonic()
        if len(self._revoked) > MAX_NONCES:
            self._revoked = {k: x for k, x in self._revoked.items() if x > now}
        self._revoked[_digest(sid)] = now + ttl_s

    async def session_revoked(self, sid: str) -> bool:
        """Whether session ``sid`` was ended (and may not be used again)."""
        expiry = self._revoked.get(_digest(sid))
        return expiry is not None and expiry > time.monotonic()

    def nonce_store(self) -> NonceStore:
        """A synchronous nonce store sharing nothing with ``first_use`` (separate namespaces)."""
        return _MemoryNonces()

    async def close(self) -> None:
        """Release the waiters (they return None)."""
        for entry in self._approvals.values():
            entry.done.set()


# --------------------------------------------------------------------------------------------
# Replicas: Redis
# --------------------------------------------------------------------------------------------

# KEYS[1] rate key; ARGV: interval µs, window µs. Returns -1 (allowed) or µs until a retry.
_GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - window
if allow_at > now then
  return math.ceil(allow_at - now)
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX',
  math.ceil((new_tat - now) / 1000) + 1)
return -1
"""

# KEYS: record, outcome, index, channel. ARGV: outcome JSON, rid, grace ms.
_ANSWER_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then ttl = 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ttl + tonumber(ARGV[3]))
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('PUBLISH', KEYS[4], 'answered')
return 1
"""


class _Envelope(msgspec.Struct, frozen=True):
    record: dict[str, Any]
    rid: str


class RedisState:
    """Shared state in Redis, for replicas of ``portcullis serve`` behind one load balancer.

    Every failure to reach Redis raises :class:`GatewayError` naming the server without its
    password; callers fail closed (a call that cannot be rate-limited or checked is refused).
    """

    def __init__(self, url: str, *, prefix: str = "portcullis:") -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff

        _check_url(url)
        self._url = url
        self._where = mask_url(url)
        self._password = urlsplit(url).password or ""
        self._prefix = prefix
        self._sync: list[_RedisNonces] = []
        self._waiters: dict[str, set[asyncio.Event]] = {}  # channel -> waits on it
        self._listener: asyncio.Task[None] | None = None
        try:
            # Blocking: past max_connections a call waits (TIMEOUT_S at most) for a free
            # connection; the plain pool fails it at once ("Too many connections"), so a burst
            # of concurrent requests would be refused for no reason.
            pool = aioredis.BlockingConnectionPool.from_url(
                url,
                socket_timeout=TIMEOUT_S,
                socket_connect_timeout=TIMEOUT_S,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 1),
                health_check_interval=30,
                max_connections=64,
                timeout=TIMEOUT_S,
            )
            self._redis: Any = aioredis.Redis.from_pool(pool)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"serve.state: {self._clean(exc)} ({self._where})") from None
        self._gcra = self._redis.register_script(_GCRA_LUA)
        self._answer = self._redis.register_script(_ANSWER_LUA)

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    def _clean(self, exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        if self._password:
            text = text.replace(self._password, "***")
        return text.replace(self._url, self._where)

    def _error(self, exc: BaseException) -> GatewayError:
        return GatewayError(f"the shared state (Redis at {self._where}) failed: {self._clean(exc)}")

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        from redis.exceptions import RedisError

        try:
            return await getattr(self._redis, method)(*args, **kwargs)
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._error(exc) from None

    async def ping(self) -> None:
        """Raise :class:`GatewayError` when Redis does not answer (or refuses the password)."""
        await self._call("ping")

    async def shared_secret(self, name: str, nbytes: int = 32) -> bytes:
        """The same random secret on every replica: the first replica to ask makes it."""
        key = self._key("secret", name)
        fresh = _json_encode(secrets.token_bytes(nbytes))
        await self._call("set", key, fresh, nx=True, ex=SECRET_TTL_S)
        raw = await self._call("getex", key, ex=SECRET_TTL_S)
        if raw is None:  # deleted between the two calls: fail closed rather than guess
            raise GatewayError(f"the shared secret {name!r} vanished from Redis ({self._where})")
        return msgspec.json.decode(raw, type=bytes)

    async def first_use(self, nonce: str, ttl_s: float) -> bool:
        """True the first time ``nonce`` is seen on any replica within ``ttl_s``; else False."""
        key = self._key("nonce", _digest(nonce))
        done = await self._call("set", key, b"1", nx=True, px=_ms(ttl_s))
        return bool(done)

    async def hit(self, key: str, limit: int, window_s: float) -> float | None:
        """Count one call against ``key`` on all replicas: None when allowed, else the wait."""
        if limit <= 0:
            return window_s
        from redis.exceptions import RedisError

        interval = max(1, round(window_s * 1e6 / limit))
        try:
            wait = await self._gcra(
                keys=[self._key("rate", key)], args=[interval, round(window_s * 1e6)]
            )
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._error(exc) from None
        return None if int(wait) < 0 else int(wait) / 1e6

    def _approval_keys(self, rid: str) -> tuple[str, str, str, str]:
        d = _digest(rid)
        return (
            self._key("approval", d),
            self._key("approval", d, "outcome"),
            self._key("approvals"),
            self._key("approval", d, "done"),
        )

    async def approval_put(self, rid: str, record: dict[str, Any], ttl_s: float) -> None:
        """Queue an approval request ``rid`` for ``ttl_s`` seconds, visible to every replica."""
        rec, out, index, _ = self._approval_keys(rid)
        expiry_ms = int(time.time() * 1000) + _ms(ttl_s)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(rec, _json_encode(_Envelope(record, rid)), px=_ms(ttl_s))
            pipe.delete(out)
            pipe.zadd(index, {rid: expiry_ms})
            # The index expires with its longest-lived entry (GT: never shortened).
            pipe.pexpire(index, _ms(ttl_s) + 1000, gt=True)
            pipe.pexpire(index, _ms(ttl_s) + 1000, nx=True)
            await self._exec(pipe)

    async def _exec(self, pipe: Any) -> list[Any]:
        from redis.exceptions import RedisError

        try:
            return list(await pipe.execute())
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._error(exc) from None

    async def approval_list(self) -> list[dict[str, Any]]:
        """The queued requests that are neither expired nor answered, oldest deadline first."""
        index = self._key("approvals")
        now_ms = int(time.time() * 1000)
        await self._call("zremrangebyscore", index, "-inf", now_ms)
        rids = [r.decode() for r in await self._call("zrange", index, 0, -1)]
        if not rids:
            return []
        keys = [self._approval_keys(rid)[:2] for rid in rids]
        values = await self._call("mget", [k for pair in keys for k in pair])
        out: list[dict[str, Any]] = []
        for i in range(len(rids)):
            raw, answered = values[2 * i], values[2 * i + 1]
            if raw is not None and answered is None:
                out.append(msgspec.json.decode(raw, type=_Envelope).record)
        return out

    async def approval_get(self, rid: str) -> dict[str, Any] | None:
        """The record put for ``rid``, or None when unknown or expired."""
        raw = await self._call("get", self._approval_keys(rid)[0])
        return None if raw is None else msgspec.json.decode(raw, type=_Envelope).record

    async def approval_answer(self, rid: str, outcome: dict[str, Any]) -> bool:
        """Answer ``rid`` on any replica: True for the first answer only (atomic, in Redis)."""
        from redis.exceptions import RedisError

        rec, out, index, channel = self._approval_keys(rid)
        try:
            won = await self._answer(
                keys=[rec, out, index, channel],
                args=[_json_encode(outcome), rid, _ms(OUTCOME_GRACE_S)],
            )
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._error(exc) from None
        return bool(won)

    async def _outcome(self, rid: str) -> tuple[bool, dict[str, Any] | None]:
        """``(still pending, outcome)`` of ``rid``."""
        rec, out, _, _ = self._approval_keys(rid)
        raw_rec, raw_out = await self._call("mget", [rec, out])
        if raw_out is not None:
            return False, _json_decode(raw_out)
        return raw_rec is not None, None

    async def approval_wait(self, rid: str, timeout_s: float) -> dict[str, Any] | None:
        """The outcome of ``rid`` once answered on any replica; None on timeout or withdrawal.

        Every wait shares one subscription (see :meth:`_listen`): a connection per wait would
        let a few dozen pending approvals take the whole pool, and with it every rate-limit
        and revocation check of every client.
        """
        channel = self._approval_keys(rid)[3]
        deadline = time.monotonic() + timeout_s
        event = asyncio.Event()
        self._waiters.setdefault(channel, set()).add(event)
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name="portcullis-approvals")
        try:
            while True:
                # Checked after registering, so an answer given in between is not missed.
                pending, outcome = await self._outcome(rid)
                if not pending:
                    return outcome
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(POLL_S, left)):
                        await event.wait()
                event.clear()
        finally:
            events = self._waiters.get(channel)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiters[channel]

    async def _listen(self) -> None:
        """Wake the waits whose approval was answered or withdrawn (one connection for all).

        Should the subscription break, the waits go on polling the outcome keys; the next wait
        starts a new listener.
        """
        pattern = _glob_escape(self._prefix) + "approval:*:done"
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.psubscribe(pattern)
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                channel = message.get("channel")
                if isinstance(channel, bytes):
                    channel = channel.decode("utf-8", "replace")
                for event in self._waiters.get(str(channel), ()):
                    event.set()
        except Exception as exc:  # Redis went away: the waits poll (and fail if it stays away)
            with contextlib.suppress(Exception):
                self._log_listen(exc)
        finally:
            with contextlib.suppress(Exception):  # closing a broken connection
                await pubsub.aclose()

    def _log_listen(self, exc: BaseException) -> None:
        from portcullis.serve.logs import log

        log(f"approval notifications stopped: {self._clean(exc)}", level="warning")

    async def approval_withdraw(self, rid: str) -> None:
        """Drop ``rid`` on every replica; waiters that have no answer yet return None."""
        rec, out, index, channel = self._approval_keys(rid)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(rec, out)
            pipe.zrem(index, rid)
            pipe.publish(channel, "withdrawn")
            await self._exec(pipe)

    async def session_revoke(self, sid: str, ttl_s: float) -> None:
        """Remember on every replica, for ``ttl_s`` seconds, that session ``sid`` was ended."""
        await self._call("set", self._key("revoked", _digest(sid)), b"1", px=_ms(ttl_s))

    async def session_revoked(self, sid: str) -> bool:
        """Whether session ``sid`` was ended on any replica."""
        return bool(await self._call("exists", self._key("revoked", _digest(sid))))

    def nonce_store(self) -> NonceStore:
        """A synchronous nonce store in the same Redis; it fails closed (False) on any error."""
        store = _RedisNonces(self._url, self._key("seal-nonce", ""))
        self._sync.append(store)
        return store

    async def close(self) -> None:
        """Close the connections (the nonce stores' too)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(BaseException):
                await listener
        for store in self._sync:
            store.close()
        with contextlib.suppress(Exception):  # closing a broken connection
            await self._redis.aclose()


class _RedisNonces:
    """Used nonces in Redis for synchronous callers; every error counts as a replay."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._prefix = prefix
        self._redis = redis.Redis.from_url(
            url,
            socket_timeout=SYNC_TIMEOUT_S,
            socket_connect_timeout=SYNC_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
            max_connections=16,
        )

    def use(self, nonce: str, expiry: float) -> bool:
        """True the first time ``nonce`` is seen; False on a replay or when Redis fails."""
        ttl_ms = max(1, math.ceil((expiry - time.time()) * 1000))
        try:
            return bool(self._redis.set(self._prefix + _digest(nonce), b"1", nx=True, px=ttl_ms))
        except Exception:  # fail closed: an unchecked nonce counts as a replay
            return False

    def close(self) -> None:
        """Close the connections."""
        with contextlib.suppress(Exception):
            self._redis.close()


def _glob_escape(text: str) -> str:
    """``text`` matched literally in a Redis glob pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _check_url(url: str) -> None:
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        scheme = ""
    if scheme not in SCHEMES:
        raise ConfigError(
            f"serve.state: {mask_url(url)!s} is not a Redis URL "
            "(use redis://[:PASSWORD@]HOST:PORT/DB, rediss://… or unix://…)"
        )


async def open_state(url: str | None) -> MemoryState | RedisState:
    """The state for ``serve.state``: in memory when None, else Redis (checked with a ping).

    Raises :class:`ConfigError` for a URL that is not a Redis URL and :class:`GatewayError`
    when Redis cannot be reached or refuses the password; neither message holds the password.
    """
    if url is None or not url.strip():
        return MemoryState()
    state = RedisState(url)
    try:
        await state.ping()
    except BaseException:
        await state.close()
        raise
    return state
