"""The anti-repetition memory (docs/memory.md). Read its modules in this order:

claims.py   what a change claims: the knob, from what to what (parsed from words when not given)
lexicon.py  the ML vocabulary the text level reads hypotheses with
text.py     targets, places and direction of a hypothesis; the gates that keep ideas apart
ngrams.py   character n-gram retrieval of similar hypotheses, abbreviations learned on the way
code.py     the exact key of a code change, through the AST
core.py     the memory: remember proposals, judge a new one (repeat, revisit, sweep-step, new)
"""

from orchestrator.memory.core import Entry, Memory, MemoryVerdict, same_change_as

__all__ = ["Entry", "Memory", "MemoryVerdict", "same_change_as"]
