"""The campaign config: YAML, validated on load, with errors that name the file, field and line.

Relative paths in a config resolve against the config file's folder, so a campaign runs the
same whatever the current directory is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator import sequential
from orchestrator.yamlfile import YamlFileError, load_yaml
from trials.entrypoint import COMMAND_FIELDS
from trials.errors import ProjectError
from trials.patch import matches_entry
from trials.protect import entry_problem, find_definition, is_definition, split_entry
from trials.spec import KEEP_COMPLETE_TRIALS, KEEP_FAILED_TRIALS
from trials.worktree import project_files

BUILTIN_METRICS = ("train_time_s",)  # measured by arborist around the train step
ASPECTS = ("optimizer", "lr_schedule", "architecture", "regularization", "data", "loss", "other")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# A metric name is a key of the metrics file, a Ray Tune result key and a ledger column.
METRIC_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]{0,127}$")


Bounds = tuple[float | None, float | None]  # low, high; None: unbounded on that side


class ConfigError(ValueError):
    """A mistake in a campaign config; the message says where and what to do."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EntrypointConfig(_Model):
    train: str = Field(description="command run in the trial's worktree; {param} and {seed} are filled in")
    evaluate: str | None = Field(
        default=None, description="protected command that alone produces the decision metrics"
    )
    setup: str | None = None
    budget_s: float = Field(default=600.0, gt=0)
    evaluate_budget_s: float = Field(default=300.0, gt=0)
    env: dict[str, str] = Field(default_factory=dict)
    evaluate_env: dict[str, str] = Field(default_factory=dict)
    inherit_env: list[str] = Field(default_factory=list)


class MetricConfig(_Model):
    direction: Literal["min", "max"]
    role: Literal["objective", "guard", "info"] = "info"
    regex: str | None = Field(default=None, description="read from evaluate output; group 1 is the value")
    # Guards: bounds on the child's mean, absolute or relative to its parent's mean.
    max: float | None = None
    min: float | None = None
    max_ratio: float | None = Field(default=None, gt=0)
    min_ratio: float | None = Field(default=None, gt=0)
    # Plausibility: values the metric cannot pass (accuracy [0, 1], a loss [0, null]). A change
    # whose metric sits at one is suspect, whatever its role (docs/statistics.md).
    bounds: Bounds | None = None

    @field_validator("regex")
    @classmethod
    def _regex_captures(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                pattern = re.compile(value)
            except re.error as exc:
                raise ValueError(f"regex does not compile: {exc}") from exc
            if not pattern.groups:
                raise ValueError(
                    f"regex {value!r} has no capture group, so no number can be read from a match; put the number "
                    r"in parentheses, e.g. 'val_loss: ([0-9.eE+-]+)' (or name it (?P<value>...))"
                )
        return value

    @field_validator("bounds")
    @classmethod
    def _bounds_ordered(cls, value: Bounds | None) -> Bounds | None:
        if value is not None:
            low, high = value
            if low is None and high is None:
                raise ValueError("bounds [null, null] bounds nothing; give a low, a high or both, or leave bounds out")
            if low is not None and high is not None and not low < high:
                raise ValueError(f"bounds: low ({low}) must be below high ({high})")
        return value

    @model_validator(mode="after")
    def _guard_has_bound(self) -> MetricConfig:
        bounds = (self.max, self.min, self.max_ratio, self.min_ratio)
        if self.role == "guard" and all(b is None for b in bounds):
            raise ValueError("a guard needs a bound: one of max, min, max_ratio, min_ratio")
        if self.role != "guard" and any(b is not None for b in bounds):
            raise ValueError("bounds (max, min, max_ratio, min_ratio) only apply to role: guard")
        return self


class ParamConfig(_Model):
    type: Literal["float", "int", "choice"]
    default: Any
    low: float | None = None
    high: float | None = None
    log: bool = False
    values: list[Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ParamConfig:
        # Imported here: admission reads configs, so it imports this module.
        from orchestrator.admission import value_problem

        if self.type == "choice":
            if not self.values:
                raise ValueError("type: choice needs a non-empty list `values`")
        else:
            if self.low is None or self.high is None:
                raise ValueError(f"type: {self.type} needs `low` and `high`")
            if not self.low < self.high:
                raise ValueError(f"low ({self.low}) must be below high ({self.high})")
            if self.log and self.low <= 0:
                raise ValueError("log: true needs low > 0")
        # The default is the root's setting: held to the rules of every other value.
        problem = value_problem(self, self.default)
        if problem:
            raise ValueError(f"default {problem}")
        return self


class SeedsConfig(_Model):
    baseline: int = Field(default=5, ge=1, description="seeds for the root (baseline)")
    max: int = Field(default=sequential.N_MAX, ge=1, description="cap of a child's test seeds")
    start: int = Field(default=0, ge=0, description="first seed value")

    @model_validator(mode="before")
    @classmethod
    def _removed_fields(cls, data: Any) -> Any:
        if isinstance(data, dict) and "initial" in data:
            raise ValueError(
                "seeds.initial was removed (a child's first seeds are its screening blocks, "
                "stats.screen_blocks); delete the line"
            )
        return data

    @model_validator(mode="after")
    def _ordered(self) -> SeedsConfig:
        if self.baseline > self.max:
            raise ValueError(f"baseline ({self.baseline}) must not exceed max ({self.max})")
        return self


class StatsConfig(_Model):
    """The decision rule; docs/statistics.md states what each number guarantees."""

    fdr: float = Field(default=sequential.FDR, gt=0, lt=0.5, description="bound on the false-discovery rate")
    initial_wealth: float = Field(
        default=sequential.W0, gt=0, lt=0.5, description="bound on P(any promotion) when every change is null"
    )
    tests_expected: float | None = Field(
        default=None, gt=0, description="tests the error budget is spread over (default: max_trials / 25)"
    )
    screen_blocks: int = Field(default=sequential.SCREEN_BLOCKS, ge=0, description="blocks a child is screened on")
    screen_z: float = Field(default=sequential.SCREEN_Z, description="standardized screening gain to enter the test")
    beta: float = Field(default=sequential.BETA, gt=0, lt=1, description="futility: prune at this e-value")
    theta: float = Field(default=sequential.THETA, gt=0, description="alternatives' centre, in sds of a difference")
    clip: float = Field(default=sequential.CLIP, ge=0, description="pull differences to within this many pooled sds")
    min_effect: float = Field(default=0.0, ge=0, description="smallest gain worth promoting, in objective units")
    min_seeds: int = Field(default=sequential.N_MIN, ge=1, description="no promotion on fewer paired seeds in the test")
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    pair_window: int = Field(
        default=0, ge=0, description="most trials finished between the starts of a pair's trials (0: auto)"
    )
    drift_window: int = Field(default=4, ge=1, description="controls the drift monitor compares, early and recent")
    drift_z: float = Field(default=4.0, gt=0, description="shift of the controls, in standard errors, that is drift")
    # Real changes reach tens of sigma_d where paired noise is small (the toy project's best
    # params change: 28); faked metrics reach hundreds.
    suspect_sigma: float = Field(
        default=50.0, gt=0, description="a paired gain beyond this many sigma_d is suspect, not promoted"
    )

    @model_validator(mode="before")
    @classmethod
    def _removed_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            removed = {
                "confirm_seeds": "confirmation is now the test itself, on blocks run after screening",
                "alpha": "integration grafts are tested in the campaign's stream, under stats.fdr",
            }
            for name, why in removed.items():
                if name in data:
                    raise ValueError(f"stats.{name} was removed ({why}); delete the line")
        return data

    @model_validator(mode="after")
    def _wealth_below_fdr(self) -> StatsConfig:
        if self.initial_wealth > self.fdr:
            raise ValueError(f"initial_wealth ({self.initial_wealth}) must not exceed fdr ({self.fdr})")
        return self


class ProposerConfig(_Model):
    # One of the types registered in orchestrator/proposers/registry.py (queue, bayes, random,
    # grid, llm_params, llm_code, hybrid): the registry is the one list of them.
    type: str
    path: Path | None = None  # queue: hypotheses file
    algorithm: Literal["optuna", "random"] = "optuna"  # bayes, hybrid: which Tune search algorithm
    max_proposals: int | None = Field(default=None, ge=1)
    # LLM proposers (llm_params, llm_code, and the code side of hybrid)
    k: int = Field(default=4, ge=1, le=16, description="proposals one LLM call returns")
    ready: int = Field(default=2, ge=1, le=64, description="validated proposals kept ready ahead of the search")
    max_repairs: int = Field(default=2, ge=0, le=8, description="times a failed proposal is sent back to be fixed")
    files: list[str] | None = Field(default=None, description="globs of files shown to the LLM (default: editable)")
    max_file_chars: int = Field(default=20_000, ge=1000, description="characters of each file shown to the LLM")
    history: int = Field(default=30, ge=0, description="most recent decided changes shown in the prompt")
    # hybrid
    stall_after: int = Field(default=6, ge=1, description="hybrid: params changes decided without a gain, then code")
    fallback_after: int = Field(default=3, ge=1, description="hybrid: code proposals failing in a row, then params")

    @field_validator("type")
    @classmethod
    def _registered(cls, value: str) -> str:
        # Imported here: the registry builds proposers from configs, so it imports this module.
        from orchestrator.proposers.registry import type_problem

        problem = type_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _queue_has_path(self) -> ProposerConfig:
        if self.type == "queue" and self.path is None:
            raise ValueError("a queue proposer needs `path`, the hypotheses file")
        return self

    @property
    def uses_llm(self) -> bool:
        """Drafted by an LLM: needs the `llm:` section and the proposer actor."""
        from orchestrator.proposers.registry import llm_types

        return self.type in llm_types()


class LLMConfig(_Model):
    """The model LLM proposers call through litellm; the key comes from the environment."""

    model: str = Field(description="litellm model string, e.g. openai/gpt-4o-mini or anthropic/claude-sonnet-4-5")
    api_base: str | None = Field(default=None, description="base URL, e.g. http://127.0.0.1:8000/v1 for a local server")
    api_key_env: str | None = Field(
        default=None, description="environment variable holding the key (default: the provider's usual one)"
    )
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int = Field(default=4096, ge=16, description="completion tokens per call at most")
    timeout_s: float = Field(default=120.0, gt=0, description="one call's time limit")
    max_retries: int = Field(default=4, ge=0, le=20, description="retries of a retryable error (429, 5xx, timeout)")
    backoff_s: float = Field(default=2.0, ge=0, description="wait before the first retry; doubles each time")
    input_cost_per_token: float | None = Field(default=None, ge=0, description="USD; needed for unknown models")
    output_cost_per_token: float | None = Field(default=None, ge=0, description="USD; needed for unknown models")

    @model_validator(mode="after")
    def _prices_together(self) -> LLMConfig:
        if (self.input_cost_per_token is None) != (self.output_cost_per_token is None):
            raise ValueError("give both input_cost_per_token and output_cost_per_token, or neither")
        return self


class MemoryConfig(_Model):
    """How alike two proposals must be to count as the same idea (docs/memory.md)."""

    text_threshold: float = Field(
        default=0.55, gt=0, le=1,
        description="lexical similarity of two hypotheses (0 to 1) at or above which they are duplicates",
    )
    ngram_threshold: float = Field(
        default=0.7, gt=0, le=1,
        description="character n-gram TF-IDF cosine of two hypotheses' change parts at or above which they are the "
        "same change",
    )
    structural: bool = Field(
        default=True,
        description="a code change making the same move (targets, places, direction) with the same aspect as an "
        "earlier one is the same change",
    )
    param_tolerance: float = Field(
        default=0.05, ge=0,
        description="relative difference under which two values of a knob are the same value (0.0100 and 0.0102)",
    )
    max_retries: int = Field(
        default=1, ge=0,
        description="times the same change may be tried again on one parent after its trial failed (a revisit)",
    )
    embedding_model: str | None = Field(default=None, description="litellm embedding model for hypotheses")
    embedding_threshold: float = Field(
        default=0.9, gt=0, le=1,
        description="cosine similarity of hypothesis embeddings at or above which they are duplicates",
    )


class SearchConfig(_Model):
    proposers: list[ProposerConfig] = Field(min_length=1)
    max_children: int = Field(default=20, ge=1, description="children per node at most")
    max_open_nodes: int = Field(default=4, ge=1, description="nodes under evaluation at once")
    exploration: float = Field(default=1.0, ge=0, description="UCB weight of a node's uncertainty when expanding")


class BudgetConfig(_Model):
    """When the search stops: whichever limit is reached first."""

    max_trials: int = Field(default=200, ge=1)
    max_wall_s: float = Field(
        default=3600.0, gt=0, description="wall-clock seconds of search, summed over sessions; no trial starts after"
    )
    grace_s: float = Field(
        default=60.0, ge=0,
        description="seconds trials running when max_wall_s is spent may go on; then they are stopped (STOPPED)",
    )
    max_gpu_hours: float | None = Field(default=None, gt=0, description="GPU-hours of finished trials")
    max_llm_usd: float | None = Field(default=None, ge=0, description="spend of proposals, in US dollars")
    patience: int | None = Field(default=None, ge=1, description="decided changes without a new incumbent")
    target: float | None = Field(default=None, description="stop once the incumbent's objective mean reaches it")


class IntegrationConfig(_Model):
    enabled: bool = True
    max_trials: int = Field(default=40, ge=1, description="trials the integration stage may spend")


class RayConfig(_Model):
    address: str | None = Field(default=None, description="None: start a local Ray")
    max_concurrent: int = Field(default=2, ge=1)
    cpus_per_trial: float = Field(default=1.0, ge=0)
    gpus_per_trial: float = Field(default=0.0, ge=0)
    scratch_dir: Path | None = Field(
        default=None,
        description="where each machine keeps bundles, worktrees and trial outputs (default <campaign_dir>/scratch); "
        "a node with ARBORIST_SCRATCH_DIR in its environment uses that folder instead",
    )
    keep_complete_trials: int = Field(
        default=KEEP_COMPLETE_TRIALS, ge=0, description="folders of ended complete trials each worker keeps"
    )
    keep_failed_trials: int = Field(
        default=KEEP_FAILED_TRIALS, ge=0, description="folders of ended trials that did not complete each worker keeps"
    )


class DataConfig(_Model):
    files: list[str] = Field(default_factory=list, description="project files hashed into the data fingerprint")
    heldout: dict[str, Path] = Field(
        default_factory=dict, description="env var -> file outside the project, given to evaluate alone"
    )


class LimitsConfig(_Model):
    """How large a code change may be (checked before anything else reads the diff), and what a
    trial's steps may use."""

    max_diff_bytes: int = Field(default=200_000, ge=1, description="a diff's size in bytes (UTF-8)")
    max_diff_lines: int = Field(default=400, ge=1, description="changed (+/-) lines of a diff")
    max_diff_line_chars: int = Field(default=5000, ge=1, description="characters in a diff's longest line")
    memory_mb: int | None = Field(
        default=None, ge=64, description="address space per process of a step (RLIMIT_AS); breaks CUDA"
    )
    max_cpu_s: float | None = Field(default=None, gt=0, description="CPU seconds per process of a step (RLIMIT_CPU)")
    max_log_mb: float = Field(default=64.0, gt=0, description="output of one step kept in its log (head and tail)")
    max_output_mb: float = Field(default=10240.0, gt=0, description="size of a trial's output dir")


class SandboxConfig(_Model):
    mode: Literal["auto", "bwrap", "none"] = Field(
        default="auto", description="auto: bubblewrap when it works on the worker, else unsandboxed with a warning"
    )
    network: bool = Field(default=True, description="false: the steps run without any network")
    read_only: list[Path] = Field(
        default_factory=list, description="folders or files outside the project that every step may read"
    )


class S3Config(_Model):
    """How to reach an s3:// ledger; unset fields fall back to the standard AWS variables and profiles."""

    endpoint_url: str | None = Field(default=None, description="e.g. http://127.0.0.1:8333 for SeaweedFS or MinIO")
    region: str | None = Field(default=None, description="default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1")
    profile: str | None = Field(default=None, description="a profile of ~/.aws/config")
    access_key_env: str | None = Field(default=None, description="variable holding the access key id")
    secret_key_env: str | None = Field(default=None, description="variable holding the secret key")
    create_bucket: bool = Field(default=False, description="create the bucket when it does not exist")


class CampaignConfig(_Model):
    name: str
    project: Path
    campaign_dir: Path | None = None
    storage: str | None = None
    s3: S3Config = Field(default_factory=S3Config)
    seed: int = 0
    entrypoint: EntrypointConfig
    metrics: dict[str, MetricConfig]
    params: dict[str, ParamConfig] = Field(default_factory=dict)
    protected: list[str] = Field(default_factory=list)
    editable: list[str] | None = None
    data: DataConfig = Field(default_factory=DataConfig)
    packages: list[str] = Field(default_factory=lambda: ["numpy", "scipy"])
    seeds: SeedsConfig = Field(default_factory=SeedsConfig)
    stats: StatsConfig = Field(default_factory=StatsConfig)
    search: SearchConfig
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    integration: IntegrationConfig = Field(default_factory=IntegrationConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    task: str = Field(default="", description="what the project does and what to improve, shown to LLM proposers")
    llm: LLMConfig | None = None
    memory: MemoryConfig = Field(default_factory=MemoryConfig)

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError("use letters, digits, '-', '_' or '.', at most 64 characters")
        return value

    @field_validator("metrics")
    @classmethod
    def _metric_names_ok(cls, value: dict[str, MetricConfig]) -> dict[str, MetricConfig]:
        for name in value:
            if not METRIC_NAME_RE.match(name):
                raise ValueError(
                    f"metric name {name!r} is not usable: start with a letter or '_', then letters, digits, "
                    "'_', '.', '/' or '-' (no spaces), as the metrics file and the ledger name it"
                )
        return value

    @model_validator(mode="after")
    def _coherent(self) -> CampaignConfig:
        objectives = [n for n, m in self.metrics.items() if m.role == "objective"]
        if len(objectives) != 1:
            raise ValueError(
                f"metrics: exactly one metric needs role: objective (found {len(objectives)}: "
                f"{', '.join(objectives) or 'none'})"
            )
        if self.seeds.max < self.stats.min_seeds:
            raise ValueError(
                f"seeds.max ({self.seeds.max}) is below stats.min_seeds ({self.stats.min_seeds}): no change could "
                "ever be promoted; raise seeds.max"
            )
        llm_proposers = [p.type for p in self.search.proposers if p.uses_llm]
        if llm_proposers and self.llm is None:
            raise ValueError(
                f"search.proposers: {', '.join(llm_proposers)} need an `llm:` section (model, api_base, api_key_env)"
            )
        if self.memory.embedding_model and self.llm is None:
            raise ValueError("memory.embedding_model needs an `llm:` section (api_base, api_key_env)")
        if objectives[0] in BUILTIN_METRICS:
            raise ValueError(f"metrics: {objectives[0]} is measured by arborist; it cannot be the objective")
        for protected in self.protected:
            if protected.startswith("/") or ".." in Path(protected).parts:
                raise ValueError(
                    f"protected: {protected!r} must be a path inside the project; "
                    "files outside it go under data.heldout"
                )
        return self

    # Derived views, so callers never repeat these rules.
    @property
    def objective(self) -> str:
        return next(n for n, m in self.metrics.items() if m.role == "objective")

    @property
    def guards(self) -> dict[str, MetricConfig]:
        return {n: m for n, m in self.metrics.items() if m.role == "guard"}

    def default_params(self) -> dict[str, Any]:
        return {name: p.default for name, p in self.params.items()}


def load_config(path: str | Path) -> CampaignConfig:
    """Read, validate and resolve a campaign config. Raises ConfigError naming file, field, line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file. Pass the path of a campaign YAML file.")
    try:
        raw, root_node = load_yaml(path.read_text(), path)
    except YamlFileError as exc:
        raise ConfigError(f"{exc}. Nothing was run.") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a campaign config is a YAML mapping (name:, project:, ...).")
    try:
        config = CampaignConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, root_node)) from exc
    return _resolve(config, path.resolve().parent, path, root_node)


def _describe(exc: ValidationError, path: Path, root_node: yaml.Node | None) -> str:
    lines = [f"{path}: invalid campaign config ({exc.error_count()} problem(s)); nothing was run."]
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        field = ".".join(loc) or "(top level)"
        line = _line_of(root_node, loc)
        where = f"{path}:{line}" if line else str(path)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field (check its spelling; docs/config.md lists every field)"
        elif error["type"] == "missing":
            message = "required field is missing"
        lines.append(f"  {where}: {field}: {message}")
    return "\n".join(lines)


def _line_of(node: yaml.Node | None, loc: list[str]) -> int | None:
    """1-based line of the deepest YAML node along loc that exists."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == key), None)
            if match is None:
                key_node = next((k for k, _ in node.value if k.value == key), None)
                return key_node.start_mark.line + 1 if key_node else line
            node = match
        elif isinstance(node, yaml.SequenceNode) and key.isdigit() and int(key) < len(node.value):
            node = node.value[int(key)]
        else:
            break
        line = node.start_mark.line + 1
    return line


def _resolve(config: CampaignConfig, base: Path, path: Path, root: yaml.Node | None) -> CampaignConfig:
    def fail(field: str, message: str) -> ConfigError:
        line = _line_of(root, field.split("."))
        return ConfigError(f"{path}:{line}: {field}: {message}. Nothing was run.")

    project = (base / config.project).resolve()
    if not project.exists():
        raise fail("project", f"{project} does not exist; point it at your project folder")
    if not project.is_dir():
        raise fail("project", f"{project} is not a folder")
    heldout = {}
    for var, file in config.data.heldout.items():
        resolved = (base / file).resolve()
        if not resolved.exists():
            raise fail(f"data.heldout.{var}", f"{resolved} does not exist")
        if resolved.is_relative_to(project):
            raise fail(f"data.heldout.{var}", f"{resolved} is inside the project; held-out data must live outside it")
        heldout[var] = resolved
    proposers = []
    for i, proposer in enumerate(config.search.proposers):
        if proposer.path is not None:
            resolved = (base / proposer.path).resolve()
            if not resolved.is_file():
                raise fail(f"search.proposers.{i}.path", f"{resolved} does not exist")
            proposer = proposer.model_copy(update={"path": resolved})
        proposers.append(proposer)
    _check_placeholders(config, fail)
    _check_editable(config, project, fail)
    _check_protected_definitions(config, project, fail)
    campaign_dir = (base / config.campaign_dir).resolve() if config.campaign_dir else (
        Path.cwd() / "runs" / config.name
    ).resolve()
    scratch = config.ray.scratch_dir
    scratch_dir = (base / scratch).resolve() if scratch else campaign_dir / "scratch"
    read_only = []
    for i, entry in enumerate(config.sandbox.read_only):
        resolved = (base / entry).resolve()
        if not resolved.exists():
            raise fail(f"sandbox.read_only.{i}", f"{resolved} does not exist")
        for private, what in ((campaign_dir, "campaign folder"), (scratch_dir, "scratch folder")):
            if resolved == private or resolved in private.parents or private in resolved.parents:
                raise fail(
                    f"sandbox.read_only.{i}",
                    f"{resolved} overlaps the {what} {private}, which trials must not see; list the data "
                    "folder itself, kept outside the campaign",
                )
        read_only.append(resolved)
    return config.model_copy(
        update={
            "project": project,
            "campaign_dir": campaign_dir,
            "data": config.data.model_copy(update={"heldout": heldout}),
            "search": config.search.model_copy(update={"proposers": proposers}),
            "ray": config.ray.model_copy(update={"scratch_dir": scratch_dir}),
            "sandbox": config.sandbox.model_copy(update={"read_only": read_only}),
        }
    )


def _check_editable(config: CampaignConfig, project: Path, fail: Any) -> None:
    """An `editable` list that leaves no file to edit makes every code change a rejection."""
    if config.editable is None:
        return
    try:
        files = project_files(project)
    except ProjectError as exc:
        raise fail("project", str(exc)) from exc
    editable = [f for f in files if any(matches_entry(f, entry) for entry in config.editable)]
    if not editable:
        raise fail("editable", f"{config.editable} matches no file of the project {project}; list paths or globs "
                               "relative to the project root (e.g. '*.py', 'model/')")
    if all(any(matches_entry(f, entry) for entry in config.protected) for f in editable):
        shown = ", ".join(editable[:5]) + (", ..." if len(editable) > 5 else "")
        raise fail("editable", f"every file it matches ({shown}) is also protected, so every code change would be "
                               "rejected; take the training code out of `protected` or add it to `editable`")


def _check_protected_definitions(config: CampaignConfig, project: Path, fail: Any) -> None:
    """Each file::name entry names a definition the project has: a typo would protect nothing."""
    entries = [(i, e) for i, e in enumerate(config.protected) if is_definition(e)]
    if not entries:
        return
    try:
        files = set(project_files(project))
    except ProjectError as exc:
        raise fail("project", str(exc)) from exc
    for i, entry in entries:
        field = f"protected.{i}"
        problem = entry_problem(entry)
        if problem:
            raise fail(field, f"{entry!r}: {problem} (e.g. 'train.py::evaluate' or 'train.py::Evaluator.score')")
        path, qualname = split_entry(entry)
        if path not in files:
            raise fail(field, f"{entry!r}: {path} is not a file of the project {project}; "
                              "give the file's path relative to the project root")
        try:
            found = find_definition((project / path).read_text(encoding="utf-8"), qualname)
        except (SyntaxError, ValueError, UnicodeDecodeError) as exc:
            raise fail(field, f"{entry!r}: {project / path} does not parse as Python ({exc}); fix the file") from exc
        if found is None:
            raise fail(field, f"{entry!r}: {project / path} defines no function or class {qualname}; check the "
                              "spelling (methods as Class.method) or protect the whole file")


def _check_placeholders(config: CampaignConfig, fail: Any) -> None:
    known = {"seed", *COMMAND_FIELDS, *config.params}
    commands = {"entrypoint.train": config.entrypoint.train, "entrypoint.evaluate": config.entrypoint.evaluate}
    for field, command in commands.items():
        if not command:
            continue
        for name in re.findall(r"(?<!\{)\{([^{}]*)\}(?!\})", command):
            if name not in known:
                raise fail(
                    field, f"unknown placeholder {{{name}}}; known: {', '.join(sorted(known))}"
                )
    for name in config.data.heldout:
        if name in config.entrypoint.env:
            raise fail(
                f"entrypoint.env.{name}",
                "is also a data.heldout variable; the train step must not see held-out data",
            )

