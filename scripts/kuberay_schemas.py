"""Extract the v1 OpenAPI schema of KubeRay CRDs into tests/data/kuberay/, for the manifest tests.

    .venv/bin/python scripts/kuberay_schemas.py CRD.yaml [CRD.yaml ...] [--out tests/data/kuberay]

Each CRD (e.g. ray-operator/config/crd/bases/ray.io_rayjobs.yaml of ray-project/kuberay) becomes
`<kind in lower case>.schema.json`: its `spec.versions[name=v1].schema.openAPIV3Schema`, as
compact JSON with sorted keys, so that a regeneration from the same CRD writes the same bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

VERSION = "v1"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "kuberay"


class CRDError(ValueError):
    """A file that is not a CustomResourceDefinition with a v1 OpenAPI schema; the message says which."""


def v1_schema(crd: Any, source: str) -> tuple[str, dict[str, Any]]:
    """The kind and the v1 openAPIV3Schema of one CRD document."""
    if not isinstance(crd, dict) or crd.get("kind") != "CustomResourceDefinition":
        raise CRDError(f"{source}: not a CustomResourceDefinition")
    spec = crd.get("spec") or {}
    kind = (spec.get("names") or {}).get("kind")
    if not isinstance(kind, str) or not kind:
        raise CRDError(f"{source}: spec.names.kind is missing")
    versions = [v for v in spec.get("versions") or [] if isinstance(v, dict) and v.get("name") == VERSION]
    if len(versions) != 1:
        raise CRDError(f"{source}: expected one version named {VERSION}, found {len(versions)}")
    schema = (versions[0].get("schema") or {}).get("openAPIV3Schema")
    if not isinstance(schema, dict):
        raise CRDError(f"{source}: version {VERSION} has no schema.openAPIV3Schema")
    return kind, schema


def extract(crd_path: Path, out_dir: Path) -> Path:
    kind, schema = v1_schema(yaml.safe_load(crd_path.read_text()), str(crd_path))
    target = out_dir / f"{kind.lower()}.schema.json"
    target.write_text(json.dumps(schema, separators=(",", ":"), sort_keys=True) + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("crds", nargs="+", type=Path, help="CRD files (ray.io_rayjobs.yaml, ray.io_rayclusters.yaml)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of the schema files")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        for crd in args.crds:
            target = extract(crd, args.out)
            print(f"{target}: {target.stat().st_size} bytes")
    except (OSError, yaml.YAMLError, CRDError) as exc:
        print(f"kuberay_schemas: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
