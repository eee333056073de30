"""Rate limits are counted once per machine, not once per worker process: the
default store is a file in the data folder that every worker shares (two real
gunicorn workers prove it); ``redis://…`` stays the store for several machines."""
from __future__ import annotations

import multiprocessing
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from limits.storage import RedisStorage

from desk import create_app
from desk.extensions import limiter
from desk.ratelimits import SQLiteFileStorage
from tests.conftest import TEST_CONFIG
from tests.serverproc import csrf_token
from tests.serverproc import request
from tests.serverproc import running_server

LIMIT = 10


def test_two_workers_let_through_the_limit_once(tmp_path):
    env = {"DESK_LOGIN_ADDRESS_LIMIT": f"{LIMIT} per hour", "DESK_WORKERS": "2"}
    with running_server(tmp_path / "instance", env=env) as server:
        deadline = time.monotonic() + 30  # /healthz answers once the first worker is up
        while len(server.worker_pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(server.worker_pids()) == 2
        time.sleep(0.5)  # and the second one is past its start-up, accepting too
        opener = server.opener()
        status, _, page = request(opener, server.base_url + "/login")
        token = csrf_token(page)

        def attempt(n: int) -> int:
            return request(opener, server.base_url + "/login",
                           {"email": f"nobody{n}@example.com", "password": "wrong password",
                            "csrf_token": token})[0]

        with ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(attempt, range(3 * LIMIT)))
    assert status == 200
    assert statuses.count(429) == 2 * LIMIT, statuses
    assert len(statuses) - statuses.count(429) == LIMIT
    store = tmp_path / "instance" / "ratelimits.db"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600


def _hit(path: str, count: int, results) -> None:
    storage = SQLiteFileStorage(f"desk+sqlite:///{path}")
    results.put([storage.incr("LIMITER/127.0.0.1/login", 60) for _ in range(count)])


def test_the_file_store_counts_hits_from_several_processes(tmp_path):
    path = tmp_path / "ratelimits.db"
    results = multiprocessing.get_context("spawn").Queue()
    workers = [multiprocessing.get_context("spawn").Process(target=_hit, args=(str(path), 50, results))
               for _ in range(3)]
    for worker in workers:
        worker.start()
    counts = sorted(n for _ in workers for n in results.get(timeout=60))
    for worker in workers:
        worker.join(30)
    assert counts == list(range(1, 151))  # every hit counted once, none lost
    storage = SQLiteFileStorage(f"desk+sqlite:///{path}")
    assert storage.get("LIMITER/127.0.0.1/login") == 150
    storage.clear("LIMITER/127.0.0.1/login")
    assert storage.get("LIMITER/127.0.0.1/login") == 0


def test_an_expired_window_starts_again_and_its_row_goes(tmp_path):
    storage = SQLiteFileStorage(f"desk+sqlite:///{tmp_path / 'ratelimits.db'}")
    assert [storage.incr("a", 0), storage.incr("b", 60)] == [1, 1]
    assert storage.get("a") == 0 and storage.incr("a", 60) == 1  # a new window
    assert storage.get("b") == 1 and storage.get_expiry("b") > storage.get_expiry("nothing")
    assert storage.reset() == 2


def test_the_default_store_is_the_data_folders_file_and_redis_can_be_chosen(tmp_path):
    data_dir = tmp_path / "instance"
    base = dict(TEST_CONFIG, DATA_DIR=str(data_dir), DATABASE_URL=f"sqlite:///{tmp_path / 'd.db'}")
    create_app(base)
    assert isinstance(limiter.storage, SQLiteFileStorage)
    assert Path(limiter.storage.path) == (data_dir / "ratelimits.db").resolve()
    create_app(dict(base, RATELIMIT_STORAGE_URI="redis://127.0.0.1:6399/0"))
    assert isinstance(limiter.storage, RedisStorage)  # the client is installed; no server needed yet
    create_app(base)
