"""Hybrid area: the fused recommendations and their day-by-day offline evaluation."""

import dagster as dg

from podrec_assets.defs.hybrid.assets import final_recommendations, recommendation_metrics
from podrec_assets.defs.hybrid.checks import checks
from podrec_assets.settings import get_settings

defs = dg.Definitions(assets=[final_recommendations, recommendation_metrics], asset_checks=checks(get_settings()))
