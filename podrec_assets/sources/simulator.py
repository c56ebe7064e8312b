"""The listening simulator: users with latent topic tastes produce `user-events` (history or live).

Model (deterministic by seed):

- The catalog is read from the `episode-metadata` topic (latest message per episode_id); an episode is
  listenable only from its ``published_at``; its ``categories`` are its topics.
- Each user likes 1 or 2 topics (weights 1.0, or 0.6/0.4), written to the Delta table
  ``simulated_user_tastes`` (user_id, topic, weight), replaced whole by every run; that is the ground
  truth an evaluation can compare recommendations with.
- Choice of episode: with probability ``TASTE_LOYALTY`` (0.8) from the user's liked topics, else from the
  whole catalog; within that, by popularity (Zipf over a seeded ranking) boosted for episodes published
  in the last 3 days.
- A user is active on a day with probability 0.6; an active user's event budget is Poisson(K x activity),
  where activity is a per-user log-normal factor with mean 1 and K = ``events_per_user_day``. The budget
  is spread over 1-3 sessions at diurnal times, each on one of the user's devices.
- One listen: ``play`` events close listening segments (from_sec -> to_sec, played_pct = to_sec /
  duration), a ``pause`` may split the listen, and it ends with ``complete`` (reached the end), ``skip``
  (abandoned early) or nothing; ``like`` and ``rate`` (rating 1-5; the only event with a rating) follow
  with probabilities that depend on whether the topic is liked. Liked topics are mostly completed,
  others mostly skipped, so behaviour and content agree.
- Late arrivals: a share ``late_share`` of events arrives after their day ended, half within the allowed
  lateness and half beyond it. Messages are produced in arrival order with the Kafka record timestamp
  set to the event time (the `user-events` contract, README).
- Malformed messages, ``malformed_share`` of the valid ones, spread evenly over the kinds
  ``invalid_json``, ``missing_field``, ``wrong_type``, ``unknown_episode``, ``future_timestamp`` (payload
  ts a year ahead; the record timestamp stays the send time, as a producer's clock would stamp it) and
  ``duplicate_event_id`` (an exact re-send of an earlier event).

Throughput (``bench/events.py``: ~31k events/s on 2 cores): each user's partition is fixed once (crc32 of
the key: one user's events stay in order on one partition), messages are formatted without building dicts,
generation runs in a forked child while this process produces, and the producer is librdkafka's
(``KafkaResource.producer``): kafka-python's Python send path alone capped the simulator near 13k/s.
"""

from __future__ import annotations

import random
import sys
import time
from datetime import date, timedelta

from podrec_assets.core.registry import TASTES_TABLE, USER_EVENTS_TOPIC
from podrec_assets.sources.event_messages import SimulationStats, encode, event_payload, ordered_messages, uuid4_of
from podrec_assets.sources.listening import DAY_MS, Episode, ListeningModel, User, read_catalog


def _producer(kafka):
    return kafka.producer(acks="1", linger_ms=50)


def _generate_in_child(
    connection, model, seed, days, events_per_user_day, malformed_share, late_share, lateness, now_ms
) -> None:
    """Forked child (inherits ``model``): generate and send chunks over ``connection``, overlapping the producer."""
    try:
        stats = SimulationStats()
        for chunk in ordered_messages(
            model, days, events_per_user_day, seed, malformed_share, late_share, lateness, now_ms, stats
        ):
            connection.send(("chunk", chunk))
        connection.send(("done", stats))
    except BaseException as exc:  # reported by the parent
        connection.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        connection.close()


def simulate_history(
    settings,
    days: list[date],
    users: int,
    events_per_user_day: float,
    seed: int,
    late_share: float = 0.002,
    progress: bool = False,
) -> dict:
    """Produce the listening history of ``days`` (event-time stamped) and write the users' true tastes.

    Generation runs in a child process and the producer in this one, so the two overlap. Returns counts:
    valid events per event day, malformed per kind, late arrivals within/beyond the allowed lateness,
    messages sent, elapsed seconds and messages per second.
    """
    import multiprocessing

    from podrec_assets.resources import build_resources

    resources = build_resources(settings)
    kafka, lake = resources["kafka"], resources["lake"]
    started = time.perf_counter()
    episodes = read_catalog(kafka)
    partitions = len(kafka.end_offsets(USER_EVENTS_TOPIC))
    if partitions == 0:
        raise ValueError(
            f"Kafka topic {USER_EVENTS_TOPIC!r} does not exist on {settings.kafka_servers}: run `podrec services start`"
        )
    model = ListeningModel(episodes, users, seed, partitions)
    tastes_uri = lake.replace_table(TASTES_TABLE, model.tastes_table())
    lateness = timedelta(minutes=settings.kafka_lateness_minutes)
    now_ms = int(time.time() * 1000)
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(
        target=_generate_in_child,
        daemon=True,
        args=(
            sender,
            model,
            seed,
            sorted(days),
            events_per_user_day,
            settings.malformed_share,
            late_share,
            lateness,
            now_ms,
        ),
    )
    child.start()
    sender.close()
    producer = _producer(kafka)
    bar = _progress_bar(progress, "events")
    stats: SimulationStats | None = None
    messages = 0
    try:
        while stats is None:
            try:
                kind, body = receiver.recv()
            except EOFError:
                raise RuntimeError("the event generator process ended without finishing") from None
            if kind == "error":
                raise RuntimeError(f"event generation failed: {body}")
            if kind == "done":
                stats = body
                break
            for ts_ms, key, value, partition in body:
                producer.send(USER_EVENTS_TOPIC, key=key, value=value, timestamp_ms=ts_ms, partition=partition)
            messages += len(body)
            bar.update(len(body))
        producer.flush()
    finally:
        producer.close()
        bar.close()
        receiver.close()
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    seconds = time.perf_counter() - started
    return {
        "days": [d.isoformat() for d in sorted(days)],
        "users": users,
        "episodes": len(episodes),
        "topics": len(model.topics),
        "valid_events": sum(stats.valid_by_day.values()),
        "valid_by_day": dict(sorted(stats.valid_by_day.items())),
        "malformed": stats.malformed,
        "late_within_lateness": stats.late_within,
        "late_beyond_lateness": stats.late_beyond,
        "messages": messages,
        "seconds": round(seconds, 3),
        "messages_per_second": round(messages / seconds, 1),
        "tastes_table": tastes_uri,
        "seed": seed,
    }


def simulate_follow(
    settings, users: int, rate: float, seed: int, duration_s: float | None = None, progress: bool = False
) -> dict:
    """Stream now-stamped events at ``rate`` per second until Ctrl-C (or ``duration_s``)."""
    from podrec_assets.resources import build_resources

    if rate <= 0:
        raise ValueError("--rate must be positive")
    resources = build_resources(settings)
    kafka, lake = resources["kafka"], resources["lake"]
    model = ListeningModel(read_catalog(kafka), users, seed, len(kafka.end_offsets(USER_EVENTS_TOPIC)) or 1)
    lake.replace_table(TASTES_TABLE, model.tastes_table())
    rng = random.Random(f"podrec-follow-{seed}")
    producer = _producer(kafka)
    bar = _progress_bar(progress, "events")
    started = time.monotonic()
    sent = 0
    queue: list[tuple[User, Episode, dict]] = []
    try:
        while duration_s is None or time.monotonic() - started < duration_s:
            due = int((time.monotonic() - started) * rate) - sent
            if due <= 0:
                time.sleep(0.02)
                continue
            now_ms = int(time.time() * 1000)
            for _ in range(due):
                if not queue:
                    user = rng.choice(model.users)
                    episode = model.pick(rng, user, now_ms, now_ms - now_ms % DAY_MS)
                    if episode is None:
                        raise ValueError("no episode is published yet: nothing to listen to")
                    queue = [
                        (user, episode, e) for e in model.listen(rng, user, episode, now_ms, rng.choice(user.devices))
                    ]
                user, episode, event = queue.pop(0)
                event["ts"] = now_ms
                payload = event_payload(uuid4_of(rng), user, episode.episode_id, event)
                producer.send(
                    USER_EVENTS_TOPIC,
                    key=user.key,
                    value=encode(payload),
                    timestamp_ms=now_ms,
                    partition=user.partition,
                )
            sent += due
            bar.update(due)
            producer.check()  # a live stream reports a failing broker at once, not at Ctrl-C
        producer.flush()
    except KeyboardInterrupt:
        producer.flush()  # Ctrl-C stops the stream; what was already sent still gets delivered
    finally:
        try:
            producer.close()
        finally:
            bar.close()
    seconds = time.monotonic() - started
    return {"messages": sent, "seconds": round(seconds, 3), "messages_per_second": round(sent / max(seconds, 1e-9), 1)}


def _progress_bar(enabled: bool, unit: str):
    from tqdm import tqdm

    return tqdm(unit=f" {unit}", unit_scale=True, disable=not enabled, file=sys.stderr, mininterval=0.5)
