"""Grant rows as introspection reads them: from the grant store, at most ``JIT_INTROSPECTION_CACHE_S`` old.

Resource servers introspect the same token on every request they serve; with
the grant store in PostgreSQL each read is a round trip. A row read within the
last fraction of a second answers instead. What that may hide, and for how long:

- an expiry: never (``GrantRow.is_live`` compares ``expires_at`` with the clock
  on every call);
- a revoke through this API: never (the service forgets the row once the
  revoke has landed);
- a revoke made elsewhere (another API replica, the worker's timer, the
  reconciler): at most ``ttl_s``, which the settings cap at one second.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from core.grants import GrantRow, GrantStore

_SIZE = 10_000


class RecentGrants:
    def __init__(self, store: GrantStore, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._ttl = ttl_s
        self._clock = clock
        self._rows: OrderedDict[str, tuple[GrantRow, float]] = OrderedDict()

    def lookup(self, request_id: str) -> GrantRow | None:
        now = self._clock()
        hit = self._rows.get(request_id)
        if hit is not None and now - hit[1] < self._ttl:
            return hit[0]
        row = self._store.lookup(request_id)
        if row is None or self._ttl <= 0:
            return row
        self._rows[request_id] = (row, now)
        self._rows.move_to_end(request_id)
        if len(self._rows) > _SIZE:
            self._rows.popitem(last=False)
        return row

    def forget(self, request_id: str) -> None:
        self._rows.pop(request_id, None)
