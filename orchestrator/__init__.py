"""The search and the campaign: config, tree, statistics, policy, memory, proposers, ledger."""
