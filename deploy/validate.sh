#!/usr/bin/env bash
# Renders every kustomization under deploy/k8s with the real kustomize and
# validates every object against the Kubernetes schemas; lints the Dockerfile
# and the shell scripts. Installs its tools into .herd/tools/ first
# (idempotent). Fails on any error or missing tool.
# Usage: deploy/validate.sh [--out DIR]    (see deploy/validate.py)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-test-tools" kubectl kubernetes-validate lint >/dev/null
exec python3 "$root/deploy/validate.py" "$@"
