#!/usr/bin/env python3
"""Renders every kustomization under deploy/k8s with the real kustomize
(`kubectl kustomize`) and validates every object against the Kubernetes
OpenAPI schemas (kubernetes-validate, strict: unknown fields are errors) for
each Kubernetes version in KUBERNETES_VERSIONS. Also lints deploy/Dockerfile
(hadolint) and the shell scripts (shellcheck).

Exits non-zero on any error, including a missing tool: it never skips.
Run it through deploy/validate.sh, which installs the tools first.

  deploy/validate.py [--out DIR]

--out DIR writes each render as JSON (a list of objects) to DIR/<name>.json,
with name = base, paper, live, ...; and DIR/secrets.example.json. The Rust test
tests/tests/deploy_manifests.rs reads them.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".herd" / "tools"
K8S = ROOT / "deploy" / "k8s"

# The oldest Kubernetes Herd supports (native gRPC probes are GA since 1.27,
# StatefulSet PVC retention is on by default since 1.27), the version of the
# kubectl we render with, and the newest schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ["1.30.0", "1.35.0", "1.37.0"]

INSTALL_HINT = "run scripts/install-test-tools (or deploy/validate.sh, which does)"


def die(msg: str) -> "None":
    print(f"validate: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def tool(name: str, env: str) -> str:
    path = os.environ.get(env) or str(TOOLS / name)
    if not os.access(path, os.X_OK):
        die(f"{name} not found at {path}: {INSTALL_HINT} or set {env}")
    return path


def load_validator():
    sys.path.insert(0, str(TOOLS / "kubernetes-validate"))
    try:
        import kubernetes_validate  # noqa: F401
        import yaml
    except ImportError as e:
        die(f"kubernetes-validate is not installed in {TOOLS / 'kubernetes-validate'} ({e}): {INSTALL_HINT}")
    return kubernetes_validate, yaml


def kustomizations() -> "list[tuple[str, Path]]":
    found = [("base", K8S / "base")]
    overlays = sorted(p for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())
    if not overlays:
        die(f"no overlays under {K8S / 'overlays'}")
    found += [(p.name, p) for p in overlays]
    return found


def render(kubectl: str, path: Path) -> str:
    out = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True)
    if out.returncode != 0:
        die(f"kubectl kustomize {path.relative_to(ROOT)} failed:\n{out.stderr}")
    if out.stderr.strip():
        # kustomize warns about deprecated fields on stderr: treat as an error.
        die(f"kubectl kustomize {path.relative_to(ROOT)} warned:\n{out.stderr}")
    return out.stdout


def validate_objects(kv, name: str, objects: list) -> int:
    errors = 0
    for obj in objects:
        if not isinstance(obj, dict) or "kind" not in obj or "apiVersion" not in obj:
            print(f"  {name}: not a Kubernetes object: {obj!r:.200}", file=sys.stderr)
            errors += 1
            continue
        what = f"{obj['kind']}/{obj.get('metadata', {}).get('name', '?')}"
        for version in KUBERNETES_VERSIONS:
            try:
                kv.validate(obj, version, strict=True)
            except kv.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                print(f"  {name}: {what} (Kubernetes {version}): {path}: {e.message}", file=sys.stderr)
                errors += 1
            except kv.SchemaNotFoundError as e:
                print(f"  {name}: {what} (Kubernetes {version}): no schema: {e}", file=sys.stderr)
                errors += 1
    return errors


def lint() -> None:
    hadolint = tool("hadolint", "HERD_HADOLINT")
    shellcheck = tool("shellcheck", "HERD_SHELLCHECK")
    out = subprocess.run([hadolint, "--no-color", str(ROOT / "deploy" / "Dockerfile")], capture_output=True, text=True)
    if out.returncode != 0:
        die(f"hadolint deploy/Dockerfile:\n{out.stdout}{out.stderr}")
    scripts = [
        ROOT / "deploy" / "engine-entrypoint.sh",
        ROOT / "deploy" / "validate.sh",
        ROOT / "scripts" / "test",
        ROOT / "scripts" / "install-test-tools",
    ]
    out = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True)
    if out.returncode != 0:
        die(f"shellcheck:\n{out.stdout}{out.stderr}")
    print(f"lint: hadolint deploy/Dockerfile, shellcheck {len(scripts)} scripts: ok")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="write each render as JSON into this directory")
    args = parser.parse_args()

    kubectl = tool("kubectl", "HERD_KUBECTL")
    kv, yaml = load_validator()
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)

    total = errors = 0
    renders = [(name, render(kubectl, path)) for name, path in kustomizations()]
    # The Secrets' shape, with placeholders: not part of any render, checked too.
    renders.append(("secrets.example", (K8S / "secrets.example.yaml").read_text()))
    for name, text in renders:
        try:
            objects = [o for o in yaml.safe_load_all(text) if o is not None]
        except yaml.YAMLError as e:
            die(f"{name}: not YAML: {e}")
        if not objects:
            die(f"{name}: rendered no objects")
        bad = validate_objects(kv, name, objects)
        kinds = sorted({o.get("kind", "?") for o in objects if isinstance(o, dict)})
        status = "ok" if bad == 0 else f"{bad} errors"
        print(f"{name}: {len(objects)} objects ({', '.join(kinds)}): {status}")
        total += len(objects)
        errors += bad
        if args.out:
            (args.out / f"{name}.json").write_text(json.dumps(objects, indent=1))
    if errors:
        die(f"{errors} schema errors (Kubernetes {', '.join(KUBERNETES_VERSIONS)}, strict)")
    print(f"schemas: {total} objects in {len(renders)} renders valid for Kubernetes {', '.join(KUBERNETES_VERSIONS)} (strict)")
    lint()


if __name__ == "__main__":
    main()
