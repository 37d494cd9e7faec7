"""What a change claims: which knob it moves, from which value to which.

Values decide what counts as the same experiment: the same knob set to the same value is the
same change, to another value another step of a sweep. A params change's claim follows from its
delta; an LLM proposer states its own (`Change.claim`); a hypothesis in words is read here.

Reading a hypothesis:
1. Its change part: the words before its results and reasons ("val_bpb 1.28 -> 1.27",
   "Result: ...", "because ..."). Research logs put the change first and notes after; notes that
   drown the change also mislead every later comparison.
2. Moves in the change part: `knob a -> b` (any arrow), `knob from a to b`, `knob a to b`,
   `knob=b`, `knob: b`, `halve knob`, `double knob`, `knob x2`, `b knob -> c knob`. Values are
   read in every notation (`2^16`, `64K`, `1e-4`, `30%`, `True`), so notation never tells
   two values apart; a factor (`x2`, `halve`) is kept as a factor of the parent's value.
3. The knob: the words just before the value (or the word repeated after both values),
   without the words of a direction ("smaller batch" is the batch), normalized to lower-case
   tokens. Two knobs are one when the tokens of one are all among the other's
   ("batch" / "total_batch_size"), never when each has a token of its own
   ("matrix_lr" / "embedding_lr").
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from orchestrator.change import Claim, Value

Relation = str  # same | step | other | unknown
# The concept a knob's name stands for, when a vocabulary knows it: (words, is an identifier) -> name
Resolve = Callable[[str, bool], str | None]

# Words that open the results or reasons of a hypothesis: what follows is not the change.
_NOTE = re.compile(
    r"(?:^|[\s(\[;,.:])(?:results?|evidence|outcome|observed|observation|confirms?|confirmed|proves?|proving|"
    r"because|since|due to|so that|in order to|which|worse|better|improve[sd]?|improvement|regress(?:ed|ion)?|"
    r"no improvement|no change|crash(?:ed)?|oom|hurts?|helps?|helped|rationale|reason|motivation|expected|expect|"
    r"bottleneck|note|notes|lesson|learned|vs\.?|versus|delta|hypothesis|hypothesized|why|new best|best|tied|was|were|"
    r"marginal|marginally|slightly|identical|no gain)\b",
    re.IGNORECASE,
)
_OPENER = re.compile(r"^(?:bottleneck|problem|observation|context|background|motivation)\s*:.*?"
                     r"(?:hypothesis|idea|change|fix|try)\s*:\s*", re.IGNORECASE)
_LEAD = re.compile(r"^\s*(?:hypothesis|idea|change|try|trying|experiment|exp\s*\d+|test|attempt)\s*[:\-#\d.]*\s*",
                   re.IGNORECASE)
_CONTEXT = re.compile(r"\s\(?(?:with|at|on top of|on|using|given|under|w/)(?:\s|$)", re.IGNORECASE)
_IDENTIFIER_WORD = re.compile(r"\b[A-Za-z]+_[A-Za-z0-9_]+\b")
_STOP = re.compile(r": |[.!?](?:\s+[A-Z]|\s*$)|\s[—–]\s|\s--\s|;")
MAX_CHANGE_CHARS = 400  # a change is said first: what follows this far is notes
_NUMBER = (r"[-+]?(?:\d+(?:,\d{3})+|\d*\.\d+|\d+)(?:e[-+]?\d+)?(?:\^[-+]?\d+)?"
           r"(?:\s?[kmbg](?![a-z])|\s?%|\s?percent\b)?")
_VALUE = rf"(?:{_NUMBER}|true|false|none|on|off)"
_WORD = r"[A-Za-z_][A-Za-z0-9_.]*"
# A move, found by its values, its knob read from the words before them: "a -> b", "from a to
# b", "a to b", "b instead of a", "= b", ": b"
_MOVE = re.compile(
    rf"(?:(?<![A-Za-z0-9_.])(?:(?P<a>{_VALUE})[ \t]*(?:→|->|to)[ \t]*(?P<b>{_VALUE})"
    rf"|(?P<b2>{_VALUE})[ \t]+(?:instead[ \t]+of|rather[ \t]+than)[ \t]+(?P<a2>{_VALUE}))"
    rf"|(?::=|=|:)[ \t]*(?P<set>{_VALUE}))(?![A-Za-z0-9_])",
    re.IGNORECASE,
)
# "6 heads -> 12 heads", "768 -> 896 dim": the knob is the word after the values
_UNIT_MOVE = re.compile(
    rf"(?<![A-Za-z0-9_.])(?P<a>{_VALUE})(?:[ \t]+(?P<u1>{_WORD}))?[ \t]*(?:→|->|to)[ \t]*"
    rf"(?P<b>{_VALUE})[ \t]+(?P<u2>{_WORD})",
    re.IGNORECASE,
)
# "50 epochs instead of 20", "256 hidden units rather than 128": the knob between the values
_UNIT_INSTEAD = re.compile(
    rf"(?<![A-Za-z0-9_.])(?P<b>{_VALUE})[ \t]+(?P<u>(?:{_WORD}[ \t]+)?{_WORD})[ \t]+"
    rf"(?:instead[ \t]+of|rather[ \t]+than)[ \t]+(?P<a>{_VALUE})(?![A-Za-z0-9_])",
    re.IGNORECASE,
)
_FACTOR_VERB = re.compile(
    rf"\b(?P<verb>halve|halving|halved|double|doubling|doubled|triple|tripled|quadruple)[ \t]+(?:the[ \t]+)?"
    rf"(?P<knob>(?:{_WORD}[ \t]+){{0,2}}{_WORD})",
    re.IGNORECASE,
)
_FACTOR = re.compile(r"(?<![A-Za-z0-9_])(?:x|×|\*)[ \t]*(?P<factor>\d+(?:\.\d+)?)(?![A-Za-z0-9_.])")
# Fallbacks, read only when nothing above is: "raise the hidden size to 128", "use 8 heads",
# "TOTAL_BATCH_SIZE 2^14", "batch 8K"
_SET_TO = re.compile(rf"[ \t](?:to|of)[ \t]+(?P<set>{_NUMBER})(?![A-Za-z0-9_])", re.IGNORECASE)
_BARE = re.compile(rf"(?<=[A-Za-z0-9_])[ \t]+(?P<set>{_NUMBER}|true|false)(?![A-Za-z0-9_.])", re.IGNORECASE)
_COUNT = re.compile(rf"(?<![A-Za-z0-9_.^-])(?P<set>{_NUMBER})[ \t]+(?P<knob>(?:{_WORD}[ \t]+)?{_WORD})", re.IGNORECASE)
# The words a knob's name ends with, at the end of what comes before its values.
_TAIL = re.compile(rf"(?:{_WORD}[ \t]+){{0,5}}{_WORD}$")
_LOOKBACK = 100  # characters before a move that can hold its knob's name
_JOINED = re.compile(r"(?:(?<=^)|(?<=\s\+\s))[^+]+?(?=\s\+\s|$)")  # "a + b + c": the changes a row joins
_FACTORS = {"halve": 0.5, "halving": 0.5, "halved": 0.5, "double": 2.0, "doubling": 2.0, "doubled": 2.0,
            "triple": 3.0, "tripled": 3.0, "quadruple": 4.0}
_SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9}
def _list(text: str) -> list[str]:
    return text.split()


# Words around a knob that say how it moves or introduce it, not which knob it is.
_NOT_KNOB = frozenset(_list("""
a an the and or with without to of in on for from at by into via per use using set sets setting try trying
increase increased increasing raise raised raising bump bumped higher larger bigger more lower lowered
reduce reduced reducing decrease decreased decreasing smaller less fewer shorter longer change changed changing
tune tuned tweak adjust adjusted enable enabled disable disabled add added adding remove removed drop dropped
switch switched revert reverted restore restored go back keep new old default only also then now just
is are be it its this that these those same again back up down hypothesis idea try experiment exp test
s each all every one two above below beyond under over least most about around than only after before until
within per train training get make extend cut let run try require requires allow shorten shortened lengthen
lengthened delay delayed widen widened narrow narrowed deepen deepened grow grew shrink shrank boost boosted halve
double tripled apply applied put go switch swap replace replaced force forced cap capped limit limited tighten
loosen scale scaled multiply divide push pull move moved bring restore retry rerun revert use used
"""))
_GENERIC = frozenset(("size", "num", "n", "number", "count", "total", "value", "amount"))
_SPLITS = frozenset(("to", "of", "and", "with", "instead", "rather", "than", "for", "in", "on", "at", "by", "from"))
_SYNONYMS = {"learning": "lr", "rate": "", "weight_decay": "wd", "decay": "decay", "batchsize": "batch", "bs": "batch",
             "layers": "layer", "heads": "head", "steps": "step", "iterations": "iteration", "iters": "iteration",
             "epochs": "epoch", "dims": "dim", "dimension": "dim", "embd": "embed", "embedding": "embed",
             "embeddings": "embed", "tokens": "token", "warmup": "warmup", "params": "param"}


@dataclass(frozen=True)
class Reading:
    """A hypothesis read for the memory."""

    change: str  # the words that say what changes (results and reasons set aside)
    claims: tuple[Claim, ...]  # the moves it makes, in order: the first is the main one
    named: bool  # every claim's knob is named for sure (an identifier or a known concept)
    spans: tuple[tuple[int, int], ...] = ()  # where each claim is said in `change`

    def without(self, dropped: Iterable[int]) -> Reading:
        """The reading without some of its claims, and without their words in `change`."""
        gone = set(dropped)
        change = self.change
        for index in sorted(gone, key=lambda i: -self.spans[i][0]):
            start, end = self.spans[index]
            change = change[:start] + " " + change[end:]
        keep = [i for i in range(len(self.claims)) if i not in gone]
        return Reading(" ".join(change.split()), tuple(self.claims[i] for i in keep), self.named,
                       tuple(self.spans[i] for i in keep))


def read(hypothesis: str, notes: Iterable[str] = (), resolve: Resolve | None = None) -> Reading:
    """The change part of a hypothesis and its claims. `notes`: words of the campaign's results
    (its metric names), which open a result note wherever they stand; `resolve`: names a knob
    written in words by the concept it stands for ("dropout in the transformer" is dropout)."""
    change = change_part(hypothesis, notes)
    return _parse(change, resolve)


def change_part(hypothesis: str, notes: Iterable[str] = ()) -> str:
    text = " ".join(hypothesis.split())
    # "Bottleneck: ... Hypothesis: shuffle the documents. Result: ...": the change follows the label
    opened = _OPENER.match(text)
    if opened:
        text = text[opened.end():]
    text = _LEAD.sub("", text)[:MAX_CHANGE_CHARS]
    ends = [m.start() for m in _NOTE.finditer(text) if m.start() > 0]
    for word in notes:
        found = re.search(rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])", text, re.IGNORECASE)
        if found and found.start() > 0:
            ends.append(found.start())
    text = text[:min(ends, default=len(text))]
    # After a move is said, a colon, a dash or a sentence's end opens its notes: "softcap 30 ->
    # 15: val_bpb ...". Before one, they may still lead to it: "a wider MLP: 256 hidden units",
    # "the model overfits; raise dropout to 0.3".
    moves = _scan(text, None)
    if moves:
        stop = _STOP.search(text, moves[0][1])
        if stop:
            text = text[:stop.start()]
    # What a change is tried on is not the change: "warmup 0.089 -> 0.2 on top of attention_hidden
    # =128", "DAYS_EMPLOYED fix with 1500 trees", "batch_size 12 -> 10 (with head_lr 5e-4)".
    for context in _CONTEXT.finditer(text):
        if _IDENTIFIER_WORD.search(text[:context.start()]) or _scan(text[:context.start()], None):
            text = text[:context.start()]
            break
    return text.strip(" ,:;-(—–") or hypothesis[:MAX_CHANGE_CHARS]


def _parse(text: str, resolve: Resolve | None) -> Reading:
    """The claims of `text`, whether every knob among them is named for sure, and where."""
    claims: list[Claim] = []
    spans: list[tuple[int, int]] = []
    named = True
    for start, end, claim, sure in _scan(text, resolve):
        if not any(knobs_match(claim.knob, c.knob) for c in claims):
            claims.append(claim)
            spans.append((start, end))
            named = named and sure
    return Reading(text, tuple(claims), named, tuple(spans))


def _scan(text: str, resolve: Resolve | None) -> list[tuple[int, int, Claim, bool]]:
    """Each move, in order: where its knob's name starts, where its values end, the claim, and
    whether its knob is named for sure."""
    found: list[tuple[int, int, Claim, bool]] = []

    def add(start: int, end: int, words: str | None, after: Any, before: Any = None, direction: str = "",
            strict: bool = False, guess: bool = False, assigned: bool = False) -> None:
        knob, sure = knob_name(words, resolve, strict)
        # A fallback's reading is a guess unless one word names its knob ("attention_lr 3e-5",
        # "scale 0.7"); an assignment ("mcw=3") names its knob for sure.
        sure = assigned or sure or (guess and not strict and bool(words) and len((words or "").split()) == 1)
        if knob and not any(s <= start < e for s, e, _, _ in found):
            found.append((start, end, Claim(knob, before, after, direction or _direction(before, after)), sure))

    for match in _MOVE.finditer(text):
        start, words = _knob_before(text, match.start())
        if match.group("set") is not None:
            assigned = "=" in match.group(0) and bool(words) and len((words or "").split()) == 1
            # "knob: value" only for a name that is surely a knob: "FFR baseline: 17 heads" is not one
            add(start, match.end(), words, value_of(match.group("set")), direction="set", assigned=assigned,
                strict="=" not in match.group(0))
            continue
        old, new = (match.group("a"), match.group("b")) if match.group("a") else (match.group("a2"), match.group("b2"))
        add(start, match.end(), words, value_of(new), value_of(old))
    for match in _UNIT_MOVE.finditer(text):
        u1, u2 = match.group("u1"), match.group("u2")
        if u1 and normalize_knob(u1) != normalize_knob(u2):
            continue
        if not any(start <= match.start() < end for start, end, _, _ in found):
            add(match.start(), match.end(), u2, value_of(match.group("b")), value_of(match.group("a")))
    for match in _UNIT_INSTEAD.finditer(text):
        add(match.start(), match.end(), match.group("u"), value_of(match.group("b")), value_of(match.group("a")))
    for match in _FACTOR_VERB.finditer(text):
        factor = _FACTORS[match.group("verb").lower()]
        add(match.start(), match.end(), match.group("knob"), f"x{factor:g}", direction="up" if factor > 1 else "down")
    for match in _FACTOR.finditer(text):
        start, words = _knob_before(text, match.start(), 3)
        factor = float(match.group("factor"))
        if factor > 0 and factor != 1:
            add(start, match.end(), words, f"x{factor:g}", direction="up" if factor > 1 else "down")
    # "freeze_ratio 0 -> 0.15 + encoder_lr 1e-6 + epochs 12", "2500 trees depth=4": more moves,
    # named for sure
    for match in _BARE.finditer(text):
        start, words = _bare_knob(text, match.start(), resolve)
        if found and words:
            add(start, match.end(), words, value_of(match.group("set")), direction="set", strict=True, guess=True)
    for match in _COUNT.finditer(text):
        if found:
            words = match.group("knob").split()[0]  # "2500 trees depth=4": the trees
            add(match.start(), match.start() + len(match.group("set")) + 1 + len(words), words,
                value_of(match.group("set")), direction="set", strict=True, guess=True)
    # "constant WD (remove decay) + WARMDOWN_RATIO 0.4 -> 0.3": a second change with no value
    if found:
        for segment in _JOINED.finditer(text):
            if not any(segment.start() <= s < segment.end() for s, _, _, _ in found):
                words = segment.group(0).split("(")[0]
                add(segment.start(), segment.end(), words, None, direction="add")
    if not found:
        for pattern in (_SET_TO, _BARE, _COUNT):
            for match in pattern.finditer(text):
                if pattern is _COUNT:
                    start, words = match.start(), match.group("knob")
                else:
                    start, words = (_knob_before(text, match.start(), 6) if pattern is _SET_TO
                                    else _bare_knob(text, match.start(), resolve))
                # strict: "256 to get smoother estimates" names no knob
                add(start, match.end(), words, value_of(match.group("set")), direction="set",
                    strict=pattern is _COUNT, guess=pattern is not _SET_TO)
            if found:
                break
    return sorted(found, key=lambda item: item[0])


def _bare_knob(text: str, position: int, resolve: Resolve | None) -> tuple[int, str]:
    """The knob of a bare "knob value": the two words before when they name a concept ("batch
    size 64K", "label smoothing 0.1"), else the one word ("imgsz 640" in "yolo11l imgsz 640")."""
    start, words = _knob_before(text, position, 2)
    if len(words.split()) == 2 and not (resolve and resolve(words, False)):
        start, words = _knob_before(text, position, 1)
    return start, words


def _knob_before(text: str, position: int, most: int = 6) -> tuple[int, str]:
    """The words just before `position` that can name a knob (at most `most`), and where they
    start: "MATRIX_LR 0.03 -> ...", "softcap from 30 to ...", "smaller batch (2^18 -> ...",
    "WARMDOWN_RATIO (no warmdown) 0.4 -> ..."."""
    window_start = max(0, position - _LOOKBACK)
    window = text[window_start:position].rstrip()
    for ending in ("(", "from", "From", "FROM"):
        if window.endswith(ending):
            window = window[: -len(ending)].rstrip()
    if window.endswith(")") and "(" in window:
        window = window[: window.rindex("(")].rstrip()
    tail = _TAIL.search(window)
    if tail is None:
        return position, ""
    words = tail.group(0).split()[-most:]
    start = window_start + tail.start() + tail.group(0).index(words[0])
    return start, " ".join(words)


_IDENTIFIER = re.compile(r"_|[a-z][A-Z]|^[A-Z]{3,}$|[A-Za-z]\d|\.")


def knob_name(words: str | None, resolve: Resolve | None = None, strict: bool = False) -> tuple[str, bool]:
    """The name of the knob `words` end with, and whether it is named for sure. An identifier
    (`MATRIX_LR`, `n_embd`, `beta2`) names it, as the vocabulary knows it or as written; plain
    words name the concept they stand for ("dropout in the transformer" is dropout), or, not
    for sure, their last words ("" when `strict`: only a concept or an identifier will do)."""
    if not words:
        return "", False
    tokens = words.split()
    identifier = tokens[-1].strip(".,()")
    if _IDENTIFIER.search(identifier):  # the name just before the value: "Muon beta2 0.95", "grad clip max_norm=1"
        return (resolve(identifier, True) if resolve else None) or normalize_knob(identifier), True
    concept = resolve(words, False) if resolve else None
    if concept or strict:
        return concept or "", bool(concept)
    token = tokens[-1]
    if len(tokens) == 1 and (len(token) == 1 and (token.isupper() or token not in "ai")):
        return token.lower(), True  # "A 0.0 to 0.05", "x=6": a variable, not an article
    return normalize_knob(words), False


def normalize_knob(words: str | None) -> str:
    """Lower-case tokens of a knob's name, joined by "_": "MATRIX_LR" and "matrix LR" are
    "matrix_lr"; direction words and articles are dropped ("a smaller batch" is "batch")."""
    if not words:
        return ""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", words)  # camelCase
    tokens = [t for t in re.split(r"[^a-z0-9]+", text.lower()) if t]
    groups: list[list[str]] = [[]]
    for token in tokens:
        if token in _SPLITS:
            groups.append([])  # "number of layers" is the layers; "beta2 to" is beta2
        elif token not in _NOT_KNOB and not token.isdigit():
            groups[-1].append(token)
    kept: list[str] = []
    for token in next((g for g in reversed(groups) if g), []):
        token = _SYNONYMS.get(token, token)
        if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
            token = token[:-1]  # heads, layers, groups
        kept.append(token)
    tokens = [t for t in kept if t][-3:]
    return "_".join(tokens)


def _within(a: str, b: str) -> bool:
    ta, tb = set(knob_key(a).split("_")), set(knob_key(b).split("_"))
    return bool(ta and tb) and (ta < tb or tb < ta)


@functools.lru_cache(maxsize=65536)
def knob_key(knob: str) -> str:
    """What makes a knob's name the knob: its words but those that only say it is a size or a
    count, so "batch" and "total_batch_size" are one knob; "" for no name."""
    words = set(knob.split("_")) - {""}
    return "_".join(sorted(words - _GENERIC or words))


def knobs_match(a: str, b: str) -> bool:
    """One knob: the same name, but for words that only say it is a size or a count; never
    another name's own word ("dropout" / "dropout_attention", "lr" / "matrix_lr")."""
    return bool(a) and bool(b) and (a == b or knob_key(a) == knob_key(b))


def value_of(text: str) -> Value:
    raw = text.strip().lower().replace(",", "").replace(" ", "")
    if raw in ("true", "on"):
        return True
    if raw in ("false", "off", "none"):
        return False
    scale = 1.0
    if raw.endswith("m") and text.strip().endswith("m"):
        raw = raw[:-1]  # "12m" is months or minutes; a million is written 12M
    if raw.endswith("percent"):
        raw = raw[:-7] + "%"
    if raw.endswith("%"):
        raw, scale = raw[:-1], 0.01
    elif raw and raw[-1] in _SUFFIX:
        raw, scale = raw[:-1], _SUFFIX[raw[-1]]
    try:
        if "^" in raw:
            base, exponent = raw.split("^", 1)
            number = float(base) ** float(exponent)
        else:
            number = float(raw)
    except (ValueError, OverflowError):
        return text.strip()
    binary = scale / 1000 * 1024 if scale in (1e3, 1e6, 1e9) else 0.0
    if binary and _power_of_two(number * binary):
        scale = binary  # 64K is 65536 tokens, 2^16; 65K stays 65,000
    number *= scale
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


def _power_of_two(value: float) -> bool:
    return value >= 1 and float(value).is_integer() and (int(value) & (int(value) - 1)) == 0


def _direction(before: Value, after: Value) -> str:
    if isinstance(before, bool) or isinstance(after, bool):
        return "add" if after is True else "remove" if after is False else "set"
    if isinstance(before, int | float) and isinstance(after, int | float) and before != after:
        return "up" if after > before else "down"
    return "set"


def same_value(a: Value, b: Value, tolerance: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        if a == b:
            return True
        if 0.5 < a < 1 and 0.5 < b < 1:
            a, b = 1 - a, 1 - b  # momentum, beta2, an EMA's decay: 0.9, 0.99, 0.999 are steps apart
        if a > 0 and b > 0:
            return abs(math.log(a / b)) <= math.log1p(tolerance)
        return abs(a - b) <= tolerance * max(abs(a), abs(b))
    if isinstance(a, str) and isinstance(b, str) and a.startswith("x") and b.startswith("x"):
        return same_value(value_of(a[1:]), value_of(b[1:]), tolerance)
    return str(a).lower() == str(b).lower()


def _is_factor(value: Value) -> bool:
    return isinstance(value, str) and value.startswith("x")


_OPPOSITE = {("up", "down"), ("down", "up"), ("add", "remove"), ("remove", "add")}


def relation(a: Claim, b: Claim, tolerance: float) -> Relation:
    """How two claims relate: the same change, another step on the same knob, other knobs, or
    unknown (the same knob, but no value says which step: the words decide).

    Two names of which one holds the other ("matrix_lr" / "muon_matrix_lr") may be one knob:
    with other values that is a step (a link at worst), never the same change."""
    if not knobs_match(a.knob, b.knob):
        if _within(a.knob, b.knob) and a.after is not None and b.after is not None and not _is_factor(
                a.after) and not _is_factor(b.after) and not same_value(a.after, b.after, tolerance):
            return "step"
        return "other"
    if a.scope and b.scope and a.scope != b.scope:
        return "other"
    if a.after is not None and b.after is not None:
        if _is_factor(a.after) != _is_factor(b.after):
            return "unknown"  # "double it" and "to 12": the parent's value would tell
        return "same" if same_value(a.after, b.after, tolerance) else "step"
    if (a.direction, b.direction) in _OPPOSITE:
        return "step"
    return "unknown"


def relate(
    mine: tuple[Claim, ...], theirs: tuple[Claim, ...], tolerance: float, named: bool = False
) -> tuple[Relation, str]:
    """How two changes relate by their claims, and the knob it turns on.

    The same when every claim of one has the same claim in the other (the same knobs, the same
    values); a step when they share a knob set to other values; other when both make claims and
    share no knob, or one makes a second move the other does not ("the same knob plus another
    change" is another experiment); unknown when either makes none or no value decides."""
    if not mine or not theirs:
        return "unknown", ""
    by_key: dict[str, list[Claim]] = {}
    for b in theirs:
        by_key.setdefault(knob_key(b.knob), []).append(b)
    pairs = []
    for a in mine:
        same_knob = by_key.get(knob_key(a.knob))
        near = same_knob or [b for b in theirs if _within(a.knob, b.knob)]
        pairs += [(a, b, relation(a, b, tolerance)) for b in near]
    shared = [(a, b, r) for a, b, r in pairs if r != "other"]
    if not shared:
        return "other", ""
    steps = [a for a, _, r in shared if r == "step"]
    if steps:
        return "step", steps[0].knob
    knob = shared[0][0].knob
    matched_mine = {id(a) for a, _, _ in shared}
    matched_theirs = {id(b) for _, b, _ in shared}
    if len(matched_mine) < len(mine) or len(matched_theirs) < len(theirs):
        # A second move on one side ("max_leaves=31" / "max_leaves=31 max_depth=6") is another
        # experiment when both name their knobs for sure; else it may be the same move said
        # twice ("double the width, 128 -> 256 units"): the words decide.
        return ("other" if named else "unknown"), knob
    if all(r == "same" for _, _, r in shared):
        return "same", knob
    return "unknown", knob


def params_claims(delta: Iterable[tuple[str, Value]], parent: dict[str, Value]) -> tuple[Claim, ...]:
    """The claims of a params delta: each parameter from the parent's value to the new one."""
    return tuple(Claim(name, parent.get(name), value, _direction(parent.get(name), value)) for name, value in delta)
