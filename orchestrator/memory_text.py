"""Lexical similarity of hypotheses, with the ML wording that matters made explicit.

A hypothesis is reduced to what it changes (its targets: learning rate, dropout, AdamW...), the
direction of the change (increase, decrease, add, remove) and its other content words, after
a small table of synonyms ("lr", "step size" and "learning rate" are one thing). Two
hypotheses about different targets, or about one target in opposite directions, are never the
same idea however many words they share; otherwise they are compared by a weighted overlap of
their words in which targets count most.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Phrases first (longest first), then single words; the right side is the canonical token.
SYNONYMS: dict[str, str] = {
    "learning rate": "lr", "learning-rate": "lr", "step size": "lr", "lr": "lr",
    "weight decay": "weightdecay", "l2 regularization": "weightdecay", "l2 penalty": "weightdecay",
    "l2 regularisation": "weightdecay", "decoupled weight decay": "weightdecay",
    "batch size": "batchsize", "minibatch size": "batchsize", "mini-batch size": "batchsize",
    "batchsize": "batchsize", "mini-batches": "batchsize", "minibatches": "batchsize", "batches": "batchsize",
    "label smoothing": "labelsmoothing", "dropout": "dropout", "drop out": "dropout",
    "hidden size": "width", "hidden units": "width", "hidden layer size": "width", "hidden width": "width",
    "hidden dimension": "width", "hidden dim": "width", "neurons": "width", "hidden units per layer": "width",
    "width": "width", "wider": "width increase", "narrower": "width decrease",
    "number of layers": "depth", "hidden layers": "depth", "more layers": "depth increase",
    "extra layer": "depth increase", "another layer": "depth increase", "extra hidden layer": "depth increase",
    "another hidden layer": "depth increase", "additional layer": "depth increase", "fewer layers": "depth decrease",
    "depth": "depth", "deeper": "depth increase",
    "shallower": "depth decrease",
    "epochs": "epochs", "epoch": "epochs", "iterations": "epochs", "training steps": "epochs",
    "max iter": "epochs", "max_iter": "epochs", "train longer": "epochs increase", "longer training": "epochs increase",
    "momentum": "momentum", "nesterov": "nesterov",
    "warm up": "warmup", "warm-up": "warmup", "warmup": "warmup",
    "cosine annealing": "cosine", "cosine decay": "cosine", "cosine schedule": "cosine", "cosine": "cosine",
    "step decay": "stepdecay", "step schedule": "stepdecay", "multistep": "stepdecay", "step lr": "stepdecay",
    "exponential decay": "expdecay", "exponentially decaying": "expdecay", "exponential schedule": "expdecay",
    "one cycle": "onecycle", "one-cycle": "onecycle", "onecycle": "onecycle",
    "linear decay": "lineardecay", "constant learning rate": "constantlr",
    "gradient clipping": "gradclip", "clip gradients": "gradclip", "clip the gradients": "gradclip",
    "gradient norm clipping": "gradclip", "clipping": "gradclip",
    "batch normalization": "batchnorm", "batch norm": "batchnorm", "batchnorm": "batchnorm",
    "layer normalization": "layernorm", "layer norm": "layernorm", "layernorm": "layernorm",
    "early stopping": "earlystop", "stop early": "earlystop",
    "data augmentation": "augment", "augmentation": "augment", "augment": "augment", "augmented": "augment",
    "random crops": "crop", "random cropping": "crop", "crop": "crop", "flips": "flip", "flip": "flip",
    "mixup": "mixup", "cutout": "cutout", "noise": "noise", "gaussian noise": "noise",
    "standardize": "standardize", "standardise": "standardize", "standardization": "standardize",
    "normalize the inputs": "standardize", "normalise the inputs": "standardize", "zero mean": "standardize",
    "unit variance": "standardize", "feature scaling": "standardize", "scale the inputs": "standardize",
    "adamw": "adamw", "adam": "adam", "sgd": "sgd", "stochastic gradient descent": "sgd", "rmsprop": "rmsprop",
    "lion": "lion", "lamb": "lamb", "adagrad": "adagrad",
    "relu": "relu", "gelu": "gelu", "silu": "silu", "swish": "silu", "tanh": "tanh", "leaky relu": "leakyrelu",
    "he initialization": "heinit", "kaiming": "heinit", "xavier": "xavierinit", "glorot": "xavierinit",
    "initialization": "init", "initialisation": "init", "init": "init",
    "focal loss": "focalloss", "cross entropy": "crossentropy", "cross-entropy": "crossentropy",
    "class weights": "classweights", "class weighting": "classweights",
    "ema": "ema", "exponential moving average": "ema", "weight averaging": "ema",
    "residual connections": "residual", "skip connections": "residual", "residual": "residual",
    "attention": "attention", "ensemble": "ensemble", "ensembling": "ensemble",
    "subsample": "subsample", "fraction of the data": "subsample", "subset of the data": "subsample",
    "half the data": "subsample", "quarter of the data": "subsample",
    "shuffle": "shuffle", "shuffling": "shuffle", "reshuffle": "shuffle",
    "examples": "data", "samples": "data", "dataset": "data", "training set": "data", "training data": "data",
    "standard deviation": "standardize", "weight the classes": "classweights", "stop training early": "earlystop",
    "exponentially": "expdecay", "exponential": "expdecay", "seed": "seed", "random stream": "seed", "rng": "seed",
    "test-time augmentation": "tta", "test time augmentation": "tta", "tta": "tta",
}

TARGETS = frozenset(
    v.split()[0] for v in SYNONYMS.values()
    if v.split()[0] not in {"increase", "decrease"}
)

DIRECTIONS: dict[str, str] = {
    **dict.fromkeys(
        ("increase", "increasing", "increased", "raise", "raising", "higher", "larger", "bigger", "more", "double",
         "doubling", "grow", "boost", "longer", "up", "greater", "expand", "widen", "deepen", "stronger",
         "heavier", "multiply", "triple", "lengthen", "extend", "extra", "additional", "another"), "increase"),
    **dict.fromkeys(
        ("decrease", "decreasing", "decreased", "lower", "lowering", "reduce", "reducing", "smaller", "less",
         "fewer", "halve", "halving", "shrink", "cut", "shorter", "down", "weaker", "lighter", "narrow",
         "shallower", "divide", "tone", "shorten"), "decrease"),
    **dict.fromkeys(("add", "adding", "introduce", "insert", "enable", "apply", "include", "use", "using"), "add"),
    **dict.fromkeys(("remove", "removing", "drop", "dropping", "disable", "delete", "without", "eliminate",
                     "skip", "no"), "remove"),
}
OPPOSITE = {"increase": "decrease", "decrease": "increase", "add": "remove", "remove": "add"}

STOPWORDS = frozenset((
    "a", "an", "the", "of", "to", "in", "on", "for", "from", "by", "with", "and", "or", "but", "as", "at", "is",
    "are", "be", "been", "being", "it", "its", "this", "that", "these", "those", "so", "than", "then", "into",
    "onto", "over", "under", "via", "per", "which", "who", "whom", "whose", "what", "when", "where", "why", "how",
    "we", "our", "you", "your", "should", "would", "could", "may", "might", "will", "can", "might", "help", "helps",
    "improve", "improves", "improving", "better", "model", "training", "train", "trained", "network", "net", "try",
    "trying", "let", "make", "makes", "making", "set", "setting", "change", "changing", "switch", "switching",
    "instead", "value", "values", "current", "currently", "slightly", "bit", "much", "some", "very", "also", "just",
    "each", "every", "all", "any", "same", "because", "since", "so", "thus", "likely", "probably", "expect",
    "expected", "might", "overall", "new", "old", "default", "baseline", "run", "runs",
))

_WORD = re.compile(r"[a-z0-9_]+(?:\.[0-9]+)?")
_NUMBER = re.compile(r"^[0-9.]+$")
_PURPOSE = re.compile(r"\s(?:to|so|so that|for|because|in order to|which|that)\s(?=[a-z]+ )|[,;:(]")


@dataclass(frozen=True)
class Text:
    """A hypothesis as the memory compares it."""

    tokens: frozenset[str]
    targets: frozenset[str]
    directions: frozenset[str]
    weight: float = 0.0  # sum of its tokens' weights (a target 3, another word 1)


def analyze(hypothesis: str, extra_targets: frozenset[str] = frozenset()) -> Text:
    text = " " + hypothesis.lower().replace("/", " ").replace("-", " - ") + " "
    text = text.replace(" - ", "-")
    for phrase in sorted(SYNONYMS, key=len, reverse=True):
        if " " in phrase or "-" in phrase:
            text = text.replace(f" {phrase} ", f" {SYNONYMS[phrase]} ")
    tokens: set[str] = set()
    targets: set[str] = set()
    directions: set[str] = set()
    # The direction of a change is in its main clause; "to reduce overfitting" is its purpose.
    for clause in (_PURPOSE.split(text, maxsplit=1)[0], text):
        for word in _WORD.findall(clause):
            for part in SYNONYMS.get(word, word).split():
                if part in DIRECTIONS:
                    directions.add(DIRECTIONS[part])
        if directions:
            break  # else the whole sentence: "train for fewer epochs" has its direction after "for"
    for word in _WORD.findall(text):
        for part in SYNONYMS.get(word, word).split():
            if part in DIRECTIONS:
                continue
            if part in STOPWORDS or _NUMBER.match(part):
                continue
            stem = part if part in TARGETS or part in extra_targets else _stem(part)
            tokens.add(stem)
            if stem in TARGETS or part in extra_targets:
                targets.add(stem if stem in TARGETS else part)
    # "add"/"use" next to a magnitude word is the magnitude's direction ("use a larger lr").
    if directions & {"increase", "decrease"}:
        directions -= {"add", "remove"}
    weight = float(len(tokens)) + 2.0 * len(targets & tokens)
    return Text(frozenset(tokens), frozenset(targets), frozenset(directions), weight)


def _stem(word: str) -> str:
    for suffix in ("ations", "ation", "ings", "ing", "ness", "ies", "ied", "es", "ed", "ly", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)] + ("y" if suffix in ("ies", "ied") else "")
    return word


def compatible(a: Text, b: Text) -> bool:
    """False when the two cannot be one idea: other targets, or opposite directions."""
    if a.targets and b.targets and not a.targets & b.targets:
        return False
    if a.targets != b.targets and a.targets and b.targets and len(a.targets ^ b.targets) > 1:
        return False
    return not any(OPPOSITE[d] in b.directions for d in a.directions) or a.directions == b.directions


def bound(a: Text, b: Text) -> float:
    """An upper bound of similarity(a, b), cheap enough to skip most candidates with."""
    common = len(a.tokens & b.tokens)
    if not common:
        return 0.0
    union = len(a.tokens) + len(b.tokens) - common
    return min(1.0, 3.0 * common / (union + 2.0 * common) + 0.15)


def similarity(a: Text, b: Text) -> float:
    """Weighted overlap of the two token sets: a shared target weighs 3, another word 1."""
    if not compatible(a, b):
        return 0.0
    common = a.tokens & b.tokens
    targets = a.targets | b.targets
    shared = float(len(common)) + 2.0 * len(common & targets)
    union = a.weight + b.weight - shared
    if union <= 0:
        return 0.0
    score = shared / union
    if a.directions and a.directions == b.directions and common & targets:
        score = min(1.0, score + 0.15)  # the same move on the same target: the core of an idea
    return score
