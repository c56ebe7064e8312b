"""Collaborative area: implicit-feedback ALS over the rolling window of user_episode_daily."""

import dagster as dg

from podrec_assets.defs.collaborative.assets import als_top_n

defs = dg.Definitions(assets=[als_top_n])
