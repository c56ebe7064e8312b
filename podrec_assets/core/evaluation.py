"""Offline evaluation: the lists made for day D−1 judged against what users did on day D.

Definitions (ranking metrics are ``core.metrics``, Microsoft Recommenders' ``python_evaluation``):

- **Positive engagement** on D: a (user, episode) row of ``user_episode_daily[D]`` that is completed or has
  engagement >= ``positive_engagement`` (default 2.0 = a like, a >80 % play or a completion; skips and short
  plays are not positive). Episodes the user had already engaged with in the history window up to D−1 are
  removed from the truth: every model excludes them from its list by design, so they would only add noise.
- **Users evaluated**: users with at least one relevant episode on D AND a list from every model, so all
  models are scored on the same users (Recommenders' "common users" rule, applied across models).
- **new episodes** variants (``ndcg@k/new`` ...): the truth restricted to episodes published on D−1 — the ones
  ALS had (almost) no behaviour for when it ranked them.
- **coverage**: distinct recommended episodes / catalog episodes published by D−1 (Recommenders
  ``catalog_coverage``).
- **novelty**: mean over recommended (user, episode) of −log2(share of window users who engaged with the
  episode); never-engaged episodes count as engaged by one user (Recommenders ``novelty`` with smoothing).
- **diversity**: mean over users of the mean pairwise (1 − cosine) between the embeddings of the top-k
  (intra-list diversity; Recommenders ``diversity`` with item features instead of co-occurrence).
- **taste_match@k**: from the simulator's true tastes (user, topic, weight): mean over users of the mean over
  the top-k of weight(user, episode's topic) / the user's largest weight — 1 means every episode is on the
  user's favourite topic. An episode's topic weight is the max over its categories.
"""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import pandas as pd

from podrec_assets.core.content_candidates import ContentIndex
from podrec_assets.core.fusion import AlphaCurve, PreparedDay, empty_recommendations, recommend
from podrec_assets.core.metrics import ideal_dcg, ranking_metrics, standard_error
from podrec_assets.core.popularity import fill_with_popular, positive_mask

USER, ITEM = "user_id", "episode_id"
MODELS = ("popularity", "als", "content", "hybrid")


def relevant_pairs(daily_next: pd.DataFrame, min_engagement: float, already_seen: pd.DataFrame) -> pd.DataFrame:
    """The truth: positive (user, episode) pairs of the evaluated day, minus pairs seen before it."""
    if daily_next.empty:
        return pd.DataFrame({USER: pd.Series(dtype=object), ITEM: pd.Series(dtype=object)})
    positive = daily_next[positive_mask(daily_next, min_engagement)][[USER, ITEM]].drop_duplicates()
    if already_seen.empty:
        return positive.reset_index(drop=True)
    merged = positive.merge(
        already_seen[[USER, ITEM]].drop_duplicates().assign(_seen=True), on=[USER, ITEM], how="left"
    )
    return merged[merged["_seen"].isna()][[USER, ITEM]].reset_index(drop=True)


def top_k(recommended: pd.DataFrame, k: int) -> pd.DataFrame:
    ordered = recommended.sort_values([USER, "rank"], kind="mergesort")
    return ordered[ordered.groupby(USER, sort=False).cumcount() < k]


def catalog_coverage(recommended: pd.DataFrame, catalog_size: int, k: int) -> float:
    if catalog_size <= 0:
        return 0.0
    return float(top_k(recommended, k)[ITEM].nunique() / catalog_size)


def engaged_users(interactions: pd.DataFrame) -> tuple[pd.Series, int]:
    """(distinct users per episode, distinct users) of ``interactions``, counted on integer codes: a million
    listeners' window is tens of millions of rows."""
    users, _ = pd.factorize(interactions[USER])
    items, ids = pd.factorize(interactions[ITEM])
    known = (users >= 0) & (items >= 0)
    pairs = np.unique(users[known].astype(np.int64) * max(len(ids), 1) + items[known])
    per_item = np.bincount(pairs % max(len(ids), 1), minlength=len(ids))
    return pd.Series(per_item, index=ids), int(len(np.unique(users[users >= 0])))


def novelty(
    recommended: pd.DataFrame, interactions: pd.DataFrame, k: int, engaged: tuple[pd.Series, int] | None = None
) -> float:
    """Mean self-information −log2(p(i)) of recommended episodes, p(i) = engaged users of i / all users.
    ``engaged``: ``engaged_users(interactions)`` when the caller has it (several lists judged on one window)."""
    top = top_k(recommended, k)
    if top.empty or interactions.empty:
        return 0.0
    users_per_item, n_users = engaged if engaged is not None else engaged_users(interactions)
    counts = top[ITEM].map(users_per_item).fillna(1.0).clip(lower=1.0)
    return float((-np.log2(counts / n_users)).mean())


DIVERSITY_BLOCK_USERS = 50_000


def intra_list_diversity(recommended: pd.DataFrame, index: ContentIndex, k: int) -> float:
    """Mean over users (with >= 2 embedded episodes in the top-k) of the mean pairwise 1 − cosine.

    The pairs' cosines of n vectors with sum s add up to (|s|² − Σ|v|²) / 2, so each user's vector sum (a sparse
    users × episodes count matrix times the catalog's vectors) gives every user's mean without a loop or an n×n
    matrix; DIVERSITY_BLOCK_USERS users at a time, so memory stays bounded at any number of listeners."""
    from scipy import sparse

    top = top_k(recommended, k)
    if top.empty or len(index) == 0:
        return 0.0
    positions = pd.Index(index.ids).get_indexer(top[ITEM])
    known = positions >= 0
    if not known.any():
        return 0.0
    codes, _ = pd.factorize(top[USER].to_numpy(dtype=object)[known], sort=True)
    positions = positions[known]
    vectors = index.matrix.astype(np.float64)
    squared_norms = (vectors**2).sum(axis=1)
    counts = np.bincount(codes)
    squares = np.bincount(codes, weights=squared_norms[positions])
    values = []
    for first in range(0, len(counts), DIVERSITY_BLOCK_USERS):
        last = min(first + DIVERSITY_BLOCK_USERS, len(counts))
        mine = (codes >= first) & (codes < last)
        picks = sparse.csr_matrix(
            (np.ones(int(mine.sum())), (codes[mine] - first, positions[mine])), shape=(last - first, len(index))
        )
        sums = np.asarray(picks @ vectors)
        n = counts[first:last].astype(np.float64)
        scored = n >= 2
        pair_cosines = ((sums[scored] ** 2).sum(axis=1) - squares[first:last][scored]) / 2.0
        values.append(1.0 - pair_cosines / (n[scored] * (n[scored] - 1) / 2.0))
    values = np.concatenate(values)
    return float(np.mean(values)) if len(values) else 0.0


def taste_match(recommended: pd.DataFrame, tastes: pd.DataFrame, categories: pd.Series, k: int) -> tuple[float, int]:
    """(mean normalised taste weight of the top-k, users scored). ``categories``: list of topics by episode_id.

    A recommended episode scores the user's best weight among its topics (0 when none is liked), over the user's
    best weight of all; joins over the rows, no loop per user."""
    top = top_k(recommended, k)
    if top.empty or tastes.empty:
        return 0.0, 0
    tastes = tastes.drop_duplicates([USER, "topic"], keep="last")
    best = tastes.groupby(USER)["weight"].max()
    rows = top[[USER, ITEM]].reset_index(drop=True)
    rows = rows[rows[USER].map(best).fillna(0.0) > 0]
    if rows.empty:
        return 0.0, 0
    topics = categories.dropna().explode().dropna().rename("topic")
    pairs = rows.reset_index().merge(topics.rename_axis(ITEM).reset_index(), on=ITEM, how="inner")
    pairs = pairs.merge(tastes[[USER, "topic", "weight"]], on=[USER, "topic"], how="inner")
    weight = pairs.groupby("index")["weight"].max().reindex(rows.index).fillna(0.0).clip(lower=0.0)
    per_row = weight.to_numpy() / rows[USER].map(best).to_numpy()
    per_user = pd.Series(per_row).groupby(rows[USER].to_numpy()).mean()
    return float(per_user.mean()), len(per_user)


def popularity_lists(prepared: PreparedDay, users, k: int) -> pd.DataFrame:
    """The popularity baseline: the recent popular episodes each user has not engaged with."""
    return fill_with_popular(empty_recommendations(), users, prepared.popular, prepared.excluded, k)


def content_lists(prepared: PreparedDay, top_n: int) -> pd.DataFrame:
    """The content-only baseline: content candidates ranked by content score alone (α = 0 everywhere)."""
    only_content = prepared.normalised[prepared.normalised["in_content"]]
    fused = PreparedDay(
        prepared.day,
        only_content,
        prepared.age_days,
        [],
        prepared.popular,
        prepared.excluded,
        prepared.history,
        prepared.index,
    )
    return recommend(fused, AlphaCurve(0.0, 0.0, 0), top_n)


def evaluate_models(
    lists: dict[str, pd.DataFrame],
    relevant: pd.DataFrame,
    relevant_new: pd.DataFrame,
    k: int,
    catalog_size: int,
    interactions: pd.DataFrame,
    index: ContentIndex,
    tastes: pd.DataFrame | None = None,
    categories: pd.Series | None = None,
) -> pd.DataFrame:
    """Long table model, metric, k, value, users_evaluated for every model's list (same users for all)."""
    users = set(relevant[USER])
    for recs in lists.values():
        users &= set(recs[USER])
    truth = relevant[relevant[USER].isin(users)]
    truth_new = relevant_new[relevant_new[USER].isin(users)]
    rows = []
    engaged = engaged_users(interactions) if len(interactions) else None
    for model, recs in lists.items():
        judged = recs[recs[USER].isin(users)]
        for name, value in _ranking(judged, truth, k).items():
            rows.append((model, name, k, value, len(users)))
        new_scores = ranking_metrics(judged, truth_new, k)
        for name in (f"recall@{k}", f"ndcg@{k}", f"precision@{k}"):
            rows.append((model, f"{name}/new", k, new_scores[name], new_scores["users"]))
        all_users = recs[USER].nunique()
        rows.append((model, "coverage", k, catalog_coverage(recs, catalog_size, k), all_users))
        rows.append((model, "novelty", k, novelty(recs, interactions, k, engaged), all_users))
        rows.append((model, "diversity", k, intra_list_diversity(recs, index, k), all_users))
        if tastes is not None and categories is not None and not tastes.empty:
            value, scored = taste_match(recs, tastes, categories, k)
            rows.append((model, f"taste_match@{k}", k, value, scored))
    return pd.DataFrame(rows, columns=["model", "metric", "k", "value", "users_evaluated"])


def _ranking(recs: pd.DataFrame, truth: pd.DataFrame, k: int) -> dict[str, float]:
    scores = ranking_metrics(recs, truth, k)
    scores.pop("users")
    return scores


def ndcg_by_curve(
    prepared: PreparedDay, relevant: pd.DataFrame, curves: list[AlphaCurve], top_n: int, k: int
) -> dict[AlphaCurve, pd.Series]:
    """``ndcg_per_user(recommend(prepared, curve, top_n), relevant, k)`` for every curve, as array work.

    What α changes is only the order of each user's candidates: which users get a list, how many fused rows
    each has and the popular fill after them do not depend on it, so one ``recommend`` gives the fill's hits
    and each curve only ranks the relevant candidates among their user's candidates (same scores, same
    tie-break by episode id as ``fuse``). The grid then costs a few array passes per curve, not a fusion each.
    """
    base = recommend(prepared, curves[0], top_n)
    truth = relevant[[USER, ITEM]].drop_duplicates()
    common = pd.Index(pd.unique(base[USER])).intersection(pd.Index(pd.unique(truth[USER])))
    if common.empty:
        return {curve: pd.Series(dtype=float) for curve in curves}
    truth = truth[truth[USER].isin(common)]
    actual = truth.groupby(USER).size()
    ideal = ideal_dcg(actual, k).to_numpy()
    fill = base[(base["reason"] == "popular") & (base["rank"] <= k)].merge(truth, on=[USER, ITEM])
    fill_dcg = (1.0 / np.log2(fill["rank"] + 1)).groupby(fill[USER]).sum().reindex(actual.index, fill_value=0.0)

    # each user's candidates as one row of a matrix, columns in episode id order (fuse's tie-break)
    candidates = prepared.normalised
    candidates = candidates[candidates[USER].isin(common)].sort_values([USER, ITEM], kind="mergesort")
    row = actual.index.get_indexer(candidates[USER])
    column = candidates.groupby(USER, sort=False).cumcount().to_numpy()
    shape = (len(actual), int(column.max()) + 1 if len(column) else 1)
    als, content, age = (np.zeros(shape), np.zeros(shape), np.full(shape, np.nan))
    als[row, column] = candidates["als_norm"].to_numpy(dtype=float)
    content[row, column] = candidates["content_norm"].to_numpy(dtype=float)
    age[row, column] = candidates[ITEM].map(prepared.age_days).astype(float).to_numpy()
    present = np.zeros(shape, dtype=bool)
    present[row, column] = True
    is_hit = candidates.merge(truth.assign(_hit=True), on=[USER, ITEM], how="left")["_hit"].notna().to_numpy()
    hit_row, hit_column = row[is_hit], column[is_hit]
    earlier = np.arange(shape[1])[None, :] < hit_column[:, None]  # ties go to the smaller episode id

    out = {}
    for curve in curves:
        alpha = curve.at(np.where(np.isnan(age), float(curve.ramp_days), age))
        score = np.where(present, alpha * als + (1 - alpha) * content, -np.inf)
        mine = score[hit_row]
        own = score[hit_row, hit_column][:, None]
        rank = 1 + (mine > own).sum(axis=1) + ((mine == own) & earlier).sum(axis=1)
        kept = rank <= min(k, top_n)
        dcg = np.bincount(hit_row[kept], weights=1.0 / np.log2(rank[kept] + 1), minlength=len(actual))
        out[curve] = pd.Series((dcg + fill_dcg.to_numpy()) / ideal, index=actual.index)
    return out


DEFAULT_ALPHA_GRID = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
DEFAULT_ALPHA_NEW_GRID = (0.0, 0.1, 0.3, 0.5)
DEFAULT_RAMP_GRID = (1, 3)


def select_alpha(
    validations: list[tuple[PreparedDay, pd.DataFrame]],
    top_n: int,
    k: int,
    default: AlphaCurve,
    alphas=DEFAULT_ALPHA_GRID,
    alpha_news=DEFAULT_ALPHA_NEW_GRID,
    ramps=DEFAULT_RAMP_GRID,
    min_users: int = 20,
    min_gain_stderrs: float = 2.0,
) -> tuple[AlphaCurve, pd.DataFrame, str]:
    """Grid-search the α curve on validation pairs (lists for day V judged against day V+1), pooled.

    ``validations``: (prepared day V, relevant pairs of V+1) for one or more days V before the day being
    recommended. Each user's nDCG@k is averaged over the days they were judged on, and a curve's score is the
    mean over users (a user judged on three days is one observation, not three). The best curve replaces the
    settings' only when its gain over them, paired per user, exceeds ``min_gain_stderrs`` standard errors: on a
    few hundred users most of the grid is within noise, and the best of ~50 noisy gains easily clears one
    standard error by chance (two are a guard against that, not a full multiple-comparison correction). With
    fewer than ``min_users`` judged users the settings are kept.

    Returns (chosen curve, evidence table: alpha, alpha_new, ramp_days, ndcg@k, users, gain_vs_settings,
    gain_stderr, best first, and why).
    """
    curves = list(dict.fromkeys([AlphaCurve(a, an, r) for a, an, r in product(alphas, alpha_news, ramps)] + [default]))
    per_curve: dict[AlphaCurve, list[pd.Series]] = {curve: [] for curve in curves}
    for validation, relevant in validations:
        # only users with something relevant can score: fuse just their candidates (same result, less work)
        judged_users = set(relevant[USER])
        subset = PreparedDay(
            validation.day,
            validation.normalised[validation.normalised[USER].isin(judged_users)],
            validation.age_days,
            [u for u in validation.users if u in judged_users],
            validation.popular,
            validation.excluded[validation.excluded[USER].isin(judged_users)],
            validation.history,
            validation.index,
        )
        for curve, scores in ndcg_by_curve(subset, relevant, curves, top_n, k).items():
            per_curve[curve].append(scores)
    # one value per user: the mean of their nDCG over the validation days they were judged on
    pooled = {
        curve: pd.concat(parts).groupby(level=0).mean() if parts else pd.Series(dtype=float)
        for curve, parts in per_curve.items()
    }
    settings_scores = pooled[default]
    rows = []
    for curve, scores in pooled.items():
        common = scores.index.intersection(settings_scores.index)
        gain = scores[common] - settings_scores[common]
        rows.append(
            {
                "alpha": curve.alpha,
                "alpha_new": curve.alpha_new,
                "ramp_days": curve.ramp_days,
                f"ndcg@{k}": float(scores.mean()) if len(scores) else float("nan"),
                "users": len(scores),
                "gain_vs_settings": float(gain.mean()) if len(gain) else float("nan"),
                "gain_stderr": standard_error(gain),
            }
        )
    evidence = pd.DataFrame(rows)
    days = ", ".join(v.day.isoformat() for v, _ in validations)
    if evidence.empty or evidence["users"].max() < min_users:
        return default, evidence, f"kept the settings: fewer than {min_users} validation users (days {days})"
    distance = (
        (evidence["alpha"] - default.alpha).abs()
        + (evidence["alpha_new"] - default.alpha_new).abs()
        + (evidence["ramp_days"] - default.ramp_days).abs() / 10.0
    )
    # equal nDCG up to float noise is a tie: keep the curve nearest the settings
    evidence = evidence.assign(_distance=distance, _score=evidence[f"ndcg@{k}"].round(9))
    evidence = evidence.sort_values(["_score", "_distance"], ascending=[False, True], kind="mergesort")
    evidence = evidence.drop(columns=["_distance", "_score"]).reset_index(drop=True)
    best = evidence.iloc[0]
    best_curve = AlphaCurve(float(best["alpha"]), float(best["alpha_new"]), int(best["ramp_days"]))
    summary = (
        f"best ndcg@{k}={best[f'ndcg@{k}']:.4f} ({best_curve.label()}) vs {settings_scores.mean():.4f} for the "
        f"settings ({default.label()}) on {int(best['users'])} validation users (days {days}): gain "
        f"{best['gain_vs_settings']:+.4f} ± {best['gain_stderr']:.4f}"
    )
    margin = 0.0 if math.isnan(best["gain_stderr"]) else min_gain_stderrs * best["gain_stderr"]
    if best_curve == default or not best["gain_vs_settings"] > margin:
        return default, evidence, f"kept the settings: {summary}, within {min_gain_stderrs:g} standard errors"
    return best_curve, evidence, f"chose {best_curve.label()}: {summary}"
