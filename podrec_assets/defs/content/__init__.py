"""Content area: transcript embeddings and episode-to-episode similarities."""

import dagster as dg

from podrec_assets.defs.content.assets import episode_vectors, similarities
from podrec_assets.defs.content.checks import episode_vectors_unit_length

defs = dg.Definitions(assets=[episode_vectors, similarities], asset_checks=[episode_vectors_unit_length])
