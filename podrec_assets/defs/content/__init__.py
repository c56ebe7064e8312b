"""Content area: transcript embeddings and episode-to-episode similarities."""

import dagster as dg

from podrec_assets.defs.content.assets import episode_vectors, similarities
from podrec_assets.defs.content.checks import checks
from podrec_assets.settings import get_settings

defs = dg.Definitions(assets=[episode_vectors, similarities], asset_checks=checks(get_settings()))
