"""Reading the next batch of a source while the current one is appended."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

Item = TypeVar("Item")
Read = TypeVar("Read")


def read_ahead(items: Iterable[Item], read: Callable[[Item], Read]) -> Iterator[tuple[Item, Read]]:
    """(item, read(item)) for each item, in order. The next item is read in a thread while the
    caller handles this one (polars, sqlite3 and DuckDB release the GIL while they work), so at
    most two reads are in memory. An error raised by a read is raised when its turn comes:
    every item before it has been handled, none after it."""
    from concurrent.futures import ThreadPoolExecutor

    items = list(items)
    if not items:
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crm360-read")
    try:
        pending = pool.submit(read, items[0])
        for index, item in enumerate(items):
            result = pending.result()
            if index + 1 < len(items):
                pending = pool.submit(read, items[index + 1])
            yield item, result
            del result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
