// Package v1alpha1 holds the zen-watcher API: the Observation, one normalized finding, and the
// Ingester, the per-source configuration that zen-watcher reloads while it runs.
//
// These Go types are the single source of truth: deepcopy functions and the CRD manifests in
// charts/zen-watcher/crds are generated from them with `make generate`.
//
// +kubebuilder:object:generate=true
// +groupName=zen.kube-zen.io
package v1alpha1
