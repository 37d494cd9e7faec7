"""One trial on one machine: materialize a node's code, run it under a budget, read its metrics.

Nothing here imports Ray or the orchestrator, so a trial can be run and tested on its own.
"""
