"""Hybrid area: the fused recommendations and their day-by-day offline evaluation."""

import dagster as dg

from podrec_assets.defs.hybrid.assets import final_recommendations, recommendation_metrics

defs = dg.Definitions(assets=[final_recommendations, recommendation_metrics])
