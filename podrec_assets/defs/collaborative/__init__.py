"""Collaborative area: implicit-feedback ALS over the rolling window of user_episode_daily."""

import dagster as dg

from podrec_assets.defs.collaborative.assets import als_top_n
from podrec_assets.defs.collaborative.checks import checks
from podrec_assets.settings import get_settings

defs = dg.Definitions(assets=[als_top_n], asset_checks=checks(get_settings()))
