"""Array idioms the core modules share."""

import numpy as np


def position_in_runs(keys: np.ndarray) -> np.ndarray:
    """Each element's 0-based position within its run of equal consecutive ``keys``: on rows sorted by listener
    and then by score, the rank of each row within its listener (minus one)."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(keys[1:] != keys[:-1]) + 1]
    return np.arange(len(keys)) - np.repeat(starts, np.diff(np.r_[starts, len(keys)]))
