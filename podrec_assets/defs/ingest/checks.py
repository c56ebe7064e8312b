"""Checks on the ingest area: transcripts with a known status, and how many catalog messages were malformed."""

import dagster as dg

from podrec_assets.core.registry import EPISODE_METADATA_TOPIC
from podrec_assets.defs.checks import RowRule, dead_letter_share_check, row_rule_check
from podrec_assets.settings import Settings


def _transcript_rules(table, settings):
    statuses = table["status"].to_pylist()
    return {
        "unknown status": sum(s not in {"ok", "failed", "skipped_language"} for s in statuses),
        "ok without text": sum(1 for s, t in zip(statuses, table["text"].to_pylist()) if s == "ok" and not t),
    }


def checks(settings: Settings) -> list[dg.AssetChecksDefinition]:
    transcripts = RowRule(
        "transcripts",
        "statuses_valid",
        "Status is ok/failed/skipped_language; an ok transcript has text.",
        _transcript_rules,
    )
    return [row_rule_check(transcripts, settings), dead_letter_share_check(EPISODE_METADATA_TOPIC, settings)]
