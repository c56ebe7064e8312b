"""Ingest area: episode metadata from Kafka and Whisper transcripts (issue 3)."""

import dagster as dg

from podrec_assets.defs.ingest.assets import episodes_ingest, transcripts
from podrec_assets.defs.ingest.checks import checks
from podrec_assets.settings import get_settings

defs = dg.Definitions(assets=[episodes_ingest, transcripts], asset_checks=checks(get_settings()))
