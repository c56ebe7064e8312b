"""MongoDB serving copy: collections replaced one day partition at a time, swapped in atomically.

Writing day D inserts the new documents under a fresh ``write_id``, then swaps D's pointer in
``serving_days`` (one document per collection and day: the write readers see, its run, row and document
counts) in one single-document update, then deletes D's documents of any other write. Ranked lists are one
document per user; only the newest ``keep_days`` days stay (Delta keeps every day). Readers follow the pointers
(``served_filter``), so a failure or a kill at any point leaves them the old day or the new one, never
both or a part; a re-run replaces whatever an interrupted write left behind.
"""

from __future__ import annotations

import functools
import time
import uuid
from contextlib import contextmanager
from datetime import date, datetime, timezone
from typing import Any, Iterable, Sequence

from dagster import ConfigurableResource
from pydantic import PrivateAttr

from podrec_assets.core.registry import TABLES
from podrec_assets.resources.unavailable import server_unavailable

SERVING_DAYS = "serving_days"

# Serving indexes (the lookups the Dash app makes), created before every write (create_index is a no-op when present).
SERVING_INDEXES: dict[str, tuple[dict[str, Any], ...]] = {name: t.indexes for name, t in TABLES.items() if t.serving}

# Ranked lists served as one document per owner: {user_id, items: [{episode_id, rank, ...}], date, ...}.
LIST_COLLECTIONS: dict[str, str] = {name: t.list_owner for name, t in TABLES.items() if t.list_owner}


def _needs_server(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._answering():
            return method(self, *args, **kwargs)

    return wrapper


class MongoResource(ConfigurableResource):
    """The serving database; the client is created on first use and reused within a run."""

    uri: str
    database: str = "podrec"
    server_selection_timeout_ms: int = 5000
    keep_days: int = 0  # days of each served collection kept (the newest); 0 keeps every day

    _client: Any = PrivateAttr(default=None)

    def client(self):
        if self._client is None:
            from pymongo import MongoClient

            self._client = MongoClient(
                self.uri, serverSelectionTimeoutMS=self.server_selection_timeout_ms, tz_aware=True
            )
        return self._client

    def db(self):
        return self.client()[self.database]

    def where(self) -> str:
        """The servers of the URI, without credentials (safe to show)."""
        from pymongo.uri_parser import parse_uri

        try:
            return ",".join(f"{host}:{port}" for host, port in parse_uri(self.uri)["nodelist"]) or "?"
        except Exception:  # an unparsable URI: say so, never echo it (it may hold a password)
            return "an unparsable PODREC_MONGO_URI"

    @contextmanager
    def _answering(self):
        """Turn 'no server answers' into the project's message (which server, where, how to start it)."""
        from pymongo.errors import ConnectionFailure

        try:
            yield
        except ConnectionFailure as exc:
            raise server_unavailable("MongoDB", self.where(), "PODREC_MONGO_URI", exc) from exc

    def teardown_after_execution(self, context) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @_needs_server
    def ensure_indexes(self, collection: str) -> None:
        coll = self.db()[collection]
        for spec in SERVING_INDEXES.get(collection, []):
            coll.create_index(spec["keys"], unique=spec.get("unique", False))

    @_needs_server
    def replace_day(
        self,
        collection: str,
        day: date,
        documents: Iterable[dict[str, Any]],
        run_id: str,
        model_version: str | None = None,
        batch_size: int = 5000,
        delta_version: int | None = None,
    ) -> dict[str, Any]:
        """Make the documents of ``day`` exactly ``documents`` (each stamped with date, run_id, model_version),
        swapped in for readers in one step once every document is written.

        A ranked-list collection (``LIST_COLLECTIONS``) gets one document per user holding the user's rows
        under ``items`` (by rank): a tenth of the documents to write, and one read per user. With ``keep_days``
        only the newest days stay: older ones leave MongoDB after the swap (Delta keeps them), and a day older
        than all of the kept ones is not written at all (``skipped``).
        """
        started = time.perf_counter()
        day_key = day.isoformat()
        if self.older_than_kept(collection, day_key):
            return {
                "inserted": 0,
                "rows": 0,
                "deleted": 0,
                "pruned_days": self._prune_old_days(collection),
                "skipped": True,
                "seconds": round(time.perf_counter() - started, 3),
            }
        self.ensure_indexes(collection)
        coll = self.db()[collection]
        write_id = uuid.uuid4().hex
        stamp = {"date": day_key, "run_id": run_id, "model_version": model_version, "write_id": write_id}
        key = LIST_COLLECTIONS.get(collection)
        rows = 0
        if key is not None:
            lists: dict[Any, list[dict[str, Any]]] = {}
            for doc in documents:
                lists.setdefault(doc[key], []).append({k: v for k, v in doc.items() if k != key})
                rows += 1
            documents = (
                {key: owner, "items": sorted(items, key=lambda item: item.get("rank", 0)), **stamp}
                for owner, items in lists.items()
            )
        else:
            documents = ({**doc, **stamp} for doc in documents)
        batch: list[dict[str, Any]] = []
        inserted = 0
        for doc in documents:
            batch.append(doc)
            if len(batch) >= batch_size:
                inserted += len(coll.insert_many(batch, ordered=False).inserted_ids)
                batch = []
        if batch:
            inserted += len(coll.insert_many(batch, ordered=False).inserted_ids)
        rows = rows if key is not None else inserted
        self.db()[SERVING_DAYS].replace_one(
            {"_id": f"{collection}/{day_key}"},
            {
                "collection": collection,
                "date": day_key,
                "write_id": write_id,
                "run_id": run_id,
                "rows": rows,
                "documents": inserted,
                "model_version": model_version,
                "delta_version": delta_version,
                "written_at": datetime.now(timezone.utc),
            },
            upsert=True,
        )
        deleted = coll.delete_many({"date": day_key, "write_id": {"$ne": write_id}}).deleted_count
        pruned = self._prune_old_days(collection)
        return {
            "inserted": inserted,
            "rows": rows,
            "deleted": deleted,
            "pruned_days": pruned,
            "skipped": False,
            "seconds": round(time.perf_counter() - started, 3),
        }

    def _keeps_days(self, collection: str) -> bool:
        """Only ranked lists are kept for a few days: a newer day replaces them (similarities are not)."""
        return self.keep_days > 0 and collection in LIST_COLLECTIONS

    @_needs_server
    def older_than_kept(self, collection: str, day_key: str) -> bool:
        """Whether ``day_key`` is older than every one of the newest ``keep_days`` served days."""
        if not self._keeps_days(collection):
            return False
        kept = sorted(self.served_days(collection), reverse=True)[: self.keep_days]
        return len(kept) >= self.keep_days and day_key < kept[-1]

    def _prune_old_days(self, collection: str) -> list[str]:
        """Remove the days beyond the newest ``keep_days``. The pointer goes to a write that holds nothing first,
        so readers see no part of a day while its documents are deleted; then the documents; then the pointer."""
        if not self._keeps_days(collection):
            return []
        days = sorted(self.served_days(collection), reverse=True)[self.keep_days :]
        for day_key in days:
            pointer = {"_id": f"{collection}/{day_key}"}
            self.db()[SERVING_DAYS].update_one(pointer, {"$set": {"write_id": f"pruned-{uuid.uuid4().hex}"}})
            self.db()[collection].delete_many({"date": day_key})
            self.db()[SERVING_DAYS].delete_one(pointer)
        return days

    @_needs_server
    def served_days(self, collection: str) -> dict[str, dict[str, Any]]:
        """Per day (ISO date) of ``collection``, the pointer to the write readers see."""
        return {doc["date"]: doc for doc in self.db()[SERVING_DAYS].find({"collection": collection})}

    @_needs_server
    def count_day_write(self, collection: str, day: date, write_id: str) -> int:
        """How many documents of ``day`` the write ``write_id`` holds (per-user lists count one each)."""
        return self.db()[collection].count_documents({"date": day.isoformat(), "write_id": write_id})

    @_needs_server
    def served_filter(self, collection: str) -> dict[str, Any]:
        """The filter that keeps a reader on the swapped-in writes of ``collection`` (never a half-written or
        doubled day). Days written before the pointers existed are served as they are."""
        days = self.served_days(collection)
        current = [doc["write_id"] for doc in days.values()]
        return {"$or": [{"write_id": {"$in": current}}, {"date": {"$nin": list(days)}}]}

    @_needs_server
    def delete_day_except(self, collection: str, day: date, key_field: str, keep: Iterable[Any]) -> int:
        """Delete the documents stamped with ``day`` whose ``key_field`` is not in ``keep``.

        For upserted collections (the catalog): what the lake no longer holds leaves the serving store too;
        documents that another day re-stamped are not touched.
        """
        self.ensure_indexes(collection)
        result = self.db()[collection].delete_many({"date": day.isoformat(), key_field: {"$nin": list(keep)}})
        return result.deleted_count

    @_needs_server
    def upsert_many(
        self, collection: str, key_fields: Sequence[str], documents: Iterable[dict[str, Any]], batch_size: int = 5000
    ) -> int:
        """Bulk upsert by key (the catalog: an episode keeps one document whatever day re-publishes it)."""
        from pymongo import ReplaceOne

        self.ensure_indexes(collection)
        coll = self.db()[collection]
        ops, count = [], 0
        for doc in documents:
            ops.append(ReplaceOne({k: doc[k] for k in key_fields}, doc, upsert=True))
            if len(ops) >= batch_size:
                coll.bulk_write(ops, ordered=False)
                count += len(ops)
                ops = []
        if ops:
            coll.bulk_write(ops, ordered=False)
            count += len(ops)
        return count
