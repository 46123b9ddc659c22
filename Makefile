# zen-watcher — see README.md. Every target that needs the real control plane or Redis sets it up.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

GO          ?= go
K8S_VERSION ?= v1.37.2
ZW_CACHE    ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/zen-watcher
KUBEBUILDER_ASSETS ?= $(ZW_CACHE)/k8s/$(K8S_VERSION)
KUBECTL     := $(KUBEBUILDER_ASSETS)/kubectl
TOOLS       := $(GO) tool -modfile=hack/tools/go.mod
TEST_FLAGS  ?= -race -count=1 -timeout 25m
FUZZ_TIME   ?= 10000x
PROFILE     ?= quick
APP_VERSION := $(shell sed -n 's/^appVersion: "\(.*\)"/\1/p' charts/zen-watcher/Chart.yaml)
IMAGE       ?= ghcr.io/kube-zen/zen-watcher:$(APP_VERSION)
IMAGE_ARCHIVE ?= bin/zen-watcher-$(APP_VERSION).oci.tar
REDIS_IMAGE_ARCHIVE ?= bin/zen-watcher-redis.oci.tar
# The image trusts the build machine's CA bundle, when it has one, for TLS to a Redis service.
CA_BUNDLE   ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)

export K8S_VERSION ZW_CACHE KUBEBUILDER_ASSETS

.PHONY: all build generate tools k8s-bins redis helm prometheus test test-unit test-chart chart-docs image redis-image image-docker containerd node-tools node-up node-down test-node precompile fuzz run demo demo-down lint bench scale-test clean help

all: build

help: ## List the targets.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

# build compiles as the tests and `go vet` do, so that it reuses what they compiled: -trimpath would
# compile every dependency again (three minutes on two cores with empty caches). The image, which
# is what ships, is built with -trimpath and without cgo (image).
build: ## Build bin/zen-watcher and bin/obsctl (also usable as the kubectl plugin bin/kubectl-obs).
	$(GO) build -o bin/zen-watcher ./cmd/zen-watcher
	$(GO) build -o bin/obsctl ./cmd/obsctl
	ln -sf obsctl bin/kubectl-obs

generate: ## Regenerate deepcopy functions and the CRDs from pkg/api.
	$(TOOLS) controller-gen object:headerFile=hack/boilerplate.go.txt paths=./pkg/api/... \
		crd output:crd:artifacts:config=charts/zen-watcher/crds

tools: k8s-bins redis helm containerd prometheus ## Build the control plane and helm into the cache; install redis-server, containerd, runc and prometheus.

k8s-bins: ## Build kube-apiserver, etcd and kubectl (~11 min once).
	hack/build-k8s-bins.sh

containerd: ## Install containerd and runc from Debian's packages when they are missing (the image's test runs it).
	hack/ensure-containerd.sh

node-tools: ## What a node needs besides the control plane: kube-controller-manager, kubelet, kube-proxy, kube-scheduler, CoreDNS (built), containerd, runc, iptables and the CNI plugins (Debian).
	WITH_NODE=1 hack/build-k8s-bins.sh
	hack/ensure-node.sh

node-up: node-tools image redis-image ## Start a one-node cluster with the images loaded (root); prints its kubeconfig.
	IMAGES="$(IMAGE_ARCHIVE) $(REDIS_IMAGE_ARCHIVE)" hack/start-node.sh

test-node: ## The chart on a real node (root): helm install, webhooks, uninstall; the node is started and stopped around it.
	$(GO) test -tags node $(TEST_FLAGS) -v ./test/node

node-down: ## Stop the node and leave the machine as it was.
	hack/stop-node.sh

redis: ## Install redis-server from Debian's packages when it is missing.
	hack/ensure-redis.sh

prometheus: ## Install prometheus and promtool from Debian's packages when they are missing (the alert tests run them).
	hack/ensure-prometheus.sh

helm: ## Build helm into the cache.
	hack/install-helm.sh >/dev/null

# Tests that mostly wait (the audit backend's five-minute watch for a feedback loop) run in a test
# process of their own beside the others, instead of at the head of test/e2e's serial run. Its
# package is compiled first, so that the two do not compile the same packages at once.
SOAK_TESTS := ^TestAPIServerAuditBackend$$

test: tools ## Everything needed, then every test with -race (the chart's too), then a short fuzz run.
	soak=$$(mktemp); log=$$(mktemp); \
	$(GO) test $(filter -race,$(TEST_FLAGS)) -c -o "$$soak.test" ./test/e2e; rm -f "$$soak.test"; \
	$(GO) test $(TEST_FLAGS) -run '$(SOAK_TESTS)' ./test/e2e >"$$soak" 2>&1 & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; rm -f "$$soak" "$$log"' INT TERM; \
	rc=0; $(GO) test $(TEST_FLAGS) -skip '$(SOAK_TESTS)' ./... 2>&1 | tee "$$log" || rc=$$?; \
	wait $$pid || rc=$$?; echo "--- $(SOAK_TESTS) (./test/e2e), run beside the others:"; cat "$$soak"; \
	if [ $$rc -ne 0 ]; then echo "--- what failed:"; hack/failures.sh "$$log" "$$soak"; fi; \
	rm -f "$$soak" "$$log"; exit $$rc
	cd test/chart && $(GO) test $(TEST_FLAGS) ./...
	$(MAKE) --no-print-directory fuzz

test-chart: helm k8s-bins prometheus ## The Helm chart's tests: lint, render, dry-run, install, RBAC, alerts and dashboards.
	cd test/chart && $(GO) test $(TEST_FLAGS) ./...

chart-docs: ## Regenerate the values table of charts/zen-watcher/README.md from values.yaml.
	$(GO) run ./hack/chartdoc charts/zen-watcher

image: ## Write the image as an OCI archive (IMAGE_ARCHIVE), without docker: static, non-root, no shell, reproducible.
	@mkdir -p bin/image $(dir $(IMAGE_ARCHIVE))
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -buildid=" -o bin/image/zen-watcher ./cmd/zen-watcher
	$(GO) run ./hack/ociimage -binary bin/image/zen-watcher -name $(IMAGE) -out $(IMAGE_ARCHIVE) $(if $(CA_BUNDLE),-ca-bundle $(CA_BUNDLE))

redis-image: ## Write Debian's redis-server and the libraries it links as an image archive (REDIS_IMAGE_ARCHIVE), for the bundled Redis without a registry.
	hack/redis-image.sh $(REDIS_IMAGE_ARCHIVE)

image-docker: ## The same image with docker, from the Dockerfile.
	docker build -t $(IMAGE) .

UNIT_PKGS := ./pkg/pipeline/... ./pkg/metrics/... ./pkg/sources/... ./pkg/ha ./pkg/ingester/... \
	./cmd/zen-watcher ./internal/testenv ./scale-tests

test-unit: ## Only the tests that need no control plane or Redis (ZW_UNIT_ONLY=1 makes any that does fail).
	ZW_UNIT_ONLY=1 $(GO) test -race -count=1 $(UNIT_PKGS)

FUZZ_TARGETS := FuzzNormalizeEventType:./pkg/pipeline FuzzBuildObservation:./pkg/pipeline \
	FuzzStreamItems:./pkg/sources FuzzParsePayload:./pkg/sources/falco FuzzParsePayload:./pkg/sources/audit FuzzParsePayload:./pkg/sources/generic \
	FuzzWebhook:./pkg/server

# precompile builds into the caches, without running anything, what the steps after `go test ./...`
# need: test/chart's tests, the fuzz targets' instrumented tests, and the node's binaries. On a
# fresh machine that is minutes of compiling, which .ci/run does at idle priority beside the tests
# (they leave about half of two cores idle); with warm caches it links and exits.
precompile: ## Compile what test/chart, the fuzz run and the node tier need, running nothing.
	d=$$(mktemp -d); trap 'rm -rf "$$d"' EXIT; \
	(cd test/chart && $(GO) test $(filter -race,$(TEST_FLAGS)) -c -o "$$d/" ./...); \
	for t in $(FUZZ_TARGETS); do \
		$(GO) test -c -o "$$d/" -fuzz "^$${t%%:*}$$" "$${t#*:}"; \
	done
	$(MAKE) --no-print-directory node-tools

fuzz: ## Run each fuzz target for FUZZ_TIME.
	for t in $(FUZZ_TARGETS); do \
		$(GO) test -run '^$$' -fuzz "^$${t%%:*}$$" -fuzztime $(FUZZ_TIME) "$${t#*:}" || exit 1; \
	done

run: build redis ## One replica against the local control plane and Redis (started if needed).
	kc=$$(hack/start-k8s.sh); \
	$(KUBECTL) --kubeconfig "$$kc" apply --server-side -f charts/zen-watcher/crds >/dev/null; \
	$(KUBECTL) --kubeconfig "$$kc" wait --for condition=Established --timeout 30s -f charts/zen-watcher/crds >/dev/null; \
	redis=$$(hack/start-redis.sh); \
	exec bin/zen-watcher -kubeconfig "$$kc" -redis-addr "$$redis" -metrics-addr 127.0.0.1:9090 -webhook-addr 127.0.0.1:8080

demo: build k8s-bins redis ## The product on loopback: three replicas, the tools' findings, signed webhooks, a failover (README: Try it).
	hack/demo.sh up

demo-down: ## Stop everything `make demo` started.
	hack/demo.sh down

lint: ## gofmt, go vet, staticcheck, go.mod tidy, no binary or large file tracked, no reflect.Value.Method reachable.
	hack/check-tracked-files.sh --self-test
	hack/check-tracked-files.sh
	@if git grep -nE '\.\./shared|"shared", *"fixtures"' -- '*.go' '*.sh' Makefile .ci; then \
		echo "the lines above read files outside the clone; tests read testdata/ only"; exit 1; fi
	$(GO) mod tidy -diff
	cd test/chart && $(GO) mod tidy -diff
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [[ -n "$$out" ]]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./... && $(GO) vet -tags node ./test/node
	$(TOOLS) staticcheck ./... && $(TOOLS) staticcheck -tags node ./test/node
	cd test/chart && $(GO) vet ./... && $(GO) tool -modfile=../../hack/tools/go.mod staticcheck ./...
	$(GO) run ./hack/chartdoc -check charts/zen-watcher
	hack/check-reflect-method.sh --self-test
	hack/check-reflect-method.sh

bench: tools ## Benchmarks against the real parts (see docs/PERFORMANCE.md).
	$(GO) test -run '^$$' -bench . -benchmem -cpu 1 ./pkg/pipeline
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 3s ./pkg/redisstate
	$(GO) test -run '^$$' -bench . -benchtime 3x ./test/integration
	$(GO) test -run '^$$' -bench WebhookAccept -benchtime 20000x ./pkg/server
	$(GO) test -run '^$$' -bench WatchDecode -benchmem -benchtime 5x ./pkg/dynwatch

scale-test: k8s-bins redis ## The scale-test harness: PROFILE=quick (under 10 min) or full; results in scale-tests/results.
	$(GO) run ./scale-tests -profile $(PROFILE) $(SCALE_FLAGS)

clean: ## Remove build output (not the cached control plane).
	rm -rf bin
