"""An in-process DuckDB copy of the Delta tables the Dash app shows, refreshed when a table's version moves.

Each table is copied into one reused DuckDB connection, sorted by its lookup key, the first time a page needs
it and again only when the table's Delta version changes (checked at most every ``version_check_s``; the new
copy is built in the background while pages keep reading the old one). Point lookups then skip row groups by
zone maps instead of rescanning Parquet. The price is memory: the app holds a columnar copy of the tables it
shows. Query results are memoised under (query, parameters, versions of the tables read): a new Delta commit
changes the key, so a stale answer is never served and nothing has to be invalidated by hand.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd
import pyarrow as pa

from podrec_assets.core import registry, schemas
from podrec_assets.resources.lake import LakeResource

# Delta tables the app reads: Arrow schema (for empty tables) and the sort key of the DuckDB copy.
TABLES: dict[str, tuple[pa.Schema, str]] = {
    name: (t.schema, t.mirror_order) for name, t in registry.TABLES.items() if t.mirror_order
}

_MISSING = object()


def _common_columns(schema: pa.Schema) -> pa.Schema:
    return (
        schema.append(pa.field("date", pa.date32()))
        .append(pa.field("run_id", pa.string()))
        .append(pa.field("created_at", schemas.TS))
    )


@dataclass
class Memo:
    """A small LRU of query results; ``get`` answers ``MISSING`` for a key it does not hold."""

    capacity: int = 512
    items: OrderedDict = field(default_factory=OrderedDict)
    MISSING = _MISSING

    def get(self, key: Any) -> Any:
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        return _MISSING

    def put(self, key: Any, value: Any) -> None:
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.capacity:
            self.items.popitem(last=False)


class LakeMirror:
    """DuckDB copies of Delta tables and memoised queries over them. Thread-safe (one lock)."""

    def __init__(
        self,
        lake: LakeResource,
        version_check_s: float = 2.0,
        background_refresh: bool = True,
        on_reload: Callable[[str], None] | None = None,
    ):
        self.lake = lake
        self.version_check_s = version_check_s
        self.background_refresh = background_refresh
        self.on_reload = on_reload  # called (off the lock) after a table's new version was swapped in
        self.lock = threading.RLock()
        self._con = None
        self._refreshing: set[str] = set()
        self.loaded: dict[str, int | None] = {}  # table -> Delta version copied into DuckDB (None: absent)
        self._checked: dict[str, tuple[float, int | None]] = {}  # table -> (monotonic time, version seen)
        self.memo = Memo(capacity=512)  # page-wide aggregates and derived indexes
        self._lookups = Memo(capacity=4096)  # point queries (one user, one episode)

    def connection(self):
        if self._con is None:
            import duckdb

            self._con = duckdb.connect()
            self._con.execute("SET TimeZone='UTC'")
            self._con.execute("SET threads=2")
        return self._con

    def table_version(self, name: str) -> int | None:
        """The table's current Delta version (None when it does not exist yet), re-read at most every few s."""
        now = time.monotonic()
        seen = self._checked.get(name)
        if seen is not None and now - seen[0] < self.version_check_s:
            return seen[1]
        version = self.lake.version(name)
        self._checked[name] = (now, version)
        return version

    def ensure(self, name: str) -> int | None:
        """The Delta version whose copy DuckDB table ``name`` holds (call under the lock).

        The first load is synchronous. Later versions are loaded in the background while queries keep
        reading the previous copy (results are memoised under the version actually read), then swapped in.
        """
        version = self.table_version(name)
        if name in self.loaded:
            loaded = self.loaded[name]
            if loaded == version:
                return loaded
            if self.background_refresh:
                self._refresh_in_background(name, version)
                return loaded
        self._load(self.connection(), name, version, name)
        self.loaded[name] = version
        return version

    def _load(self, con, name: str, version: int | None, target: str) -> None:
        schema, order = TABLES[name]
        if version is None:
            source = pa.Table.from_pylist([], schema=_common_columns(schema))
        else:
            source = self.lake.table(name, version).to_pyarrow_dataset()
        view = f"_incoming_{target}"
        con.register(view, source)
        try:
            con.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM {view} ORDER BY {order}")
        finally:
            con.unregister(view)

    def _refresh_in_background(self, name: str, version: int | None) -> None:
        if name in self._refreshing:
            return
        self._refreshing.add(name)
        cursor = self.connection().cursor()  # its own connection to the same database, for another thread

        def work() -> None:
            staging = f"{name}__staging"
            try:
                self._load(cursor, name, version, staging)
                with self.lock:
                    if self._con is None:  # closed meanwhile
                        return
                    con = self._con
                    con.execute(f"DROP TABLE IF EXISTS {name}")
                    con.execute(f"ALTER TABLE {staging} RENAME TO {name}")
                    self.loaded[name] = version
                if self.on_reload is not None:
                    self.on_reload(name)
            except Exception as exc:  # keep serving the old copy; the next check retries
                if self._con is None:
                    return
                print(f"podrec dash: reloading {name} v{version} failed: {exc}", flush=True)
            finally:
                cursor.close()
                self._refreshing.discard(name)

        threading.Thread(target=work, name=f"podrec-dash-load-{name}", daemon=True).start()

    def load_all(self) -> None:
        for name in TABLES:
            with self.lock:
                self.ensure(name)

    def query(
        self, sql: str, params: list | tuple = (), tables: tuple[str, ...] = (), lookup: bool = False
    ) -> pd.DataFrame:
        """Run parameterised SQL over the named tables; memoised per (sql, params, table versions).

        ``lookup=True`` marks a per-user/per-episode point query: those go to their own LRU so that browsing
        many users never evicts the page-wide aggregates.
        """
        with self.lock:
            versions = tuple(self.ensure(t) for t in tables)
            key = (sql, tuple(params), tables, versions)
            memo = self._lookups if lookup else self.memo
            hit = memo.get(key)
            if hit is not _MISSING:
                return hit
            cursor = self.connection().execute(sql, list(params))
            rows = cursor.fetchall()  # small results: records -> frame is ~3x cheaper than .df()
            frame = pd.DataFrame.from_records(rows, columns=[d[0] for d in cursor.description])
            memo.put(key, frame)
            return frame

    def memoised(self, name: str, tables: tuple[str, ...], build: Callable[[], Any], *args: Any) -> Any:
        """Memoise a derived Python value on the versions of the tables it reads."""
        with self.lock:
            versions = tuple(self.ensure(t) for t in tables)
            key = ("py", name, args, versions)
            hit = self.memo.get(key)
            if hit is not _MISSING:
                return hit
            value = build()
            self.memo.put(key, value)
            return value

    def table_is_empty(self, name: str) -> bool:
        return int(self.query(f"SELECT count(*) AS n FROM {name}", tables=(name,))["n"].iloc[0]) == 0

    def close(self) -> None:
        with self.lock:
            if self._con is not None:
                self._con.close()
                self._con = None
            self.loaded.clear()
