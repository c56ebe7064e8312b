"""The one place podrec reads configuration from.

Every setting is an environment variable ``PODREC_*`` (or a line in a ``.env`` file in the working
directory); nothing else in the project reads the environment. ``podrec settings`` prints the table below
with the values in force. Defaults run the embedded local stack under ``.podrec/``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _setting(env: str, default: Any, help: str, secret: bool = False) -> Any:
    return field(default=default, metadata={"env": env, "help": help, "secret": secret})


@dataclass(frozen=True)
class Settings:
    # --- where state lives -------------------------------------------------------------------------
    home: str = _setting(
        "PODREC_HOME", ".podrec", "Directory for all local state: lake, services, Dagster, audio, logs."
    )
    lake_uri: str = _setting(
        "PODREC_LAKE_URI", "", "Delta lake root (local path or s3://, gs://, abfss://). Default: $PODREC_HOME/lake."
    )
    lake_storage_options: str = _setting(
        "PODREC_LAKE_STORAGE_OPTIONS", "", "JSON object of delta-rs storage options for object stores.", secret=True
    )

    # --- servers -----------------------------------------------------------------------------------
    kafka_bootstrap: str = _setting(
        "PODREC_KAFKA_BOOTSTRAP", "", "Use this Kafka (host:port,...) and start no broker. Empty: embedded broker."
    )
    kafka_port: int = _setting("PODREC_KAFKA_PORT", 19092, "Port of the embedded Kafka broker (127.0.0.1).")
    kafka_controller_port: int = _setting(
        "PODREC_KAFKA_CONTROLLER_PORT",
        0,
        "KRaft controller port of the embedded broker (127.0.0.1). 0: PODREC_KAFKA_PORT + 1.",
    )
    kafka_heap_mb: int = _setting(
        "PODREC_KAFKA_HEAP_MB", 1024, "JVM heap (-Xmx, MB) of the embedded Apache Kafka broker."
    )
    mongo_uri: str = _setting(
        "PODREC_MONGO_URI", "", "Use this MongoDB and start no server. Empty: embedded server.", secret=True
    )
    mongo_port: int = _setting("PODREC_MONGO_PORT", 27717, "Port of the embedded MongoDB server (127.0.0.1).")
    mongo_db: str = _setting("PODREC_MONGO_DB", "podrec", "MongoDB database name.")
    redis_url: str = _setting(
        "PODREC_REDIS_URL",
        "",
        "Use this Redis (redis://host:port/db) for podrec serve's shared state and start none. Empty: embedded server.",
        secret=True,
    )
    redis_port: int = _setting("PODREC_REDIS_PORT", 16379, "Port of the embedded Redis server (127.0.0.1).")
    redis_max_memory_mb: int = _setting(
        "PODREC_REDIS_MAX_MEMORY_MB",
        8192,
        "maxmemory of the embedded Redis: ~2.6 GB per 1M listeners, two model versions during a swap.",
    )
    serving_keep_days: int = _setting(
        "PODREC_SERVING_KEEP_DAYS",
        7,
        "Days of each served collection MongoDB keeps (the newest; Delta keeps every day). 0 keeps all.",
    )
    service_start_timeout_s: float = _setting(
        "PODREC_SERVICE_START_TIMEOUT_S", 30.0, "How long to wait for a started server to answer."
    )
    episode_topic_partitions: int = _setting(
        "PODREC_EPISODE_TOPIC_PARTITIONS", 1, "Partitions of episode-metadata and episode-ids."
    )
    user_events_partitions: int = _setting(
        "PODREC_USER_EVENTS_PARTITIONS", 3, "Partitions of user-events (at least 3)."
    )
    kafka_retention_ms: int = _setting(
        "PODREC_KAFKA_RETENTION_MS",
        -1,
        "retention.ms of the topics podrec creates (-1 keeps records forever; history is stamped with past event "
        "times).",
    )
    kafka_lateness_minutes: int = _setting(
        "PODREC_KAFKA_LATENESS_MINUTES", 60, "Allowed lateness: a day's Kafka range ends this long after midnight."
    )

    # --- orchestration and UI ----------------------------------------------------------------------
    start_date: str = _setting("PODREC_START_DATE", "2026-01-01", "First day partition of every asset (YYYY-MM-DD).")
    host: str = _setting(
        "PODREC_HOST", "127.0.0.1", "Address the Dagster UI, the Dash app and the recommendation API bind to."
    )
    dagster_port: int = _setting("PODREC_DAGSTER_PORT", 3000, "Dagster webserver port.")
    dash_port: int = _setting("PODREC_DASH_PORT", 8050, "Dash app port.")
    serve_port: int = _setting("PODREC_SERVE_PORT", 8060, "Port of the recommendation API (`podrec serve`).")
    serve_api_key: str = _setting(
        "PODREC_SERVE_API_KEY", "", "When set, POST /events needs this value in the X-API-Key header.", secret=True
    )
    serve_reload_s: float = _setting(
        "PODREC_SERVE_RELOAD_S", 30.0, "Seconds between podrec serve's checks for a new day's model in the lake."
    )
    serve_poll_ms: int = _setting(
        "PODREC_SERVE_POLL_MS", 50, "Longest wait of podrec serve's user-events consumer for a batch of records."
    )
    serve_list_ttl_days: int = _setting(
        "PODREC_SERVE_LIST_TTL_DAYS", 3, "Days Redis keeps a model version's lists and listener state after it loads."
    )
    max_concurrent_runs: int = _setting("PODREC_MAX_CONCURRENT_RUNS", 2, "Dagster run queue limit (2 suits 2 cores).")
    sensor_interval_s: int = _setting(
        "PODREC_SENSOR_INTERVAL_S", 30, "Seconds between Kafka sensor ticks (and automation evaluations)."
    )
    sensor_scan_limit: int = _setting(
        "PODREC_SENSOR_SCAN_LIMIT",
        20000,
        "New records per partition a Kafka sensor reads exactly; above this it bisects offsets_for_times by day.",
    )
    automation_lookback_days: int = _setting(
        "PODREC_AUTOMATION_LOOKBACK_DAYS",
        2,
        "Day partitions (ending today) that declarative automation keeps up to date.",
    )
    model_cron: str = _setting(
        "PODREC_MODEL_CRON",
        "",
        "Cron for the model assets (als_top_n, final_recommendations, metrics). Empty: eager, like the rest.",
    )
    freshness_warn_minutes: int = _setting(
        "PODREC_FRESHNESS_WARN_MINUTES",
        1560,
        "Default freshness: WARN when an asset has not materialized for this long (26 h).",
    )
    freshness_fail_minutes: int = _setting(
        "PODREC_FRESHNESS_FAIL_MINUTES", 2160, "Default freshness: FAIL after this long (36 h)."
    )
    freshness_live_warn_minutes: int = _setting(
        "PODREC_FRESHNESS_LIVE_WARN_MINUTES",
        180,
        "Freshness of Kafka topics and Kafka-fed assets: WARN after this long.",
    )
    freshness_live_fail_minutes: int = _setting(
        "PODREC_FRESHNESS_LIVE_FAIL_MINUTES",
        720,
        "Freshness of Kafka topics and Kafka-fed assets: FAIL after this long.",
    )
    als_ndcg_tolerance: float = _setting(
        "PODREC_ALS_NDCG_TOLERANCE",
        0.05,
        "Blocking check: a new ALS model may score this much nDCG@10 below the previous day's model on the same "
        "held-out day (or two standard errors, if larger).",
    )
    dead_letter_warn_share: float = _setting(
        "PODREC_DEAD_LETTER_WARN_SHARE", 0.05, "Check warns when dead letters exceed this share of a day's messages."
    )

    # --- batch engine ------------------------------------------------------------------------------
    engine: str = _setting(
        "PODREC_ENGINE", "local", "Batch engine: local (DuckDB + implicit) or spark (Spark SQL + Spark ML)."
    )
    spark_master: str = _setting("PODREC_SPARK_MASTER", "local[2]", "spark.master URL for engine=spark.")
    spark_driver_memory: str = _setting("PODREC_SPARK_DRIVER_MEMORY", "2g", "spark.driver.memory.")
    spark_jars_dir: str = _setting(
        "PODREC_SPARK_JARS_DIR",
        "",
        "Folder of Spark's Delta Lake and Kafka connector jars (make setup fills it from Maven Central). Default: "
        ".podrec/spark/jars in the project.",
    )
    spark_driver_host: str = _setting(
        "PODREC_SPARK_DRIVER_HOST",
        "127.0.0.1",
        "spark.driver.host: the name executors reach the driver by (compose: code-location); the driver listens "
        "on all interfaces when it is not 127.0.0.1.",
    )

    # --- speech recognition ------------------------------------------------------------------------
    asr_model: str = _setting(
        "PODREC_ASR_MODEL", "tiny.en", "Whisper model: tiny.en, base, or a CTranslate2 model directory."
    )
    asr_workers: int = _setting(
        "PODREC_ASR_WORKERS", 1, "Episodes transcribed in parallel (each uses asr_threads cores)."
    )
    asr_threads: int = _setting("PODREC_ASR_THREADS", 2, "CPU threads per transcription.")
    asr_batch_size: int = _setting(
        "PODREC_ASR_BATCH_SIZE",
        8,
        "Speech chunks decoded together (faster-whisper's batched pipeline); 1 decodes them one by one.",
    )
    languages: str = _setting(
        "PODREC_LANGUAGES", "en", "Comma-separated languages to transcribe; others are skipped_language."
    )
    audio_max_mb: int = _setting("PODREC_AUDIO_MAX_MB", 200, "Largest audio file fetched.")
    audio_timeout_s: int = _setting("PODREC_AUDIO_TIMEOUT_S", 120, "Time limit to fetch one audio file.")
    audio_retries: int = _setting("PODREC_AUDIO_RETRIES", 3, "Attempts to fetch one audio file.")
    transcript_max_mb: int = _setting(
        "PODREC_TRANSCRIPT_MAX_MB", 20, "Largest publisher transcript fetched; a bigger one sends the episode to ASR."
    )
    transcript_timeout_s: int = _setting(
        "PODREC_TRANSCRIPT_TIMEOUT_S", 30, "Time limit to fetch one publisher transcript (retries as for audio)."
    )

    # --- content model -----------------------------------------------------------------------------
    embed_model: str = _setting(
        "PODREC_EMBED_MODEL", "", "sentence-transformers model directory. Default: all-MiniLM-L6-v2 from its wheel."
    )
    embed_chunk_overlap: int = _setting(
        "PODREC_EMBED_CHUNK_OVERLAP", 32, "Tokens shared by consecutive transcript chunks."
    )
    embed_batch_size: int = _setting("PODREC_EMBED_BATCH_SIZE", 32, "Chunks encoded per batch.")
    similarity_k: int = _setting("PODREC_SIMILARITY_K", 10, "Neighbours kept per episode.")
    knn_block_size: int = _setting(
        "PODREC_KNN_BLOCK_SIZE", 4096, "Catalog rows compared per block in exact KNN (bounds memory)."
    )

    # --- engagement weights (see README: how engagement is scored) ---------------------------------
    weight_complete: float = _setting("PODREC_WEIGHT_COMPLETE", 3.0, "Weight of a complete event.")
    weight_like: float = _setting("PODREC_WEIGHT_LIKE", 2.0, "Weight of a like event.")
    weight_play_high: float = _setting(
        "PODREC_WEIGHT_PLAY_HIGH", 3.0, "Weight of a play that covered more than play_high_pct."
    )
    weight_play_low: float = _setting(
        "PODREC_WEIGHT_PLAY_LOW", 0.5, "Weight of a play that covered less than play_low_pct."
    )
    weight_play_mid: float = _setting("PODREC_WEIGHT_PLAY_MID", 1.0, "Weight of any other play.")
    weight_skip: float = _setting("PODREC_WEIGHT_SKIP", 0.2, "Weight of a skip event.")
    weight_pause: float = _setting("PODREC_WEIGHT_PAUSE", 0.0, "Weight of a pause event.")
    play_high_pct: float = _setting(
        "PODREC_PLAY_HIGH_PCT", 0.8, "Played fraction above which a play is a strong signal."
    )
    play_low_pct: float = _setting("PODREC_PLAY_LOW_PCT", 0.2, "Played fraction below which a play is a weak signal.")

    # --- collaborative model -----------------------------------------------------------------------
    als_window_days: int = _setting(
        "PODREC_ALS_WINDOW_DAYS", 7, "W: days of user_episode_daily an ALS model trains on."
    )
    als_factors: int = _setting("PODREC_ALS_FACTORS", 64, "ALS latent factors.")
    als_regularization: float = _setting("PODREC_ALS_REGULARIZATION", 0.05, "ALS L2 regularisation.")
    als_iterations: int = _setting("PODREC_ALS_ITERATIONS", 15, "ALS iterations.")
    als_confidence_alpha: float = _setting(
        "PODREC_ALS_CONFIDENCE_ALPHA", 10.0, "Confidence = 1 + alpha * log1p(engagement)."
    )
    als_seed: int = _setting("PODREC_ALS_SEED", 42, "ALS random seed.")
    als_threads: int = _setting("PODREC_ALS_THREADS", 2, "CPU threads of the implicit ALS solver (engine=local).")

    # --- fusion ------------------------------------------------------------------------------------
    top_n: int = _setting("PODREC_TOP_N", 10, "Recommendations per user (and ALS candidates kept per user).")
    fusion_alpha: float = _setting(
        "PODREC_FUSION_ALPHA",
        0.7,
        "alpha for episodes older than fusion_alpha_ramp_days: final = a*als + (1-a)*content.",
    )
    fusion_alpha_new: float = _setting("PODREC_FUSION_ALPHA_NEW", 0.1, "alpha for an episode published today.")
    fusion_alpha_ramp_days: int = _setting(
        "PODREC_FUSION_ALPHA_RAMP_DAYS", 3, "Days over which alpha rises linearly from alpha_new to alpha."
    )
    history_days: int = _setting("PODREC_HISTORY_DAYS", 7, "Days of a user's listening used as content history.")
    metrics_k: int = _setting("PODREC_METRICS_K", 10, "k of the ranking metrics.")
    fusion_alpha_select: str = _setting(
        "PODREC_FUSION_ALPHA_SELECT",
        "validate",
        "validate: pick alpha/alpha_new/ramp on earlier days (lists for V judged on V+1, V < D) and keep the "
        "settings unless the best curve beats them by more than two standard errors; fixed: use the settings.",
    )
    fusion_validation_days: int = _setting(
        "PODREC_FUSION_VALIDATION_DAYS",
        3,
        "With alpha selection: how many earlier days (lists for V judged on V+1) are pooled to choose the curve.",
    )
    fusion_validation_users: int = _setting(
        "PODREC_FUSION_VALIDATION_USERS",
        20000,
        "With alpha selection: at most this many listeners judged per validation day (a stable sample; 0: all).",
    )
    content_candidates: int = _setting(
        "PODREC_CONTENT_CANDIDATES",
        20,
        "Content candidates per user (nearest catalog episodes to the user's history) joined with the ALS top-N.",
    )
    als_validation_users: int = _setting(
        "PODREC_ALS_VALIDATION_USERS",
        20000,
        "The ALS gate's validation scores at most this many of the listeners it can judge (a stable sample; 0: all).",
    )
    metrics_users: int = _setting(
        "PODREC_METRICS_USERS",
        50000,
        "recommendation_metrics judges the lists of at most this many listeners (a stable sample; 0: all).",
    )
    content_neighbours: int = _setting(
        "PODREC_CONTENT_NEIGHBOURS",
        30,
        "Content candidates come from each history episode's this many nearest catalog episodes (a user's cost "
        "does not grow with the catalog); 0: exact search of the whole catalog for every user.",
    )
    positive_engagement: float = _setting(
        "PODREC_POSITIVE_ENGAGEMENT",
        2.0,
        "A (user, episode, day) is a positive engagement when completed or engagement >= this; also what counts "
        "as listening history.",
    )
    popularity_half_life_days: float = _setting(
        "PODREC_POPULARITY_HALF_LIFE_DAYS",
        2.0,
        "Recent popularity = positive users per episode, each day weighted 0.5^(age/half-life).",
    )

    # --- sources -----------------------------------------------------------------------------------
    podcastindex_api_key: str = _setting("PODCASTINDEX_API_KEY", "", "PodcastIndex API key.", secret=True)
    podcastindex_api_secret: str = _setting("PODCASTINDEX_API_SECRET", "", "PodcastIndex API secret.", secret=True)
    podcastindex_base_url: str = _setting(
        "PODREC_PODCASTINDEX_URL", "https://api.podcastindex.org/api/1.0", "PodcastIndex API base URL."
    )
    user_agent: str = _setting("PODREC_USER_AGENT", "podrec/0.1", "User-Agent sent to feeds and APIs.")

    # --- demo --------------------------------------------------------------------------------------
    demo_days: int = _setting("PODREC_DEMO_DAYS", 7, "Days of demo history, ending yesterday.")
    demo_episodes_per_day: int = _setting("PODREC_DEMO_EPISODES_PER_DAY", 8, "Demo episodes published per day.")
    demo_speech_seconds: int = _setting(
        "PODREC_DEMO_SPEECH_SECONDS", 40, "Longest synthesised speech per demo episode."
    )
    demo_users: int = _setting("PODREC_DEMO_USERS", 2000, "Simulated users.")
    demo_events_per_user_day: float = _setting(
        "PODREC_DEMO_EVENTS_PER_USER_DAY", 6.0, "Mean events per active user per day."
    )
    malformed_share: float = _setting(
        "PODREC_MALFORMED_SHARE", 0.005, "Share of malformed messages the simulator emits."
    )
    seed: int = _setting("PODREC_SEED", 7, "Seed of the demo catalog and the event simulator.")

    # ------------------------------------------------------------------------------------------------
    @property
    def home_path(self) -> Path:
        return Path(self.home).expanduser().resolve()

    @property
    def lake_root(self) -> str:
        return self.lake_uri or str(self.home_path / "lake")

    @property
    def spark_jars_path(self) -> Path:
        return (
            Path(self.spark_jars_dir).expanduser().resolve()
            if self.spark_jars_dir
            else PROJECT_ROOT / ".podrec" / "spark" / "jars"
        )

    @property
    def services_dir(self) -> Path:
        return self.home_path / "services"

    @property
    def dagster_home(self) -> Path:
        return self.home_path / "dagster"

    @property
    def audio_dir(self) -> Path:
        return self.home_path / "audio"

    @property
    def kafka_external(self) -> bool:
        return bool(self.kafka_bootstrap)

    @property
    def mongo_external(self) -> bool:
        return bool(self.mongo_uri)

    @property
    def kafka_controller_listen_port(self) -> int:
        return self.kafka_controller_port or self.kafka_port + 1

    @property
    def kafka_servers(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    @property
    def mongo_url(self) -> str:
        return self.mongo_uri or f"mongodb://127.0.0.1:{self.mongo_port}/?directConnection=true"

    @property
    def serve_url(self) -> str:
        """Where the recommendation API (`podrec serve`) answers."""
        return f"http://{self.host}:{self.serve_port}"

    @property
    def redis_external(self) -> bool:
        return bool(self.redis_url)

    @property
    def redis_server_url(self) -> str:
        return self.redis_url or f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def language_list(self) -> list[str]:
        return [lang.strip() for lang in self.languages.split(",") if lang.strip()]

    @property
    def start_day(self) -> date:
        return date.fromisoformat(self.start_date)

    def describe(self) -> list[dict[str, str]]:
        """Rows for `podrec settings` and the README: env var, value in force (secrets masked), help."""
        rows = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            shown = ("***" if value else "") if f.metadata["secret"] else str(value)
            rows.append(
                {"env": f.metadata["env"], "value": shown, "default": str(f.default), "help": f.metadata["help"]}
            )
        return rows


def _coerce(raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw


def load_settings(environ: dict[str, str] | None = None, dotenv_path: Path | None = None) -> Settings:
    """Build Settings from the environment, with a ``.env`` file (working directory) filling the gaps."""
    env = dict(os.environ if environ is None else environ)
    dotenv_file = dotenv_path or Path.cwd() / ".env"
    if environ is None and dotenv_file.is_file():
        from dotenv import dotenv_values

        for key, value in dotenv_values(dotenv_file).items():
            if value is not None:
                env.setdefault(key, value)
    values = {}
    for f in dataclasses.fields(Settings):
        raw = env.get(f.metadata["env"])
        if raw is not None and raw != "":
            try:
                values[f.name] = _coerce(raw, f.default)
            except ValueError as exc:
                raise ValueError(f"{f.metadata['env']}={raw!r} is not a valid {type(f.default).__name__}") from exc
    settings = Settings(**values)
    if settings.engine not in {"local", "spark"}:
        raise ValueError(f"PODREC_ENGINE must be 'local' or 'spark', not {settings.engine!r}")
    if settings.serving_keep_days < 0:
        raise ValueError(f"PODREC_SERVING_KEEP_DAYS must be 0 (keep all) or more, not {settings.serving_keep_days}")
    if settings.fusion_validation_days < 1:
        raise ValueError(f"PODREC_FUSION_VALIDATION_DAYS must be at least 1, not {settings.fusion_validation_days}")
    _ = settings.start_day  # parsing it validates the date
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return load_settings()


def child_environment(settings: Settings) -> dict[str, str]:
    """Environment for processes podrec starts (Dagster, Dash): the current one with PODREC_HOME pinned."""
    env = dict(os.environ)
    env["PODREC_HOME"] = str(settings.home_path)
    env["DAGSTER_HOME"] = str(settings.dagster_home)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    return env
