"""podrec serve's two background jobs: load each new day's model, and fold listening events into live lists.

``ModelWatcher`` checks the lake every PODREC_SERVE_RELOAD_S; when the newest day of final_recommendations is new
(or rewritten), it builds the model in memory, has the store hold that version's lists and states (one replica
writes them, see ``ServingStore.publish``) and swaps the model reference: a request sees the old model or the new
one, never a mix.

``EventFolder`` consumes `user-events` in a consumer group (replicas share the partitions). For each batch it
turns the events of days after the model's day into rows of user_episode_daily with the batch's own SQL
(``core.engagement``), adds them to each listener's stored state, re-runs the fusion for those listeners
(``core.online.live_lists``: fold-in, ALS candidates, content, α) and writes their lists, states (with the event
ids folded, so a redelivered event counts once), seen episodes and the partition offsets in one Redis transaction,
fenced by the version's publish id: a restart resumes where the store is, and a version written anew (another
replica, a Redis restart) makes every consumer re-read from what the store then holds. Events of the model's day
or earlier are the batch's. After a model swap it reads from the start of the day after the new model's day, so
the new version holds every event since its batch.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Callable

import numpy as np
import pyarrow as pa

from podrec_assets.core import online
from podrec_assets.core.events import InvalidEvent, parse_event
from podrec_assets.core.registry import USER_EVENTS_TOPIC
from podrec_assets.serving import store as keys
from podrec_assets.serving.fold import fold_events, state_keep_days
from podrec_assets.serving.model import NoModel, ServedModel, lake_fingerprint, load_model
from podrec_assets.serving.store import ServingStore, StaleVersion
from podrec_assets.settings import Settings

log = logging.getLogger("podrec.serve")
GROUP = "podrec-serve"


class ModelHolder:
    """The model the replica answers with; replaced whole, read without a lock."""

    def __init__(self) -> None:
        self.model: ServedModel | None = None
        self.error: str | None = None

    def swap(self, model: ServedModel) -> None:
        self.model = model
        self.error = None


def release_free_memory() -> None:
    """Hand the pages the load freed back to the OS (glibc keeps them otherwise: gigabytes at 1M listeners)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


PUBLISH_CHUNK_USERS = 100_000


def publish_model(store: ServingStore, settings: Settings, model: ServedModel, data, lists: pa.Table) -> bool:
    """Give the store this model's batch lists and every listener's state (unless a replica did already).

    ``lists``: the day's final_recommendations sorted by user_id; documents are built and written for
    ``PUBLISH_CHUNK_USERS`` listeners at a time, so the frames of one slice are all that is held at once.
    """
    day = model.day

    def chunks():  # built only by the replica that writes the version
        rows = online.state_rows(data.daily, day, state_keep_days(settings))
        rows = rows.sort_values("user_id", kind="mergesort").reset_index(drop=True)
        row_users = rows["user_id"].to_numpy(dtype=object)
        list_users = lists.column("user_id").to_numpy(zero_copy_only=False).astype(object)
        users = np.union1d(np.unique(row_users), np.unique(list_users)) if len(rows) or len(list_users) else []
        for begin in range(0, len(users), PUBLISH_CHUNK_USERS):
            first, last = users[begin], users[min(begin + PUBLISH_CHUNK_USERS, len(users)) - 1]
            r0, r1 = (
                np.searchsorted(row_users, [first, last], side="left")[0],
                np.searchsorted(row_users, last, "right"),
            )
            l0, l1 = np.searchsorted(list_users, first, "left"), np.searchsorted(list_users, last, "right")
            rows_part = rows.iloc[r0:r1]
            hide = keys.hidden_episodes(rows_part, day, settings.history_days)
            yield (
                keys.list_documents(lists.slice(l0, l1 - l0).to_pandas(), hide, live=False),
                keys.state_documents(rows_part),
            )

    meta = {
        "day": day.isoformat(),
        "model_version": model.served.model_version,
        "written_at": datetime.now(timezone.utc).isoformat(),
    }
    return store.publish(model.version, chunks, meta, progress=log.info)


class BackgroundJob:
    """A daemon thread running ``_run`` until ``stop`` (which waits for it)."""

    def __init__(self, name: str):
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=30)


class ModelWatcher(BackgroundJob):
    """Loads the newest model at start and whenever the lake's newest day of lists changes."""

    def __init__(
        self,
        settings: Settings,
        lake,
        store: ServingStore,
        holder: ModelHolder,
        on_swap: Callable[[ServedModel], None] | None = None,
    ):
        super().__init__("podrec-model-watcher")
        self.settings, self.lake, self.store, self.holder = settings, lake, store, holder
        self.on_swap = on_swap

    def check_once(self) -> bool:
        """Load the lake's newest model if it is not the one served; True when a new model was swapped in."""
        fingerprint = lake_fingerprint(self.lake)
        current = self.holder.model
        if fingerprint is None:
            self.holder.error = f"no day of final_recommendations in the lake at {self.lake.root} yet"
            return False
        version = fingerprint.version
        if current is not None and (current.version == version or fingerprint.day < current.day):
            if current.version == version and not self.store.is_complete(version):
                # the live updates went with it: a new publish id tells every replica's consumer to re-read them
                log.warning("the store lost model %s (a Redis restart?): writing it again", version)
                model, data, lists = load_model(self.lake, self.settings, fingerprint)
                publish_model(self.store, self.settings, model, data, lists)
            return False
        log.info("loading model %s from the lake", version)
        model, data, lists = load_model(self.lake, self.settings, fingerprint)
        publish_model(self.store, self.settings, model, data, lists)
        del data, lists
        previous = self.holder.model
        self.holder.swap(model)
        # the model is millions of long-lived objects: a full collection walking them stalls requests for tens
        # of ms; collect what the load left (and the previous model, frozen before), then keep the survivors out
        # of every later collection. This one collection, once a day, is the stall.
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        release_free_memory()
        if previous is not None and previous.version != model.version:
            retired = self.store.retire(previous.version, grace_s=600)
            log.info("model %s retired: its %d keys expire in 10 minutes", previous.version, retired)
        log.info(
            "serving model %s (%s, %d episodes) loaded in %.1fs",
            model.version,
            model.served.model_version,
            len(model.catalog),
            model.load_seconds,
        )
        if self.on_swap:
            self.on_swap(model)
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check_once()
            except NoModel as exc:
                self.holder.error = str(exc)
            except Exception as exc:  # keep serving the model we have; say why the new one did not load
                self.holder.error = f"loading the newest model failed: {type(exc).__name__}: {exc}"
                log.exception("loading the newest model failed")
            self._stop.wait(self.settings.serve_reload_s)


class EventFolder(BackgroundJob):
    """The user-events consumer of one replica (see the module docstring)."""

    def __init__(self, settings: Settings, store: ServingStore, holder: ModelHolder, metrics=None):
        super().__init__("podrec-event-folder")
        self.settings, self.store, self.holder, self.metrics = settings, store, holder, metrics
        self._positioned_for: tuple | None = None
        self._assigned: list[int] = []
        self.lag: int | None = None
        self.last_error: str | None = None
        self.folded_events = 0

    def _start_offsets(self, consumer, partitions: list[int], model: ServedModel) -> dict[int, int]:
        """Where this model's version resumes per partition: the store's offsets, else the day after its day."""
        from confluent_kafka import TopicPartition

        stored = self.store.offsets(model.version)
        missing = [p for p in partitions if p not in stored]
        if missing:
            after = datetime.combine(model.day + timedelta(days=1), datetime.min.time(), tzinfo=timezone.utc)
            ms = int(after.timestamp() * 1000)
            # the log ends first: a record appended between the two look-ups lies at or after them, never skipped
            ends = {
                p: consumer.get_watermark_offsets(TopicPartition(USER_EVENTS_TOPIC, p), timeout=10)[1] for p in missing
            }
            found = consumer.offsets_for_times([TopicPartition(USER_EVENTS_TOPIC, p, ms) for p in missing], timeout=10)
            for tp in found:
                stored[tp.partition] = tp.offset if tp.offset >= 0 else ends[tp.partition]
        return {p: stored[p] for p in partitions}

    def _run(self) -> None:
        from confluent_kafka import Consumer

        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.kafka_servers,
                "group.id": GROUP,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": max(1, self.settings.serve_poll_ms),
                "log_level": 3,
            }
        )

        def on_assign(c, partitions):
            # positioned by the loop (before it consumes anything), where the store's version says
            self._assigned = sorted(tp.partition for tp in partitions)
            self._positioned_for = None
            c.assign(partitions)

        def on_revoke(c, partitions):
            self._assigned = []

        consumer.subscribe([USER_EVENTS_TOPIC], on_assign=on_assign, on_revoke=on_revoke)
        last_lag = 0.0
        try:
            while not self._stop.is_set():
                try:
                    last_lag = self._step(consumer, last_lag)
                except Exception as exc:  # a server away: say so (readiness), wait, retry; never stop consuming
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.warning("user-events consumer: %s (retrying)", self.last_error)
                    self._stop.wait(1.0)
        finally:
            consumer.close()

    def _step(self, consumer, last_lag: float) -> float:
        """One round: (re)position after a model swap, consume a batch, fold it; returns when lag was measured."""
        from confluent_kafka import KafkaException, TopicPartition

        model = self.holder.model
        if model is None:
            consumer.poll(0.2)  # keep the group membership; nothing to fold into yet
            return last_lag
        publish_id = self.store.publish_id(model.version)
        if publish_id is None:
            # the store lost this version (a Redis restart): fold nothing until the watcher has written it again
            consumer.pause(consumer.assignment())
            self._positioned_for = None
            self._stop.wait(0.5)
            return last_lag
        position = (model.version, publish_id)
        if self._positioned_for != position:
            if not self._assigned:
                consumer.poll(0.2)  # the group has not given this replica partitions yet
                return last_lag
            # a new version, or this one written anew: read from the offsets the store holds for it, else from
            # the day after the model's day (nothing applied twice, nothing skipped)
            start = self._start_offsets(consumer, self._assigned, model)
            partitions = [TopicPartition(USER_EVENTS_TOPIC, p, o) for p, o in start.items()]
            consumer.resume(partitions)
            for tp in partitions:
                consumer.seek(tp)
            self._positioned_for = position
            log.info("user-events: reading model %s's events from offsets %s", model.version, start)
        try:
            messages = consumer.consume(num_messages=5000, timeout=self.settings.serve_poll_ms / 1000)
        except KafkaException as exc:
            self.last_error = str(exc)
            self._stop.wait(0.5)
            return last_lag
        if messages:
            try:
                self._fold(model, publish_id, messages)
            except StaleVersion:
                self._positioned_for = None  # rewritten meanwhile: re-read from what the store now holds
                return last_lag
            except Exception:
                self._rewind(consumer, messages)  # folded later, once the store answers: nothing is skipped
                raise
        if time.monotonic() - last_lag > 1.0:
            self._measure_lag(consumer)
            return time.monotonic()
        return last_lag

    @staticmethod
    def _rewind(consumer, messages) -> None:
        from confluent_kafka import TopicPartition

        first: dict[int, int] = {}
        for message in messages:
            if message.error() is None:
                first[message.partition()] = min(first.get(message.partition(), message.offset()), message.offset())
        for partition, offset in first.items():
            consumer.seek(TopicPartition(USER_EVENTS_TOPIC, partition, offset))

    def _fold(self, model: ServedModel, publish_id: str, messages) -> None:
        started = time.perf_counter()
        events, offsets, invalid = [], {}, 0
        for message in messages:
            if message.error() is not None:
                continue
            offsets[message.partition()] = message.offset() + 1
            try:
                events.append(parse_event(message.value()))
            except InvalidEvent:
                invalid += 1  # the batch's user_events writes it to dead_letters with the reason
        result = fold_events(self.settings, self.store, model, publish_id, events, offsets)
        log.debug(
            "folded %d events of %d listeners into %s (offsets %s)",
            result["events"],
            result["users"],
            model.version,
            offsets,
        )
        self.folded_events += result["events"]
        self.last_error = None
        if self.metrics is not None:
            self.metrics.folded(result["events"], result["users"], invalid, time.perf_counter() - started)

    def _measure_lag(self, consumer) -> None:
        from confluent_kafka import TopicPartition

        lag = 0
        try:
            for tp in consumer.position([TopicPartition(USER_EVENTS_TOPIC, p) for p in self._assigned]):
                _, high = consumer.get_watermark_offsets(
                    TopicPartition(USER_EVENTS_TOPIC, tp.partition), timeout=2, cached=False
                )
                lag += max(0, high - tp.offset) if tp.offset >= 0 else 0
        except Exception as exc:  # the broker went away: readiness says so
            self.last_error = f"measuring consumer lag: {exc}"
            return
        self.lag = lag
        self.last_error = None  # the broker answers again
        if self.metrics is not None:
            self.metrics.lag.set(lag)
