"""The KubeRay deployment (deploy/kuberay/) and its image (deploy/Dockerfile), checked without a cluster.

Each manifest is validated against the OpenAPI schema of KubeRay's CRDs (tests/data/kuberay/, what
the API server enforces), with kubectl's strict field validation (an unknown field is an error, not
silently dropped) and the checks the KubeRay operator makes when it admits a resource. Beyond the
schema: the job ends and retries, its entrypoint is a real arborist command that resumes when run
again, the worker group's GPUs match what Ray is told and what the campaign asks for, the config
map's campaign config loads, every pod runs one image as the image's user, and no secret is written
in any of these files. The Dockerfile is parsed: git and bubblewrap from apt, the package installed
with the lock, no secret, a non-root user.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shlex
import subprocess
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from orchestrator.campaign import CAMPAIGN_FILE
from orchestrator.cli import _parser
from orchestrator.config import CampaignConfig, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
KUBERAY = ROOT / "deploy" / "kuberay"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
SCHEMAS = ROOT / "tests" / "data" / "kuberay"
CAMPAIGN_YAML = KUBERAY / "campaign.yaml"
CLUSTER_DOC = ROOT / "docs" / "cluster.md"

SCHEMA_FILES = {"RayJob": "rayjob.schema.json", "RayCluster": "raycluster.schema.json"}
# Kinds without a vendored schema: checked by the tests that read them.
PLAIN_KINDS = {"PersistentVolumeClaim"}
GPU = "nvidia.com/gpu"
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
# Shapes of real credentials, so that one pasted anywhere in a file is caught whatever its field.
SECRET_VALUE = re.compile(
    r"\bsk-[A-Za-z0-9_-]{16,}|\bAKIA[0-9A-Z]{16}\b|-----BEGIN [A-Z ]*PRIVATE KEY|\bghp_[A-Za-z0-9]{20,}"
)
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
# KubeRay refuses token authentication below this Ray version.
MIN_RAY_FOR_TOKEN_AUTH = (2, 52, 0)


# ----- reading the deployment -------------------------------------------------------------------
def manifest_docs() -> list[tuple[str, dict[str, Any]]]:
    """(file:kind/name, document) for every Kubernetes object in deploy/kuberay."""
    docs = []
    for path in sorted(KUBERAY.glob("*.yaml")):
        if path == CAMPAIGN_YAML:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            assert isinstance(doc, dict) and "kind" in doc, f"{path.name}: a document that is not a Kubernetes object"
            docs.append((f"{path.name}:{doc['kind']}/{doc.get('metadata', {}).get('name')}", doc))
    return docs


def ray_docs() -> list[tuple[str, dict[str, Any]]]:
    return [(label, doc) for label, doc in manifest_docs() if doc["kind"] in SCHEMA_FILES]


def doc_of_kind(kind: str) -> dict[str, Any]:
    found = [doc for _, doc in manifest_docs() if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} in deploy/kuberay, found {len(found)}"
    return copy.deepcopy(found[0])


@cache
def schema(kind: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / SCHEMA_FILES[kind]).read_text())


def cluster_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]


def groups(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(group name, group spec) for the head ("head") and each worker group."""
    spec = cluster_spec(doc)
    yield "head", spec["headGroupSpec"]
    for group in spec.get("workerGroupSpecs", []):
        yield group["groupName"], group


def ray_container(group: dict[str, Any]) -> dict[str, Any]:
    # KubeRay takes the first container of a pod as its Ray container.
    container: dict[str, Any] = group["template"]["spec"]["containers"][0]
    return container


def gpus(container: dict[str, Any]) -> int:
    return int(container.get("resources", {}).get("limits", {}).get(GPU, 0))


# ----- what the API server and the operator would say --------------------------------------------
def schema_problems(doc: dict[str, Any]) -> list[str]:
    """Errors of `kubectl apply` with strict field validation: schema types, required, enums, patterns,
    unknown fields, and duplicate keys of keyed lists (env, ports, volumes, containers)."""
    kind_schema = schema(doc["kind"])
    problems = [
        f"{'.'.join(map(str, error.absolute_path)) or '(top level)'}: {error.message}"
        for error in jsonschema.Draft202012Validator(kind_schema).iter_errors(doc)
    ]
    problems += structure_problems(doc, kind_schema, "")
    return problems


def structure_problems(value: Any, node: dict[str, Any], where: str) -> list[str]:
    problems: list[str] = []
    if isinstance(value, dict) and "properties" in node:
        known = node["properties"]
        for key, item in value.items():
            if key in known:
                problems += structure_problems(item, known[key], f"{where}.{key}".lstrip("."))
            elif "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
                problems.append(f"{where}.{key}".lstrip(".") + ": unknown field")
    elif isinstance(value, dict) and isinstance(node.get("additionalProperties"), dict):
        for key, item in value.items():
            problems += structure_problems(item, node["additionalProperties"], f"{where}.{key}".lstrip("."))
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        if node.get("x-kubernetes-list-type") == "map":
            keys = [tuple(item.get(k) for k in node.get("x-kubernetes-list-map-keys", [])) for item in value
                    if isinstance(item, dict)]
            problems += [f"{where}: duplicate entry {key}" for key in sorted({k for k in keys if keys.count(k) > 1})]
        for i, item in enumerate(value):
            problems += structure_problems(item, node["items"], f"{where}.{i}")
    return problems


def operator_problems(doc: dict[str, Any]) -> list[str]:
    """What the KubeRay operator refuses when it admits a RayJob or RayCluster (beyond the schema)."""
    problems = []
    name = doc.get("metadata", {}).get("name", "")
    if not DNS_1035.fullmatch(name) or len(name) > 63:
        problems.append(f"metadata.name {name!r}: not a DNS-1035 label")
    spec = cluster_spec(doc)
    for group_name, group in groups(doc):
        if not group["template"]["spec"].get("containers"):
            problems.append(f"{group_name}: no container")
        start = group.get("rayStartParams", {})
        if group.get("resources") and any(start.get(k) for k in ("num-cpus", "num-gpus", "memory", "resources")):
            problems.append(f"{group_name}: resources set both in rayStartParams and in resources")
        if "labels" in start:
            problems.append(f"{group_name}: rayStartParams.labels is not supported; use the group's labels")
    if spec.get("authOptions", {}).get("mode") == "token":
        version = tuple(int(part) for part in re.findall(r"\d+", spec.get("rayVersion", ""))[:3])
        if version < MIN_RAY_FOR_TOKEN_AUTH:
            problems.append(f"authOptions.mode token needs rayVersion >= 2.52.0, got {spec.get('rayVersion')!r}")
    if doc["kind"] == "RayJob":
        try:
            runtime_env = yaml.safe_load(doc["spec"].get("runtimeEnvYAML", "") or "{}")
        except yaml.YAMLError as exc:
            runtime_env = None
            problems.append(f"runtimeEnvYAML: not YAML ({exc})")
        if runtime_env is not None and not isinstance(runtime_env, dict):
            problems.append("runtimeEnvYAML: not a mapping")
        if doc["spec"].get("backoffLimit", 0) < 0:
            problems.append("backoffLimit: must not be negative")
    return problems


def secret_problems(doc: dict[str, Any]) -> list[str]:
    """Secrets written in a manifest: an env var named like a key with a literal value, a key in the
    job's runtime env (Ray stores it in the job's record), or a credential-shaped string anywhere."""
    problems = []
    for _, group in groups(doc) if doc["kind"] in SCHEMA_FILES else []:
        for container in group["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                from_secret = "secretKeyRef" in env.get("valueFrom", {})
                if SECRET_NAME.search(env["name"]) and ("value" in env or not from_secret):
                    problems.append(f"{container['name']}: {env['name']} is not taken from a Secret")
    if doc["kind"] == "RayJob":
        runtime_env = yaml.safe_load(doc["spec"].get("runtimeEnvYAML", "") or "{}") or {}
        problems += [f"runtimeEnvYAML: {name} is in the job's runtime env"
                     for name in runtime_env.get("env_vars", {}) if SECRET_NAME.search(name)]
    problems += [f"a credential-shaped string: {match[:8]}..." for match in SECRET_VALUE.findall(json.dumps(doc))]
    return problems


# ----- the schemas and the script that extracts them ---------------------------------------------
def load_schema_script() -> Any:
    spec = importlib.util.spec_from_file_location("kuberay_schemas", ROOT / "scripts" / "kuberay_schemas.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_schemas_are_kuberay_v1_object_schemas() -> None:
    for kind in SCHEMA_FILES:
        kind_schema = schema(kind)
        assert kind_schema["type"] == "object"
        assert {"apiVersion", "kind", "metadata", "spec", "status"} <= set(kind_schema["properties"])
    assert "entrypoint" in schema("RayJob")["properties"]["spec"]["properties"]
    assert "workerGroupSpecs" in schema("RayCluster")["properties"]["spec"]["properties"]


def test_the_script_extracts_the_v1_schema_of_a_crd(tmp_path: Path) -> None:
    script = load_schema_script()
    v1 = {"type": "object", "properties": {"spec": {"type": "object", "properties": {"b": {}, "a": {}}}}}
    crd: dict[str, Any] = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "spec": {
            "names": {"kind": "RayJob"},
            "versions": [
                {"name": "v1alpha1", "schema": {"openAPIV3Schema": {"type": "object", "old": True}}},
                {"name": "v1", "schema": {"openAPIV3Schema": v1}},
            ],
        },
    }
    source = tmp_path / "ray.io_rayjobs.yaml"
    source.write_text(yaml.safe_dump(crd))
    assert script.main([str(source), "--out", str(tmp_path / "out")]) == 0
    written = (tmp_path / "out" / "rayjob.schema.json").read_text()
    assert json.loads(written) == v1
    assert written == json.dumps(v1, separators=(",", ":"), sort_keys=True) + "\n"

    crd["spec"]["versions"] = crd["spec"]["versions"][:1]
    source.write_text(yaml.safe_dump(crd))
    assert script.main([str(source), "--out", str(tmp_path / "out")]) == 1


# ----- every manifest against its schema ---------------------------------------------------------
def test_deploy_kuberay_holds_a_rayjob_a_raycluster_and_known_kinds_only() -> None:
    kinds = [doc["kind"] for _, doc in manifest_docs()]
    assert sorted(set(kinds) - PLAIN_KINDS) == sorted(SCHEMA_FILES)
    assert set(kinds) <= set(SCHEMA_FILES) | PLAIN_KINDS, kinds
    for _, doc in ray_docs():
        assert doc["apiVersion"] == "ray.io/v1"


@pytest.mark.parametrize("label", [label for label, _ in ray_docs()])
def test_manifest_is_valid(label: str) -> None:
    doc = dict(ray_docs())[label]
    assert schema_problems(doc) == []
    assert operator_problems(doc) == []


WORKER = ("spec", "rayClusterSpec", "workerGroupSpecs", 0)
HEAD_CONTAINER = ("spec", "rayClusterSpec", "headGroupSpec", "template", "spec", "containers", 0)


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("spec", "shutdownAfterJobFinishes"), "true", "shutdownAfterJobFinishes: 'true' is not of type 'boolean'"),
        (("spec", "backoffLimit"), "2", "spec.backoffLimit: '2' is not of type 'integer'"),
        ((*WORKER, "rayStartParams", "num-gpus"), 1, "rayStartParams.num-gpus: 1 is not of type 'string'"),
        ((*WORKER, "minReplicas"), "0", "workerGroupSpecs.0.minReplicas: '0' is not of type 'integer'"),
        ((*WORKER, "template", "spec", "containers", 0, "resources", "limits", GPU), "one", "does not match"),
        ((*HEAD_CONTAINER, "ports", 0, "containerPort"), "6379", "containerPort: '6379' is not of type 'integer'"),
        (("spec", "shutdownAfterJobFinish"), True, "spec.shutdownAfterJobFinish: unknown field"),
        ((*HEAD_CONTAINER, "volumeMount"), [], "containers.0.volumeMount: unknown field"),
    ],
)
def test_a_broken_rayjob_is_rejected(path: tuple[str | int, ...], value: Any, expected: str) -> None:
    doc = doc_of_kind("RayJob")
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    problems = schema_problems(doc)
    assert any(expected in problem for problem in problems), problems


def test_a_missing_required_field_and_a_duplicate_env_var_are_rejected() -> None:
    doc = doc_of_kind("RayCluster")
    del doc["spec"]["workerGroupSpecs"][0]["groupName"]
    env = doc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]
    env.append(dict(env[0]))
    problems = schema_problems(doc)
    assert any("'groupName' is a required property" in p for p in problems), problems
    assert any("env: duplicate entry ('OPENAI_API_KEY',)" in p for p in problems), problems


def test_the_operator_checks_reject_what_kuberay_refuses() -> None:
    doc = doc_of_kind("RayJob")
    doc["metadata"]["name"] = "Arborist_Digits"
    doc["spec"]["rayClusterSpec"]["rayVersion"] = "2.50.0"
    doc["spec"]["runtimeEnvYAML"] = "env_vars: [unclosed"
    doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["resources"] = {"GPU": "1"}
    problems = operator_problems(doc)
    assert len(problems) == 4, problems


# ----- what matters beyond the schema ------------------------------------------------------------
def test_the_rayjob_shuts_its_cluster_down_and_retries() -> None:
    spec = doc_of_kind("RayJob")["spec"]
    assert spec["shutdownAfterJobFinishes"] is True  # GPU pods are not left running after the campaign
    assert isinstance(spec["backoffLimit"], int) and spec["backoffLimit"] >= 1
    assert spec.get("submissionMode", "K8sJobMode") == "K8sJobMode"
    assert "clusterSelector" not in spec


def entrypoint_script() -> tuple[str, list[list[str]]]:
    """The RayJob's entrypoint (`bash -c SCRIPT`) and the arborist commands in its script."""
    words = shlex.split(doc_of_kind("RayJob")["spec"]["entrypoint"])
    assert words[:2] == ["bash", "-c"] and len(words) == 3, words
    script = words[2]
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
    commands = []
    for i in range(len(tokens) - 2):
        if tokens[i:i + 3] == ["python", "-m", "orchestrator.cli"]:
            end = next((j for j in range(i + 3, len(tokens)) if tokens[j] in {";", "&&", "||", "fi"}), len(tokens))
            commands.append(tokens[i + 3:end])
    return script, commands


def test_the_entrypoint_runs_real_arborist_commands() -> None:
    _, commands = entrypoint_script()
    assert [command[0] for command in commands] == ["resume", "run"]
    for command in commands:
        args = _parser().parse_args(command)  # exits (SystemExit) on an unknown subcommand or argument
        assert args.command == command[0] and callable(args.func)
    run = _parser().parse_args(next(c for c in commands if c[0] == "run"))
    resume = _parser().parse_args(next(c for c in commands if c[0] == "resume"))
    config_mount = head_config_map_path()
    assert run.config == config_mount, "run must read the config where the config map is mounted"
    assert resume.campaign_dir == Path(campaign_config_in_image()["campaign_dir"])


def test_the_entrypoint_runs_run_first_and_resume_on_every_later_submission(tmp_path: Path) -> None:
    """The entrypoint's own shell logic, with the campaign folder moved to tmp_path and a `python`
    that only prints its arguments: no folder, `run`; a folder with campaign.json, `resume`."""
    script, _ = entrypoint_script()
    campaign_dir = str(campaign_config_in_image()["campaign_dir"])
    assert f"[ -f {campaign_dir}/{CAMPAIGN_FILE} ]" in script
    local_dir = tmp_path / "campaigns" / "digits"
    script = script.replace(campaign_dir, str(local_dir))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text('#!/bin/sh\necho "$@"\n')
    (bin_dir / "python").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}

    def submit() -> str:
        done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    assert submit() == f"-m orchestrator.cli run {head_config_map_path()}"
    local_dir.mkdir(parents=True)
    assert submit() == f"-m orchestrator.cli run {head_config_map_path()}"  # a folder without a campaign yet
    (local_dir / CAMPAIGN_FILE).write_text("{}")
    assert submit() == f"-m orchestrator.cli resume {local_dir}"


def test_the_gpu_worker_group_tells_ray_its_gpus_and_fits_the_campaign() -> None:
    config = campaign_config_in_image()
    per_trial = config["ray"]["gpus_per_trial"]
    assert per_trial >= 1, "the deployment is for GPU trials"
    for label, doc in ray_docs():
        head = cluster_spec(doc)["headGroupSpec"]
        # No trial on the head: it holds the campaign volume and the keys, and has no GPU.
        assert head["rayStartParams"].get("num-cpus") == "0", label
        assert gpus(ray_container(head)) == 0, label
        workers = [group for name, group in groups(doc) if name != "head" and gpus(ray_container(group)) > 0]
        assert workers, f"{label}: no worker group requests {GPU}"
        autoscaling = cluster_spec(doc).get("enableInTreeAutoscaling", False)
        total = 0
        for group in workers:
            container = ray_container(group)
            limit = gpus(container)
            assert group["rayStartParams"].get("num-gpus") == str(limit), f"{label}: num-gpus differs from {GPU}"
            requested = container["resources"].get("requests", {}).get(GPU)
            assert requested is None or int(requested) == limit, f"{label}: {GPU} requests differ from limits"
            assert limit >= per_trial, f"{label}: a trial asks for more GPUs than one worker pod has"
            assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], label
            total += limit * (group["maxReplicas"] if autoscaling else group["replicas"])
        assert config["ray"]["max_concurrent"] * per_trial <= total, f"{label}: the campaign's fan-out cannot fit"


def head_config_map_path() -> Path:
    """Where the head pod sees the campaign config: the config map's mount path and item path."""
    paths = set()
    for _, doc in ray_docs():
        head = cluster_spec(doc)["headGroupSpec"]["template"]["spec"]
        volumes = {v["name"]: v for v in head.get("volumes", [])}
        for mount in head["containers"][0]["volumeMounts"]:
            config_map = volumes[mount["name"]].get("configMap")
            if config_map:
                assert config_map["name"] == "arborist-campaign"
                item = next(i for i in config_map["items"] if i["key"] == CAMPAIGN_YAML.name)
                paths.add(Path(mount["mountPath"]) / item["path"])
    assert len(paths) == 1, paths
    return paths.pop()


def campaign_config_in_image() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CAMPAIGN_YAML.read_text())
    return data


def image_to_repo() -> dict[str, Path]:
    """Image paths that hold repository files, from the Dockerfile's WORKDIR, COPY and `rm -rf`."""
    mapping: dict[str, Path] = {}
    workdir = "/"
    for instruction, args in dockerfile_instructions(DOCKERFILE.read_text()):
        if instruction == "WORKDIR":
            workdir = os.path.join(workdir, args)
        elif instruction == "COPY" and not args.startswith("--"):
            *sources, dest = shlex.split(args)
            for source in sources:
                target = os.path.join(workdir, dest)
                if dest.endswith("/") or len(sources) > 1 or dest in {".", "./"}:
                    target = os.path.join(target, os.path.basename(source.rstrip("/")))
                mapping[os.path.normpath(target)] = ROOT / source
        elif instruction == "RUN":
            # Only the commands before a `cd`, which run in WORKDIR.
            for command in re.split(r"&&|;", args.split("cd ")[0]):
                words = shlex.split(command)
                if words[:2] == ["rm", "-rf"]:
                    for removed in words[2:]:
                        mapping.pop(os.path.normpath(os.path.join(workdir, removed)), None)
    return mapping


def load_campaign_as_in_the_image(tmp_path: Path, text: str | None = None) -> CampaignConfig:
    """deploy/kuberay/campaign.yaml (or `text`) loaded with load_config, its image paths read as the
    repository files the Dockerfile copies there, so a path the image lacks fails to load."""
    text = CAMPAIGN_YAML.read_text() if text is None else text
    for image_path, repo_path in sorted(image_to_repo().items(), key=lambda item: -len(item[0])):
        text = re.sub(re.escape(image_path) + r"(?=/|\s|$)", str(repo_path), text, flags=re.MULTILINE)
    local = tmp_path / "campaign.yaml"
    local.write_text(text)
    return load_config(local)


def test_the_config_map_holds_a_campaign_config_that_loads(tmp_path: Path) -> None:
    config = load_campaign_as_in_the_image(tmp_path)
    raw = campaign_config_in_image()
    assert config.name == raw["name"]
    assert config.ray.address == "auto"
    assert config.sandbox.mode == "bwrap"
    assert config.project.is_dir() and (config.project / "evaluate.py").is_file()
    for path in config.data.heldout.values():
        assert Path(path).is_file()

    # The campaign folder is on the volume mounted on the head, where the driver runs; the scratch
    # folder is an emptyDir at the same path on every pod, since trials run on the workers.
    for label, doc in ray_docs():
        head = cluster_spec(doc)["headGroupSpec"]["template"]["spec"]
        head_volumes = {v["name"]: v for v in head["volumes"]}
        claim_mounts = [m["mountPath"] for m in head["containers"][0]["volumeMounts"]
                        if "persistentVolumeClaim" in head_volumes[m["name"]]]
        assert any(Path(raw["campaign_dir"]).is_relative_to(m) for m in claim_mounts), label
        claims = {v["persistentVolumeClaim"]["claimName"] for v in head_volumes.values()
                  if "persistentVolumeClaim" in v}
        assert claims == {doc_of_kind("PersistentVolumeClaim")["metadata"]["name"]}, label
        for name, group in groups(doc):
            pod = group["template"]["spec"]
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            scratch = [m for m in ray_container(group).get("volumeMounts", [])
                       if Path(raw["ray"]["scratch_dir"]).is_relative_to(m["mountPath"])]
            assert scratch and "emptyDir" in volumes[scratch[0]["name"]], f"{label} {name}: no scratch emptyDir"
            if name != "head":
                assert not any("persistentVolumeClaim" in v for v in volumes.values()), f"{label} {name}"


def test_a_config_naming_a_file_the_image_lacks_does_not_load(tmp_path: Path) -> None:
    text = CAMPAIGN_YAML.read_text()
    heldout = "/opt/arborist/examples/digits/heldout/test.npz"
    assert heldout in text
    with pytest.raises(ConfigError, match=r"data\.heldout\.DIGITS_HELDOUT: .*does not exist"):
        load_campaign_as_in_the_image(tmp_path, text.replace(heldout, "/opt/arborist/heldout/test.npz"))


def test_the_walkthrough_creates_the_config_map_and_secrets_the_manifests_use() -> None:
    doc = CLUSTER_DOC.read_text()
    create = f"kubectl create configmap arborist-campaign --from-file={CAMPAIGN_YAML.name}=deploy/kuberay/campaign.yaml"
    assert create in doc
    secrets = {
        (env["valueFrom"]["secretKeyRef"]["name"], env["valueFrom"]["secretKeyRef"]["key"])
        for _, d in ray_docs() for _, group in groups(d) for env in ray_container(group).get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    }
    assert secrets
    for name, key in secrets:
        # One command, continued over lines with a backslash.
        command = rf"kubectl create secret generic {name}\b(?:[^\n\\]|\\\n)*--from-literal={key}="
        assert re.search(command, doc), (name, key)


def test_head_and_workers_run_one_image_as_the_image_user() -> None:
    images = {container["image"] for _, doc in ray_docs() for _, group in groups(doc)
              for container in group["template"]["spec"]["containers"]}
    assert len(images) == 1, images
    uid = dockerfile_user()
    for label, doc in ray_docs():
        for name, group in groups(doc):
            pod_security = group["template"]["spec"]["securityContext"]
            assert pod_security["runAsUser"] == uid and pod_security["runAsNonRoot"] is True, f"{label} {name}"
            container = ray_container(group)
            security = container.get("securityContext", {})
            assert security.get("allowPrivilegeEscalation") is False and not security.get("privileged"), label
            assert security.get("capabilities", {}).get("drop") == ["ALL"], label
            assert not security.get("capabilities", {}).get("add"), label


def test_worker_pods_let_bubblewrap_build_the_trial_sandbox() -> None:
    for label, doc in ray_docs():
        for name, group in groups(doc):
            if name == "head":
                continue
            pod = group["template"]["spec"]
            security = ray_container(group)["securityContext"]
            assert security["procMount"] == "Unmasked", f"{label} {name}: bwrap mounts a fresh /proc"
            assert pod["hostUsers"] is False, f"{label} {name}: procMount Unmasked needs a pod user namespace"
            assert security["seccompProfile"]["type"] in {"Unconfined", "Localhost"}, label
            assert security["appArmorProfile"]["type"] in {"Unconfined", "Localhost"}, label


def test_the_ray_version_is_the_locked_one() -> None:
    locked = re.search(r"^ray==(\S+)$", (ROOT / "constraints.txt").read_text(), re.MULTILINE)
    assert locked is not None
    for label, doc in ray_docs():
        assert cluster_spec(doc)["rayVersion"] == locked.group(1), label


def test_the_campaign_volume_is_a_single_writer_claim() -> None:
    claim = doc_of_kind("PersistentVolumeClaim")
    assert claim["apiVersion"] == "v1"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert re.fullmatch(r"\d+(Gi|Ti)", claim["spec"]["resources"]["requests"]["storage"])


@pytest.mark.parametrize("label", [label for label, _ in manifest_docs()])
def test_no_secret_is_written_in_a_manifest(label: str) -> None:
    assert secret_problems(dict(manifest_docs())[label]) == []
    assert not SECRET_VALUE.search(CAMPAIGN_YAML.read_text())


def test_a_secret_written_in_a_manifest_is_found() -> None:
    doc = doc_of_kind("RayJob")
    container = doc["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    container["env"][0] = {"name": "OPENAI_API_KEY", "value": "placeholder"}
    doc["spec"]["runtimeEnvYAML"] = "env_vars:\n  HF_TOKEN: x\n"
    doc["metadata"]["annotations"] = {"note": "AKIAABCDEFGHIJKLMNOP"}
    assert len(secret_problems(doc)) == 3, secret_problems(doc)


# ----- the image ---------------------------------------------------------------------------------
def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: continuations joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # Docker drops comment lines, also inside a continued instruction
        current += " " + stripped.removesuffix("\\").strip() if current else stripped.removesuffix("\\").strip()
        if not stripped.endswith("\\"):
            word, _, args = current.partition(" ")
            instructions.append((word.upper(), args.strip()))
            current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return instructions


def dockerfile_user(text: str | None = None) -> int:
    users = [args for instruction, args in dockerfile_instructions(text or DOCKERFILE.read_text())
             if instruction == "USER"]
    assert users, "the image runs as root"
    user = users[-1].split(":")[0]
    assert user.isdigit(), "USER must be numeric so that runAsNonRoot can verify it"
    return int(user)


def apt_packages(text: str) -> set[str]:
    packages: set[str] = set()
    for instruction, args in dockerfile_instructions(text):
        if instruction != "RUN":
            continue
        for command in re.split(r"&&|;|\|\|", args):
            words = shlex.split(command.replace("DEBIAN_FRONTEND=noninteractive", ""))
            if words[:2] in (["apt-get", "install"], ["apt", "install"]):
                packages |= {w.split("=")[0] for w in words[2:] if not w.startswith("-")}
    return packages


def dockerfile_secret_problems(text: str) -> list[str]:
    problems = []
    for instruction, args in dockerfile_instructions(text):
        if instruction in {"ENV", "ARG"}:
            for name in re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)(?==|\s|$)", args):
                if SECRET_NAME.search(name):
                    problems.append(f"{instruction} {name}: a secret baked into the image")
        if instruction in {"COPY", "ADD"} and re.search(r"\.env\b|credentials|id_rsa|\.aws|\.netrc|auth_token", args):
            problems.append(f"{instruction} {args}: copies credentials into the image")
    problems += [f"a credential-shaped string: {m[:8]}..." for m in SECRET_VALUE.findall(text)]
    return problems


def test_the_image_installs_git_bubblewrap_and_what_kuberay_probes_need() -> None:
    text = DOCKERFILE.read_text()
    assert {"git", "bubblewrap", "wget"} <= apt_packages(text)
    base = next(args for instruction, args in dockerfile_instructions(text) if instruction == "FROM")
    assert re.fullmatch(r"python:3\.11-slim[-\w.]*", base), base


def test_the_image_installs_the_package_with_the_lock() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    installs = [i for i, (instruction, args) in enumerate(instructions)
                if instruction == "RUN" and re.search(r"\bpip install\b", args)]
    assert len(installs) == 1
    args = shlex.split(instructions[installs[0]][1].split("&&")[0])
    assert args[args.index("-c") + 1] == "constraints.txt"
    assert "-e" not in args and "--editable" not in args, "an editable install keeps the sources importable"
    copied = [i for i, (instruction, args) in enumerate(instructions)
              if instruction == "COPY" and "constraints.txt" in args.split()]
    assert copied and copied[0] < installs[0]


def test_the_image_copies_every_package_before_it_installs_them() -> None:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    install = next(i for i, (instruction, args) in enumerate(instructions)
                   if instruction == "RUN" and "pip install" in args)
    copied = {source.rstrip("/") for instruction, args in instructions[:install] if instruction == "COPY"
              for source in shlex.split(args)[:-1]}
    for top in {p.split(".")[0] for p in packages}:
        assert top in copied, f"the Dockerfile does not copy {top}/ before installing it"


def test_pyproject_lists_every_subpackage() -> None:
    """The image installs arborist as a wheel, which holds only the listed packages; a subpackage
    missing from the list imports in a development checkout and fails in the image."""
    packages = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in {p.split(".")[0] for p in packages}
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert found == packages, f"not in [tool.setuptools] packages: {sorted(found - packages)}"


def test_the_image_bakes_in_no_secret_and_runs_as_a_user() -> None:
    text = DOCKERFILE.read_text()
    assert dockerfile_secret_problems(text) == []
    assert dockerfile_user(text) != 0
    # The build context is the repository: everything is left out (.venv, runs/) but what is copied.
    ignore = [line for line in (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
              if line and not line.startswith("#")]
    assert ignore[0] == "**"


def test_a_secret_or_root_in_a_dockerfile_is_found() -> None:
    text = DOCKERFILE.read_text()
    baked = text + "ENV OPENAI_API_KEY=placeholder\nARG HF_TOKEN\nCOPY .env /home/arborist/.env\n"
    assert len(dockerfile_secret_problems(baked)) == 3
    with pytest.raises(AssertionError, match="numeric"):
        dockerfile_user(text + "USER root\n")
    assert dockerfile_user(text + "USER 0\n") == 0
