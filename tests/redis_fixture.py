"""A throwaway redis-server for tests (import the fixture into a test module).

    from redis_fixture import redis_server  # noqa: F401

The server is tingxie.localserver.RedisServer (persistent, so `restart()` keeps the
queue). Skips with the reason when redis-server is absent.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tingxie.localserver import RedisServer


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed (apt-get install redis-server)")
    try:
        import celery  # noqa: F401
        import redis  # noqa: F401
    except ImportError:
        pytest.skip("celery[redis] is not installed (pip install 'celery[redis]')")
    try:
        srv = RedisServer(binary).start()
    except (RuntimeError, OSError) as e:
        pytest.skip(f"cannot start redis-server: {e}")
    try:
        yield srv
    finally:
        srv.close()
