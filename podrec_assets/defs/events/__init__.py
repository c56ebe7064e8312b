"""Events area: Kafka `user-events` -> `user_events` (+ dead letters) -> `user_episode_daily`."""

import dagster as dg

from podrec_assets.defs.events.assets import user_episode_daily, user_events

defs = dg.Definitions(assets=[user_events, user_episode_daily])
