"""Ingest area: episode metadata from Kafka and Whisper transcripts (issue 3)."""

import dagster as dg

from podrec_assets.defs.ingest.assets import episodes_ingest, transcripts

defs = dg.Definitions(assets=[episodes_ingest, transcripts])
