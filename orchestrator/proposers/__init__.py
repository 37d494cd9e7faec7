"""Proposers: where changes come from (a human queue, grid, random, Bayesian)."""
