"""Retry a flaky operation with exponential backoff and jitter.

Network calls fail for boring reasons: a dropped connection, a server that is
briefly overloaded, a rate limit. Retrying immediately tends to make things
worse, because every client hammers the struggling server at the same moment.
Exponential backoff waits longer after each failure (1 s, 2 s, 4 s, ...), and
random jitter spreads the retries of many clients out in time so they do not
arrive in synchronised waves.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def backoff_delays(base: float = 1.0, cap: float = 30.0, attempts: int = 5) -> list[float]:
    """Return the sleep before each retry using "full jitter".

    Each delay is drawn uniformly between zero and ``min(cap, base * 2**n)``.
    Full jitter keeps the average wait reasonable while removing the
    thundering-herd effect of every client retrying on the same schedule.
    """
    return [random.uniform(0, min(cap, base * 2**n)) for n in range(attempts)]


def retry(func: Callable[[], T], *, attempts: int = 5, retry_on: tuple[type[BaseException], ...] = (OSError,)) -> T:
    """Call ``func`` until it succeeds, sleeping between failed attempts.

    Only the exception types listed in ``retry_on`` are retried; anything else,
    such as a programming error, is raised at once. If every attempt fails,
    the last exception is re-raised so the caller sees the real cause.
    """
    last_error: BaseException | None = None
    for delay in [0.0, *backoff_delays(attempts=attempts - 1)]:
        time.sleep(delay)
        try:
            return func()
        except retry_on as exc:
            last_error = exc
    assert last_error is not None
    raise last_error
