"""Exceptions of the trials layer. The runner turns each into a failed TrialResult."""

from __future__ import annotations


class ProjectError(ValueError):
    """The user's project cannot be snapshotted (missing, not a folder, empty)."""


class TemplateError(ValueError):
    """A command template cannot be rendered (unknown placeholder, bad quoting)."""


class TrialSetupError(Exception):
    """Something a trial needs could not be prepared (bundle, worktree, command)."""


class GitError(TrialSetupError):
    """A git command failed; the message carries git's own words."""


class BundleError(TrialSetupError):
    """The campaign bundle could not be fetched, or its bytes do not match its id."""


class CommandError(TrialSetupError):
    """A command of the entrypoint could not be started at all."""


class ChainApplyError(TrialSetupError):
    """One change of a node's chain does not apply on top of the changes before it."""

    def __init__(self, change_id: str, detail: str) -> None:
        self.change_id = change_id
        self.detail = detail
        super().__init__(
            f"change {change_id} does not apply on top of the changes before it: {detail}; "
            "a diff must be made against its parent node's code"
        )


class TrialPruned(Exception):
    """Raised by an on_report callback to stop a running trial early (a scheduler's STOP)."""
