"""Lexical similarity of hypotheses, with the ML wording that matters made explicit.

A hypothesis is reduced to what it changes (its targets: the learning rate, dropout, AdamW, a
cosine schedule...; what it replaces is kept apart), where (hidden layers, the attention, the
head...), the direction of the change (up, down, add, remove, replace) and its other content
words, lightly stemmed. Only the clauses that say what to do count for targets and direction:
"the loss oscillates; lower the learning rate" is about the learning rate, and "to reduce
overfitting" is a purpose, not a decrease.

Two hypotheses are never duplicates when they change different things (disjoint targets, or
each names an alternative the other does not: Adam / AdamW, flips / rotations), act on
different parts of the model, or move one target in opposite directions. Otherwise the score is
a weighted overlap of their features (targets weigh most), raised when both make the same move
on the same targets. The vocabulary is in lexicon.py.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from orchestrator.memory.lexicon import (
    ACTION_VERBS,
    ALIASES,
    CLAUSE_WORDS,
    CONCEPTS,
    CONTEXT_PREPOSITIONS,
    DEPTH_MARKERS,
    DEPTH_NOUNS,
    DIRECTION_WORDS,
    IMPLIES,
    LEAD_WORDS,
    MAX_PHRASE,
    MODAL_WORDS,
    NUMBER_WORDS,
    PHRASES,
    PURPOSE_VERBS,
    RATIONALE_WORDS,
    REWRITES,
    STATEMENT_OPENERS,
    STOPWORDS,
    WEAK_WORDS,
    stem,
)

TARGET_WEIGHT = 3.0  # a target (what changes) weighs as much as three ordinary words
REPLACED_WEIGHT = 2.0
WHERE_WEIGHT = 2.0
WEAK_WEIGHT = 0.3
NUMBER_WEIGHT = 0.5
WHY_WEIGHT = 0.5
DIRECTION_WEIGHT = 1.0  # words of a reason or a purpose count half: what changes matters more than why
SAME_TARGETS_BONUS = 0.3  # the same targets changed the same way: the core of an idea
SAME_DIRECTION_BONUS = 0.1
BONUS = SAME_TARGETS_BONUS + SAME_DIRECTION_BONUS

POSITIVE = frozenset(("up", "add"))
# Families whose members carry knobs: "the momentum of SGD" is about the momentum.
_CARRIERS = frozenset(c for c, (family, _) in CONCEPTS.items() if family in (
    "optimizer", "model", "solver", "kernel", "seqmodel", "backbone"))
NEGATIVE = frozenset(("down", "remove"))

_NUMBER = re.compile(r"^\d+(?:\.\d+)?(?:e[-+]?\d+)?$")
_TOKEN = re.compile(
    r"[123]d\b|\d+(?:\.\d+)?(?:e[-+]?\d+)?%?|[a-z]+\d*[a-z]*|[;:!?]|\.(?=\s|$)|->|,"
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_RAW_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")


@dataclass(frozen=True)
class Text:
    """A hypothesis as the memory compares it."""

    targets: frozenset[str]  # concepts it changes or introduces
    replaced: frozenset[str]  # concepts it replaces ("instead of SGD")
    context: frozenset[str]  # concepts a target implies (the learning rate of a cosine schedule)
    where: frozenset[str]  # parts of the model or pipeline it acts on
    direction: str  # up | down | add | remove | replace | tune | use | "" (unknown)
    features: dict[str, float]  # feature -> weight, for the weighted overlap
    weight: float  # sum of the feature weights
    keys: frozenset[str] = frozenset()  # the features, as a set (overlaps are set intersections)
    concepts: frozenset[str] = frozenset()  # targets, replaced and context together
    families: dict[str, frozenset[str]] = field(default_factory=dict)  # family -> its targets and context


# ----- tokenizing ---------------------------------------------------------------------------
def _split_identifiers(text: str) -> str:
    """CamelCase and snake_case identifiers become words: CosineAnnealingLR -> cosine annealing lr,
    except words the lexicon knows whole (AdamW, ReLU, RMSprop)."""

    def split(match: re.Match[str]) -> str:
        word = match.group(0)
        if stem(word.lower()) in PHRASES_WHOLE or word.isupper() or word.islower():
            return word
        return " ".join(_CAMEL.split(word))

    return _RAW_WORD.sub(split, text)


PHRASES_WHOLE = frozenset(key[0] for key in PHRASES if len(key) == 1)


def tokens_of(hypothesis: str) -> list[str]:
    """Lower-case tokens: words (stemmed later), numbers and clause punctuation."""
    text = hypothesis.replace("±", " ").replace("°", " ").replace("’", "'")
    text = re.sub(r"\b[\w-]+-free\b", " ", text)  # "a dropout-free block" does not change dropout
    text = re.sub(r"(?<![A-Za-z])C(?![A-Za-z])", " regc ", text)  # the SVM's / logistic regression's C
    text = _split_identifiers(text.replace("_", " "))
    text = text.lower()
    text = re.sub(r"\b(\d+)\s*x\s*\1\b(?=\s+(?:\w+\s+)?(?:conv|convs|convolution|convolutions|convolutional|kernel|"
                  r"kernels|filter|filters)\b)", r"kernelsize \1", text)  # a 3x3 conv: the kernel size
    text = re.sub(r"\b(\d+)\s*x\s*\1\b", r"\1", text)  # 8x8 -> 8
    text = re.sub(r"(\d)\s*x\s*(\d)", r"\1 x \2", text)
    text = re.sub(r"\b(\d+)(?:st|nd|rd|th)\b", r"\1", text)  # the 99th percentile
    text = re.sub(r"(?<![0-9]e)(?<=[a-z])-(?=[a-z0-9])|(?<=\d)-(?=[a-z])", " ", text)  # warm-up, 4-pixel
    text = re.sub(r"\s+'s\b|'s\b", "", text)
    for pattern, replacement in REWRITES:
        text = pattern.sub(replacement, text)
    return _TOKEN.findall(text)


# ----- analysis -----------------------------------------------------------------------------
@dataclass
class _Item:
    raw: str  # the token, or the words of a lexicon wording
    stem: str
    labels: tuple[str, ...] = ()  # concepts and directions of a lexicon wording
    number: float | None = None
    old: bool = False  # what the change replaces ("instead of SGD")
    aside: bool = False  # a purpose or a prediction ("to reduce overfitting", "should help")
    setting: bool = False  # where a change happens ("weight decay in the Adam optimizer")
    implied: bool = False  # part of a larger idea ("conv-bn-relu" in "one more conv-bn-relu block")


@dataclass
class _Clause:
    items: list[_Item]
    action: bool  # opens with an action verb: says what to do
    rationale: bool = False  # states a fact or a reason


def analyze(hypothesis: str) -> Text:
    clauses = _clauses(tokens_of(hypothesis))
    said = [c for c in clauses if _names_concepts(c)]
    # What to do: clauses opening with an action, and the details that go with them ("C=0.3");
    # not the reasons ("the loss oscillates").
    acting = [c for c in said if c.action]
    acting = [c for c in said if c.action or (acting and not c.rationale)] or [
        c for c in said if not c.rationale] or said
    targets: set[str] = set()
    replaced: set[str] = set()
    where: set[str] = set()
    context: set[str] = set()
    for clause in acting:
        for item in clause.items:
            if item.aside or item.implied:
                continue
            if item.setting:
                context.update(c for c in _concepts(item) if CONCEPTS[c][1] == "target")
                continue
            for concept in _concepts(item):
                if CONCEPTS[concept][1] == "where":
                    where.add(concept)
                elif CONCEPTS[concept][1] == "word":
                    continue
                elif item.old:
                    replaced.add(concept)
                else:
                    targets.add(concept)
    for concept, company, alias in ALIASES:
        if concept in targets and company & (targets | replaced | _mentioned(clauses)):
            targets = (targets - {concept}) | {alias}
    direction = _direction([c for c in clauses if c.action] or clauses)
    context -= targets
    for concept in list(targets):
        context |= IMPLIES.get(concept, frozenset()) & targets  # a cosine schedule is of the learning rate
    knobs = {c for c in targets if CONCEPTS[c][0] == "knob"}
    methods = {c for c in targets if c not in knobs}
    if knobs and methods:
        if direction in ("up", "down"):
            context |= methods & _CARRIERS  # "lower the weight decay of AdamW" changes the weight decay
        elif direction == "replace" or replaced:
            context |= knobs  # "switch to AdamW (beta2=0.95)" changes the optimizer
    if "lr" in targets | context and {"backbone", "output"} <= where:
        targets.add("discriminative_lr")  # one learning rate for the backbone, another for the head
    if "discriminative_lr" in targets:
        context |= targets & {"lr"}
        direction = ""  # lower here, higher there: a restructuring, not a move
    targets -= context
    replaced -= targets | context
    features: dict[str, float] = {}
    for clause in clauses:
        why = clause not in acting  # a reason, said in words of its own, is not the change
        for item in clause.items:
            if item.number is not None:
                features[f"n:{item.number:.3g}"] = NUMBER_WEIGHT
                continue
            for concept in _concepts(item):
                kind = CONCEPTS[concept][1]
                weight = (TARGET_WEIGHT if concept in targets else REPLACED_WEIGHT if concept in replaced
                          else WHERE_WEIGHT if concept in where else 1.0)
                features["c:" + concept] = max(features.get("c:" + concept, 0.0), weight if kind != "word" else 1.0)
            if item.labels or item.raw in DIRECTION_WORDS or item.stem in STOPWORDS or item.raw in STOPWORDS:
                continue
            weight = WEAK_WEIGHT if item.stem in WEAK_WORDS else 1.0
            if why or item.aside:
                weight *= WHY_WEIGHT
            features[item.stem] = max(features.get(item.stem, 0.0), weight)
    if _sign(direction):
        features["d:" + _sign(direction)] = DIRECTION_WEIGHT  # which way it moves is part of what it says
    families: dict[str, set[str]] = {}
    for concept in targets | context:
        families.setdefault(CONCEPTS[concept][0], set()).add(concept)
    return Text(
        targets=frozenset(targets), replaced=frozenset(replaced), context=frozenset(context), where=frozenset(where),
        direction=direction, features=features, weight=sum(features.values()), keys=frozenset(features),
        concepts=frozenset(targets | replaced | context), families={k: frozenset(v) for k, v in families.items()},
    )


def _mentioned(clauses: list[_Clause]) -> set[str]:
    return {c for clause in clauses for item in clause.items for c in _concepts(item)}


def _concepts(item: _Item) -> list[str]:
    return [label for label in item.labels if not label.startswith("dir:")]


def _names_concepts(clause: _Clause) -> bool:
    return any(_concepts(i) and not i.aside and CONCEPTS[_concepts(i)[0]][1] != "word" for i in clause.items)


def _clauses(tokens: list[str]) -> list[_Clause]:
    clauses: list[_Clause] = []
    current: list[str] = []
    for token in [*tokens, ";"]:
        if token in (";", ":", ".", "!", "?", ",") or token in CLAUSE_WORDS:
            if current:
                clauses.append(_clause(current))
            current = []
        else:
            current.append(token)
    return clauses or [_Clause([], False)]


def _clause(tokens: list[str]) -> _Clause:
    items = _items(tokens)
    old = False  # inside "instead of X", "replace X (with)", "from X (to)"
    aside = False  # inside "to reduce overfitting", "should help"
    action = None
    targeted = False  # a target came before: "to the Adam optimizer" then says where
    setting = False
    for i, item in enumerate(items):
        raw, stemmed = item.raw, item.stem
        if raw in CONTEXT_PREPOSITIONS and targeted and not _after_replace(items, i):
            setting = True
        elif item.labels:
            item.setting = setting and any(CONCEPTS[c][0] in _SETTINGS for c in _concepts(item))
            targeted = targeted or any(CONCEPTS[c][1] == "target" for c in _concepts(item))
            setting = False
        elif raw not in STOPWORDS and stemmed not in STOPWORDS:
            setting = False
        if action is None and item.number is None and raw not in LEAD_WORDS:
            action = stemmed in ACTION_VERBS or raw in DIRECTION_WORDS or any(
                label.startswith("dir:") for label in item.labels)
        if not item.labels:
            if raw in ("instead", "rather") or (raw == "of" and i and items[i - 1].raw == "place"):
                old = True
            elif raw in ("with", "by", "to", "for", "into") and old and _after_replace(items, i):
                old = False
            elif stemmed in ("replac", "swap", "substitut") or (raw == "from" and not _numeric_next(items, i)):
                old = True
            if (raw == "to" and i + 1 < len(items) and items[i + 1].stem in PURPOSE_VERBS) or raw in MODAL_WORDS:
                aside = True
        item.old, item.aside = old, aside
    _depth_rule(items)
    rationale = any(item.stem in RATIONALE_WORDS or item.raw in RATIONALE_WORDS for item in items) or (
        not action and bool(items) and items[0].raw in STATEMENT_OPENERS)
    return _Clause(items, bool(action), rationale)


def _items(tokens: list[str]) -> list[_Item]:
    stems = [stem(t) for t in tokens]
    items: list[_Item] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if _NUMBER.match(token.rstrip("%")):
            items.append(_Item(token, token, number=float(token.rstrip("%"))))
            i += 1
            continue
        length, labels = _phrase(stems, i)
        if labels:
            items.append(_Item(" ".join(tokens[i:i + length]), " ".join(stems[i:i + length]), labels))
            i += length
            continue
        if token in NUMBER_WORDS:  # "five models" is "5 models", unless a wording took it ("one cycle")
            items.append(_Item(token, token, number=float(NUMBER_WORDS[token])))
            i += 1
            continue
        items.append(_Item(token, stems[i]))
        i += 1
    return items


def _depth_rule(items: list[_Item]) -> None:
    """"Add a third hidden layer", "one more conv-bn-relu block": more depth. What the new layer
    is made of (the ReLU in it) is part of that idea, not a change of its own."""
    for i, item in enumerate(items):
        if (item.stem not in DEPTH_MARKERS and item.raw not in DEPTH_MARKERS) or item.aside:
            continue
        for j in range(i + 1, min(i + 6, len(items))):
            end = items[j]
            if end.stem in DEPTH_NOUNS or any(CONCEPTS[c][1] == "where" and end.stem.split()[-1] in DEPTH_NOUNS
                                              for c in _concepts(end)):
                inside = items[i + 1:j + 1]
                strong = item.stem not in ("a", "an")
                if not strong and any(CONCEPTS[c][1] == "target" for x in inside for c in _concepts(x)):
                    break  # "add a self-attention layer": a layer of its own kind, not more depth
                for x in inside:
                    if any(CONCEPTS[c][1] == "target" for c in _concepts(x)):
                        x.implied = True
                verb = next((x for x in reversed(items[:i]) if x.raw in DIRECTION_WORDS or x.stem in ACTION_VERBS),
                            None)
                down = verb is not None and DIRECTION_WORDS.get(verb.raw) in ("down", "remove")
                item.labels = (*item.labels, "depth", "dir:down" if down else "dir:up")
                return
            if end.raw in _PREPOSITIONS or any(CONCEPTS[c][0] == "knob" for c in _concepts(end)) or (
                    end.labels and item.stem in ("a", "an")
                    and not any(CONCEPTS[c][1] in ("where", "word") for c in _concepts(end))):
                break  # "more dropout in the hidden layer" is not a layer more


_SETTINGS = frozenset(("model", "seqmodel", "backbone", "optimizer"))
_PREPOSITIONS = frozenset((
    "in", "on", "of", "to", "for", "after", "before", "between", "with", "within", "inside", "at", "from", "into", "by",
))


def _phrase(stems: list[str], i: int) -> tuple[int, tuple[str, ...]]:
    """The longest lexicon wording starting at i: its length and labels."""
    for length in range(min(MAX_PHRASE, len(stems) - i), 0, -1):
        labels = PHRASES.get(tuple(stems[i:i + length]))
        if labels:
            return length, labels
    return 0, ()


def _after_replace(items: list[_Item], i: int) -> bool:
    """'with'/'to'/'by' ends the replaced part when a replacing verb or 'from' came before it."""
    return any(x.stem in ("replac", "swap", "substitut", "switch", "chang", "mov", "go") or x.raw == "from"
               for x in items[:i])


def _numeric_next(items: list[_Item], i: int) -> bool:
    return i + 1 < len(items) and items[i + 1].number is not None


def _direction(clauses: list[_Clause]) -> str:
    words = []
    for clause in clauses:
        for item in clause.items:
            if item.aside:
                continue
            words += [label[4:] for label in item.labels if label.startswith("dir:")]
            if not item.labels and item.raw in DIRECTION_WORDS:
                words.append(DIRECTION_WORDS[item.raw])
    for d in words:
        if d in ("up", "down"):
            return d
    numeric = _numeric_direction(clauses)
    if numeric:
        return numeric
    for wanted in ("remove", "replace", "add", "tune", "use"):
        if wanted in words:
            return wanted  # "use" says what, not which way: it opposes nothing
    return ""


def _numeric_direction(clauses: list[_Clause]) -> str:
    """"from 0.5 to 0.2" goes down; "(3e-3 instead of 1e-3)" goes up."""
    for clause in clauses:
        items = [i for i in clause.items if not i.aside]
        numbers = [i.number for i in items if i.number is not None]
        raws = {i.raw for i in items}
        if len(numbers) >= 2 and raws & {"from", "instead", "rather"}:
            first, second = numbers[0], numbers[1]
            new, old = (second, first) if "from" in raws else (first, second)
            if new != old:
                return "up" if new > old else "down"
    return ""


# ----- comparing ----------------------------------------------------------------------------
def conflict(a: Text, b: Text) -> str:
    """Why the two cannot be one idea ("" when they can)."""
    crossed = a.concepts & b.targets and b.concepts & a.targets  # "SGD to Adam" / "Adam from SGD"
    if a.targets and b.targets and not a.targets & b.targets and not crossed:
        return "other targets"
    for family, mine in a.families.items():
        theirs = b.families.get(family)
        if theirs and mine - b.concepts and theirs - a.concepts:
            return "other alternatives"  # Adam / AdamW, flips / rotations
    if a.where and b.where and not a.where & b.where:
        return "other places"
    if _opposite(a.direction, b.direction) and (a.concepts & b.concepts or not (a.concepts or b.concepts)):
        return "opposite directions"
    return ""


def _opposite(a: str, b: str) -> bool:
    return (a in POSITIVE and b in NEGATIVE) or (a in NEGATIVE and b in POSITIVE)


def _sign(direction: str) -> str:
    if direction == "tune":
        return "~"  # searching over values is a move of its own kind
    return "+" if direction in POSITIVE or direction == "replace" else "-" if direction in NEGATIVE else ""


def overlap(a: Text, b: Text) -> float:
    """Weighted Jaccard of the two feature sets."""
    common = a.keys & b.keys
    if not common:
        return 0.0
    fa, fb = a.features, b.features
    shared = sum(min(fa[f], fb[f]) for f in common)
    return shared / (a.weight + b.weight - shared)


def bonus(a: Text, b: Text) -> float:
    """The same targets changed the same way are the core of one idea, whatever the other words.
    Two moves of different kinds (raise it / tune it) share no bonus."""
    if not a.targets or a.targets != b.targets:
        return 0.0
    sign_a, sign_b = _sign(a.direction), _sign(b.direction)
    if sign_a and sign_b and sign_a != sign_b:
        return 0.0
    return SAME_TARGETS_BONUS + (SAME_DIRECTION_BONUS if sign_a and sign_a == sign_b else 0.0)


def raised(overlap_: float, bonus_: float) -> float:
    """The bonus closes part of the gap to 1: only identical hypotheses score 1."""
    return overlap_ + bonus_ * (1.0 - overlap_)


def similarity(a: Text, b: Text, at_least: float = 0.0) -> float:
    """0 when the two cannot be one idea; else their weighted overlap, raised for the same move.
    A score that cannot exceed `at_least` is returned without checking the gates (cheaper)."""
    score = raised(overlap(a, b), bonus(a, b))
    if score <= at_least or conflict(a, b):
        return 0.0
    return score


# ----- naming a knob ------------------------------------------------------------------------
@functools.lru_cache(maxsize=16384)
def knob_concept(words: str, identifier: bool = False) -> str | None:
    """The lexicon's concept for the name of a knob, when it has one.

    Words ("dropout in the transformer", "number of transformer blocks") name the concept they
    change. An identifier (`MATRIX_LR`, `n_embd`) names one only when the lexicon knows it whole:
    `n_embd` is the width, but `MATRIX_LR` is its own knob, not any learning rate."""
    if identifier:
        stems = tuple(stem(t) for t in tokens_of(words) if not _NUMBER.match(t))
        labels = PHRASES.get(stems, ())
        concepts = [label for label in labels if not label.startswith("dir:") and CONCEPTS[label][1] == "target"]
        return concepts[0] if len(concepts) == 1 else None
    text = analyze(words)
    knobs = sorted(c for c in text.targets | text.context if CONCEPTS[c][0] == "knob")
    # "matrix lr", "final lr frac": words the concept does not hold make a knob of its own
    own = [f for f, weight in text.features.items() if not f.startswith(("c:", "n:", "d:")) and weight >= 1.0]
    if len(knobs) != 1 or own:
        return None  # "transformer blocks" names a model, not a knob
    # The dropout of the attention is a knob of its own, as `dropout_attention` would be
    return "_".join([knobs[0], *sorted(text.where)])
