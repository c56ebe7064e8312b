"""Checks on the events area: engagement rows in range, and how many messages were malformed."""

import dagster as dg
import numpy as np

from podrec_assets.core.registry import USER_EVENTS_TOPIC
from podrec_assets.defs.checks import RowRule, dead_letter_share_check, finite_in, row_rule_check
from podrec_assets.settings import Settings


def _daily_rules(table, settings):
    bad_pct, _, _ = finite_in(table["max_played_pct"], 0.0, 1.0)
    counts = table["event_count"].to_numpy(zero_copy_only=False)
    return {"max_played_pct outside [0, 1]": bad_pct, "event_count < 1": int(np.sum(counts < 1))}


def checks(settings: Settings) -> list[dg.AssetChecksDefinition]:
    daily = RowRule(
        "user_episode_daily",
        "values_in_range",
        "Played fraction in [0, 1], at least one event per row.",
        _daily_rules,
    )
    return [row_rule_check(daily, settings), dead_letter_share_check(USER_EVENTS_TOPIC, settings)]
