"""Events area: Kafka `user-events` -> `user_events` (+ dead letters) -> `user_episode_daily`."""

import dagster as dg

from podrec_assets.defs.events.assets import listener_history, user_episode_daily, user_events
from podrec_assets.defs.events.checks import checks
from podrec_assets.settings import get_settings

defs = dg.Definitions(assets=[user_events, user_episode_daily, listener_history], asset_checks=checks(get_settings()))
