"""Retrieval of similar hypotheses by character n-grams, with no vocabulary written by hand.

A hypothesis' change part is cut into words (identifiers split: `MATRIX_LR`, `matrixLr` ->
matrix, lr) and each word into character 4-grams with its boundaries (`#mxf`, `mxfp`, `xfp8`,
`fp8#`), so a word shared in another spelling or inflection still shares most of its grams.
Features are binary and weighted by their inverse document frequency in the memory; two
hypotheses score the cosine of their weighted feature sets (TF-IDF).

Abbreviations are learned from the campaign's own text: "value embeddings (VE)" or
"VE (value embeddings)" teaches that VE is value embeddings, and every later hypothesis that
says VE is read as if it said the long form.

Search stays fast with 100,000 hypotheses: candidates come from the rarest features first (a
rare shared feature is what makes two hypotheses alike) within a budget of postings read, and
only the best of them are scored exactly.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import defaultdict

GRAM = 4
SCAN_BUDGET = 3000  # postings read per search at most, rarest features first
RESCORE = 24  # candidates scored exactly per search
_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9]*|\d+[A-Za-z][A-Za-z0-9]*")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_ABBREVIATION = r"[A-Z][A-Za-z0-9]{1,5}"
_LONG_THEN_SHORT = re.compile(rf"((?:[A-Za-z][\w-]*\s+){{1,5}})\(({_ABBREVIATION})\)")
_SHORT_THEN_LONG = re.compile(rf"\b({_ABBREVIATION})\s+\(((?:[A-Za-z][\w-]*\s*){{1,5}})\)")
_STOP = frozenset(("a", "an", "the", "of", "to", "in", "on", "for", "and", "or", "with", "by", "from", "at", "as",
                   "is", "are", "be", "it", "this", "that", "use", "using"))


def words(text: str) -> list[str]:
    """Lower-case words of `text`; identifiers split at underscores and camel case."""
    out: list[str] = []
    for token in _TOKEN.findall(text.replace("_", " ")):
        for part in _CAMEL.split(token) if not token.isupper() else [token]:
            word = part.lower()
            if word and word not in _STOP:
                out.append(word)
    return out


def features(text: str) -> frozenset[str]:
    """The word and character n-gram features of `text`."""
    found: set[str] = set()
    for word in words(text):
        found.add("w:" + word)
        padded = f"#{word}#"
        if len(padded) <= GRAM:
            found.add(padded)
            continue
        found.update(padded[i:i + GRAM] for i in range(len(padded) - GRAM + 1))
    return frozenset(found)


class Abbreviations:
    """Abbreviations the campaign's text has defined, and their long forms."""

    def __init__(self) -> None:
        self.known: dict[str, str] = {}
        self._patterns: re.Pattern[str] | None = None

    def learn(self, text: str) -> None:
        for long, short in _LONG_THEN_SHORT.findall(text):
            self._add(short, _initials_tail(long, short))
        for short, long in _SHORT_THEN_LONG.findall(text):
            self._add(short, _initials_head(long, short))

    def expand(self, text: str) -> str:
        """`text` with each known abbreviation followed by its long form ("VE" -> "VE value embeddings")."""
        if self._patterns is None:
            return text
        return self._patterns.sub(lambda m: f"{m.group(0)} ({self.known[m.group(0)]})", text)

    def _add(self, short: str, long: str) -> None:
        if long and short not in self.known:
            self.known[short] = long
            names = "|".join(re.escape(k) for k in sorted(self.known, key=len, reverse=True))
            self._patterns = re.compile(rf"(?<![A-Za-z0-9_])(?:{names})(?![A-Za-z_])")


def _initials_tail(long: str, short: str) -> str:
    """The words at the end of `long` whose initials spell `short` ("shared value embeddings" /
    "VE" -> "value embeddings"), or "" when none do."""
    tokens = long.split()
    letters = [c for c in short.lower() if c.isalpha()]
    for n in range(min(len(tokens), len(letters)), 0, -1):
        chosen = tokens[-n:]
        if _spells(chosen, letters):
            return " ".join(chosen)
    return ""


def _initials_head(long: str, short: str) -> str:
    tokens = long.split()
    letters = [c for c in short.lower() if c.isalpha()]
    for n in range(min(len(tokens), len(letters)), 0, -1):
        chosen = tokens[:n]
        if _spells(chosen, letters):
            return " ".join(chosen)
    return ""


def _spells(tokens: list[str], letters: list[str]) -> bool:
    """Whether the words' initials spell the letters, a word giving one or more leading letters
    ("multi token prediction" MTP, "query key norm" QKnorm is not asked)."""
    if not tokens or not letters or tokens[0][0].lower() != letters[0]:
        return False
    text = "".join(t.lower() for t in tokens)
    heads = [t[0].lower() for t in tokens]
    if heads == letters:
        return True
    # every word's initial, in order, among the letters, and the letters in order in the words
    position = 0
    for letter in letters:
        position = text.find(letter, position)
        if position < 0:
            return False
        position += 1
    return all(h in letters for h in heads)


class NgramIndex:
    """Hypotheses' features by id, searchable by TF-IDF cosine."""

    def __init__(self) -> None:
        self._postings: dict[str, list[str]] = defaultdict(list)
        self._features: dict[str, frozenset[str]] = {}
        # A document's squared norm, and the memory's size when it was computed: the weights
        # drift slowly as documents come in, so a norm is recomputed once the memory grew by 25%.
        self._norms: dict[str, tuple[float, int]] = {}

    def __len__(self) -> int:
        return len(self._features)

    def add(self, doc_id: str, found: frozenset[str]) -> None:
        if doc_id in self._features or not found:
            return
        self._features[doc_id] = found
        for feature in found:
            self._postings[feature].append(doc_id)

    def idf(self, feature: str) -> float:
        return math.log1p(len(self._features) / (1 + len(self._postings.get(feature, ()))))

    def _norm(self, doc_id: str) -> float:
        size = len(self._features)
        cached = self._norms.get(doc_id)
        if cached is None or size > cached[1] * 1.25:
            cached = (sum(self.idf(f) ** 2 for f in self._features[doc_id]), size)
            self._norms[doc_id] = cached
        return cached[0]

    def cosine(self, query: frozenset[str], doc_id: str, weights: dict[str, float] | None = None) -> float:
        other = self._features.get(doc_id)
        if not other or not query:
            return 0.0
        weights = weights if weights is not None else {f: self.idf(f) ** 2 for f in query}
        shared = sum(weights[f] for f in query & other)
        if shared == 0:
            return 0.0
        return min(1.0, shared / math.sqrt(sum(weights.values()) * self._norm(doc_id)))

    def search(self, query: frozenset[str], exclude: set[str] | None = None) -> list[tuple[str, float]]:
        """The best candidates for `query`, with their cosine, best first."""
        weights = {f: self.idf(f) ** 2 for f in query}
        present = sorted((len(self._postings[f]), f) for f in query if f in self._postings)
        scores: dict[str, float] = defaultdict(float)
        budget = SCAN_BUDGET
        for count, feature in present:
            weight = weights[feature]
            for doc_id in reversed(self._postings[feature][-budget:]):  # newest first
                scores[doc_id] += weight
            budget -= min(count, budget)
            if budget <= 0:
                break
        if exclude:
            for doc_id in exclude:
                scores.pop(doc_id, None)
        best = heapq.nlargest(RESCORE, scores, key=scores.__getitem__)
        ranked = [(doc_id, self.cosine(query, doc_id, weights)) for doc_id in best]
        return sorted(ranked, key=lambda item: -item[1])
