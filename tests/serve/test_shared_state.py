"""The Redis channel between replicas (serve/shared_state.py): the no-op without a URL,
delivery between two channels, a process's own notices skipped, drop-all on reconnect,
reconnect with backoff, and a publish that fails without failing its caller."""

from __future__ import annotations

import socket
import threading
import time
import uuid

import pytest

from shopformer.artifact import make_model
from shopformer.dataset import DataConfig
from shopformer.experiment import train_run
from shopformer.ingest.api import ingest
from shopformer.serve.metrics import Metrics
from shopformer.serve.recommender import RecommendationService
from shopformer.serve.settings import ServeSettings
from shopformer.serve.shared_state import (
    Listeners,
    RedisSharedState,
    SharedState,
    SharedStateConfig,
    announce_reload,
    service_listeners,
    shared_state,
)
from shopformer.store import EventStore, StoreConfig, import_folder

REDIS_URL = "redis://127.0.0.1:6379/0"


class Recorder:
    """Listeners that record what they were called with."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.changed = threading.Condition()

    def _record(self, *call: object) -> None:
        with self.changed:
            self.calls.append(call)
            self.changed.notify_all()

    def listeners(self) -> Listeners:
        return Listeners(users=lambda users: self._record("users", tuple(users)),
                         reload=lambda run: self._record("reload", run),
                         catalog=lambda: self._record("catalog"), rules=lambda: self._record("rules"),
                         reset=lambda: self._record("reset"))

    def wait_for(self, call: tuple, timeout: float = 5.0) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: call in self.calls, timeout), f"{call} never came: {self.calls}"


def redis_client():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {exc}")
    return client


@pytest.fixture
def channel() -> str:
    return f"shopformer-test-{uuid.uuid4().hex[:12]}"


def started(channel: str, recorder: Recorder, **kw) -> RedisSharedState:
    state = RedisSharedState(SharedStateConfig(url=REDIS_URL, channel=channel, **kw))
    state.start(recorder.listeners())
    assert state.subscribed.wait(5), "never subscribed"
    return state


def test_no_url_gives_the_no_op_channel():
    state = shared_state(SharedStateConfig())
    assert type(state) is SharedState and not state.enabled
    recorder = Recorder()
    state.start(recorder.listeners())
    state.publish_user("u1")
    state.publish_users(["u1", "u2"])
    state.publish_reload("v1")
    state.publish_catalog()
    state.publish_rules()
    state.close()
    assert recorder.calls == []
    assert ServeSettings().shared_state.url is None


def test_settings_read_and_check_the_redis_url():
    s = ServeSettings.from_env({"SHOPFORMER_REDIS_URL": " redis://:pw@127.0.0.1:6379/2 ",
                                "SHOPFORMER_REDIS_CHANNEL": "shop-a"})
    assert s.shared_state == SharedStateConfig(url="redis://:pw@127.0.0.1:6379/2", channel="shop-a")
    assert "pw" not in repr(s) and "pw" not in repr(s.shared_state)
    assert isinstance(shared_state(s.shared_state), RedisSharedState)
    with pytest.raises(ValueError, match="SHOPFORMER_REDIS_URL must be a Redis URL"):
        ServeSettings.from_env({"SHOPFORMER_REDIS_URL": "http://127.0.0.1:6379"})
    with pytest.raises(ValueError, match="redis_url"):
        ServeSettings(redis_url="127.0.0.1:6379")
    with pytest.raises(ValueError, match="redis_channel"):
        ServeSettings(redis_channel=" ")
    with pytest.raises(ValueError, match="max_backoff_s"):
        SharedStateConfig(url=REDIS_URL, backoff_s=2, max_backoff_s=1)


def test_notices_reach_the_other_process_and_not_the_sender(channel):
    redis_client()
    ra, rb = Recorder(), Recorder()
    a, b = started(channel, ra), started(channel, rb)
    try:
        a.publish_users(["u1", "u2", "u1"])
        a.publish_reload("v7")
        a.publish_catalog()
        a.publish_rules()
        for call in (("users", ("u1", "u2")), ("reload", "v7"), ("catalog",), ("rules",)):
            rb.wait_for(call)
        b.publish_user("u3")
        ra.wait_for(("users", ("u3",)))
        time.sleep(0.05)  # anything of a's own would have come back by now
        assert ra.calls == [("users", ("u3",))]
        assert rb.calls == [("users", ("u1", "u2")), ("reload", "v7"), ("catalog",), ("rules",)]
        assert (a.published, b.received, a.received) == (4, 4, 1)
    finally:
        a.close()
        b.close()


def test_malformed_notices_are_ignored(channel):
    client = redis_client()
    recorder = Recorder()
    b = started(channel, recorder)
    try:
        for junk in (b"not json", b'{"kind": "users"}', b'{"origin": "x", "kind": "teleport"}'):
            client.publish(channel, junk)
        client.publish(channel, '{"origin": "x", "kind": "users", "users": ["u9"]}')
        recorder.wait_for(("users", ("u9",)))
        assert recorder.calls == [("users", ("u9",))]
    finally:
        b.close()


def test_a_broken_subscription_drops_everything_when_it_comes_back(channel):
    client = redis_client()
    recorder = Recorder()
    b = started(channel, recorder, backoff_s=0.05)
    try:
        assert recorder.calls == []  # the first subscription missed nothing
        killed = 0
        for entry in client.client_list():
            if entry.get("name") == b.client_name:
                killed += client.client_kill_filter(_id=entry["id"])
        assert killed == 1
        recorder.wait_for(("reset",))
        assert b.resets == 1
        client.publish(channel, '{"origin": "x", "kind": "users", "users": ["u1"]}')  # delivered again
        recorder.wait_for(("users", ("u1",)))
    finally:
        b.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when this returns: nothing listens there


def test_an_unreachable_redis_is_retried_with_backoff_and_never_fails_a_publish(channel):
    pytest.importorskip("redis")
    recorder = Recorder()
    state = RedisSharedState(SharedStateConfig(url=f"redis://127.0.0.1:{closed_port()}/0", channel=channel,
                                               backoff_s=0.05, max_backoff_s=0.2, publish_pause_s=30))
    state.start(recorder.listeners())
    try:
        state.publish_user("u1")  # refused at once: counted, not raised
        state.publish_user("u2")  # inside the pause: not even tried
        assert (state.published, state.publish_failures) == (0, 1)
        time.sleep(0.6)
        # 0.05 + 0.1 + 0.2 + 0.2 ...: a few tries, not a busy loop
        assert 3 <= state.reconnects <= 8, state.reconnects
        assert not state.subscribed.is_set() and recorder.calls == []
    finally:
        state.close()


def test_announce_reload_from_outside_the_api(channel):
    redis_client()
    recorder = Recorder()
    b = started(channel, recorder)
    try:
        assert announce_reload("v9", {"SHOPFORMER_REDIS_URL": REDIS_URL, "SHOPFORMER_REDIS_CHANNEL": channel})
        recorder.wait_for(("reload", "v9"))
        assert not announce_reload("v9", {})  # no URL: nothing to tell
    finally:
        b.close()


class Published(SharedState):
    """A channel that records what the service publishes."""

    def __init__(self) -> None:
        self.sent: list[tuple] = []

    def publish_users(self, users):
        self.sent.append(("users", tuple(users)))

    def publish_reload(self, run):
        self.sent.append(("reload", run))

    def publish_catalog(self):
        self.sent.append(("catalog",))


@pytest.fixture
def service(tmp_path):
    (tmp_path / "seq.txt").write_text("u1 a b c\nu2 a b d\nu3 b c d\nu4 e f g\n")
    ingest(tmp_path / "seq.txt", "sequence", tmp_path / "data")
    train_run(make_model("itemknn", {"shrink": "0"}), tmp_path / "data", DataConfig(), tmp_path / "knn", fit_on="all")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = EventStore(StoreConfig(url))
    import_folder(store, tmp_path / "data")
    svc = RecommendationService(ServeSettings(store_url=url, cache_ttl_s=600), store)
    svc.shared = Published()
    svc.reload(tmp_path / "knn", publish=True)
    yield svc
    store.close()


def test_the_service_announces_its_own_changes_and_not_the_ones_it_hears_of(service):
    published = service.shared.sent
    assert published == [("reload", service.require().version)]
    service.invalidate_users(["u1"])
    service.invalidate_catalog()
    service.invalidate_users(["u2"], publish=False)  # a notice heard: not sent again
    service.invalidate_catalog(publish=False)
    assert published[1:] == [("users", ("u1",)), ("catalog",)]


def test_notices_drop_the_named_users_and_a_reset_drops_all(service):
    listeners = service_listeners(service, Metrics())
    served = service.require()
    for user in ("u1", "u2", "u1", "u2"):
        service.recommend_user(served, user, 2, True, None)
    assert (service.cache_hits, service.cache_misses) == (2, 2)
    listeners.users(["u1"])
    service.recommend_user(served, "u1", 2, True, None)
    service.recommend_user(served, "u2", 2, True, None)
    assert (service.cache_hits, service.cache_misses) == (3, 3)  # u1 read again, u2 still cached
    listeners.reset()
    service.recommend_user(served, "u1", 2, True, None)
    service.recommend_user(served, "u2", 2, True, None)
    assert (service.cache_hits, service.cache_misses) == (3, 5)
    assert service.shared.sent == [("reload", served.version)]  # nothing heard was sent on
