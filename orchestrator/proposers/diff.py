"""The code proposer's drafter: K unified diffs per LLM call, each one change of one aspect.

The prompt holds the task, the parent node's files, what the tree has tried (effects with
intervals, failures with their stage and log tail) and what was rejected and why. Each diff is
checked as the engine will check it (one declared aspect, editable files only, no protected
path, within the size limit, applies with `git apply --check` on the parent) before it is
queued; a failed one goes back to the LLM with the reason.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from orchestrator.admission import aspect_problem
from orchestrator.change import CLAIM_FIELDS, DIRECTIONS, Change, read_claim
from orchestrator.config import ASPECTS, CampaignConfig, ProposerConfig
from orchestrator.proposers.drafting import BatchResult, draft_batch
from orchestrator.proposers.llm import LLMClient
from trials.gitutil import git_text, run_git
from trials.patch import matches_entry, touched_paths, validate_diff
from trials.worktree import CampaignRepo

MAX_PROMPT_FILE_CHARS = 60_000  # all files together; keeps a prompt within any model's window
MISSING_CLAIM = f"missing claim (what the change changes, as data: {', '.join(CLAIM_FIELDS)})"

SYSTEM = """You improve the training code of a machine-learning project, one small change at a time.
An orchestrator tests each change on several seeds against its parent and keeps it only if it
is significantly better; so propose changes that are each a single, self-contained idea.

Rules for every proposal:
- exactly one aspect, one of: {aspects}
- a unified diff (as printed by `git diff`, paths a/FILE and b/FILE relative to the project
  root, with correct @@ hunk headers and at least 3 lines of context) that applies to the files
  shown below as they are;
- only these files may change: {editable}; never: {protected};
- at most {max_lines} changed lines and {max_bytes} bytes; no binary files, no symlinks or
  file modes other than 100644/100755, no paths outside the project;
- not a repeat of anything already tried or rejected (listed below), even in other words.

Reply with only a JSON object:
{{"proposals": [{{"aspect": "...", "hypothesis": "one sentence: what changes and why it should help",
"claim": {{"knob": "dropout", "from": 0.0, "to": 0.1, "direction": "up", "scope": "attention"}},
"files": ["train.py"], "diff": "diff --git a/train.py b/train.py\\n--- a/train.py\\n+++ b/train.py\\n@@ ..."}}]}}
Each proposal's claim states its change as data:
- knob: the knob or mechanism it changes, a short snake_case name ("dropout", "warmup_steps", "value_embeddings");
- from: its value before the change (a number, a short text, true/false), or null when it has none;
- to: its value after the change, or null when the change sets no value;
- direction: one of {directions}, or "" when none fits;
- scope: where it applies when only part of the model or the run ("attention", "layers 0-5"), else ""."""


class CodeDrafter:
    kind = "code"

    def __init__(self, name: str, config: CampaignConfig, spec: ProposerConfig, repo: CampaignRepo) -> None:
        self.name = name
        self._config = config
        self._spec = spec
        self._repo = repo

    def draft(self, client: LLMClient, request: dict[str, Any]) -> BatchResult:
        commit = request["parent_commit"]

        def check(item: dict[str, Any]) -> tuple[Change | None, str]:
            return self.check(item, commit, request)

        return draft_batch(
            client, self.messages(request), check, k=self._spec.k, max_repairs=self._spec.max_repairs,
            purpose=f"{self.name} code proposals for {request['parent_id']}",
            item_label=lambda item: repr(str(item.get("hypothesis", ""))[:120]),
        )

    # ----- the prompt ----------------------------------------------------------------------
    def messages(self, request: dict[str, Any]) -> list[dict[str, str]]:
        config = self._config
        system = SYSTEM.format(
            aspects=", ".join(ASPECTS), editable=", ".join(config.editable or ["any project file"]),
            protected=", ".join(config.protected) or "(none)", max_lines=config.limits.max_diff_lines,
            max_bytes=config.limits.max_diff_bytes, directions=", ".join(DIRECTIONS),
        )
        parts = [f"Task: {config.task or '(no description given)'}"]
        objective = config.objective
        parts.append(f"Objective: {objective} ({config.metrics[objective].direction}imize it).")
        params = json.dumps(request["parent_params"], sort_keys=True)
        parts.append(f"Parent node: {request['parent_id']}; its hyperparameters: {params}")
        parts.append(_history_text(request.get("records", []), self._spec.history))
        parts.append(_rejected_text(request.get("rejected", [])))
        parts.append("Files of the parent node:\n" + self._files_text(request["parent_commit"]))
        parts.append(f"Propose {self._spec.k} diverse changes, each of one aspect.")
        return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(parts)}]

    def _files_text(self, commit: str) -> str:
        listed = git_text(["ls-tree", "-r", "--name-only", commit], cwd=self._repo.path).splitlines()
        globs = self._spec.files or self._config.editable
        budget = MAX_PROMPT_FILE_CHARS
        chunks = []
        for path in listed:
            if path.startswith(".arborist/") or any(matches_entry(path, p) for p in self._config.protected):
                continue
            if globs is not None and not any(matches_entry(path, g) for g in globs):
                continue
            text = self._read(commit, path)
            if text is None:
                continue
            if len(text) > self._spec.max_file_chars:
                text = text[: self._spec.max_file_chars] + "\n... (truncated)\n"
            if len(text) > budget:
                chunks.append(f"=== {path} (omitted: the prompt's file budget is spent)")
                continue
            budget -= len(text)
            chunks.append(f"=== {path}\n{text}")
        return "\n".join(chunks) or "(no editable files)"

    def _read(self, commit: str, path: str) -> str | None:
        proc = run_git(["cat-file", "-p", f"{commit}:{path}"], cwd=self._repo.path, check=False)
        if proc.returncode != 0 or b"\0" in proc.stdout[:8000]:
            return None
        try:
            return proc.stdout.decode()
        except UnicodeDecodeError:
            return None

    # ----- checking one item ---------------------------------------------------------------
    def check(self, item: dict[str, Any], commit: str, request: dict[str, Any]) -> tuple[Change | None, str]:
        claim, claim_problem = read_claim(item["claim"]) if item.get("claim") is not None else (None, MISSING_CLAIM)
        problem = self._diff_problem(item, commit)
        # Both problems at once: a repair round costs a call, so it should fix everything.
        problems = [p for p in (problem, claim_problem) if p]
        if problems:
            return None, "; ".join(problems)
        diff = _terminated(str(item["diff"]))
        return Change(
            kind="code", aspect=str(item["aspect"]), hypothesis=str(item["hypothesis"]).strip(), proposer=self.name,
            diff=diff, claim=claim,
            source_id=f"{self.name}-{request.get('request_id', 0)}-{hashlib.sha256(diff.encode()).hexdigest()[:10]}",
        ), ""

    def _diff_problem(self, item: dict[str, Any], commit: str) -> str:
        """Why the item's aspect, hypothesis or diff cannot be a change of the parent ("" when it can)."""
        aspect, hypothesis, diff = item.get("aspect"), item.get("hypothesis"), item.get("diff")
        problem = aspect_problem(aspect)
        if problem:
            return problem
        if not isinstance(hypothesis, str) or not hypothesis.strip():
            return "missing hypothesis (one sentence: what changes and why)"
        if not isinstance(diff, str) or not diff.strip():
            return "missing diff (a unified diff as a JSON string)"
        diff = _terminated(diff)
        config = self._config
        problems = validate_diff(diff, protected=config.protected, editable=config.editable, limits=config.limits)
        if problems:
            return "; ".join(problems)
        files = item.get("files")
        if isinstance(files, list) and files and set(map(str, files)) != set(touched_paths(diff)):
            return f"files lists {sorted(map(str, files))} but the diff touches {touched_paths(diff)}"
        error = self._repo.check_diff(commit, diff)
        if error:
            return f"does not apply to the parent's files: {error.strip()[:400]}"
        return ""


def _terminated(diff: str) -> str:
    return diff if diff.endswith("\n") else diff + "\n"


def _history_text(records: list[dict[str, Any]], limit: int) -> str:
    if not records:
        return "Tried so far: nothing yet."
    lines = ["Tried so far (oldest first; gain is the paired mean over the parent, 95% interval):"]
    for r in records[-limit:] if limit else []:
        if r["kind"] == "baseline":
            lines.append(f"- {r['node_id']} baseline: mean {_num(r['objective_mean'])} over {r['seeds']} seeds")
            continue
        effect = ""
        if r.get("gain") is not None:
            effect = f" gain {_num(r['gain'])} [{_num(r.get('ci_low'))}, {_num(r.get('ci_high'))}]"
        line = f"- {r['node_id']} (child of {r['parent_id']}) [{r['aspect']}] {r['hypothesis']}: {r['status']}{effect}"
        if r.get("failure_stage"):
            tail = " | ".join(str(r.get("log_tail", "")).strip().splitlines()[-4:])
            line += f"; failed at stage {r['failure_stage']}: {tail[:300]}"
        elif r.get("reason"):
            line += f" ({r['reason'][:160]})"
        lines.append(line)
    return "\n".join(lines)


def _rejected_text(rejected: list[dict[str, Any]]) -> str:
    if not rejected:
        return "Rejected proposals: none."
    lines = ["Rejected proposals (do not send these again):"]
    for r in rejected:
        lines.append(f"- [{r['aspect']}] {r['hypothesis'][:160]}: {r['reason'][:240]}")
    return "\n".join(lines)


def _num(value: Any) -> str:
    return "?" if value is None else f"{float(value):.4g}"
