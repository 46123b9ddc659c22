#!/usr/bin/env bash
# Builds helm with `go install` into the cache (outside the checkout) and prints its path. The version
# ldflags matter: without them helm assumes Kubernetes v1.20 in lint and template.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

HELM_VERSION=${HELM_VERSION:-v3.22.0}
dir=$ZW_CACHE/helm/$HELM_VERSION
if [[ -x $dir/helm ]]; then
	echo "$dir/helm"
	exit 0
fi
log "building helm $HELM_VERSION into $dir (about 2 minutes cold)"
minor=${K8S_VERSION#v1.}
minor=${minor%%.*}
GOBIN=$dir go install -trimpath -ldflags "-s -w \
	-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
	-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
	-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor \
	-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
	-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor" \
	"helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
echo "$dir/helm"
