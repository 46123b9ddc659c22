package sources

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

// APIVersionOf guesses the API version of the workload kinds tools report on, for tools that name
// only a kind. Unknown kinds get "".
func APIVersionOf(kind string) string {
	switch kind {
	case "Pod", "Service", "ConfigMap", "Secret", "ServiceAccount", "Namespace", "Node",
		"PersistentVolumeClaim", "PersistentVolume", "ReplicationController":
		return "v1"
	case "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet":
		return "apps/v1"
	case "Job", "CronJob":
		return "batch/v1"
	case "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding":
		return "rbac.authorization.k8s.io/v1"
	case "Ingress", "NetworkPolicy":
		return "networking.k8s.io/v1"
	}
	return ""
}

// ControllerOf returns the object's controlling owner as a resource in the object's namespace.
func ControllerOf(obj *unstructured.Unstructured) (v1alpha1.ResourceRef, bool) {
	for _, o := range obj.GetOwnerReferences() {
		if o.Controller != nil && *o.Controller {
			return v1alpha1.ResourceRef{APIVersion: o.APIVersion, Kind: o.Kind, Namespace: obj.GetNamespace(), Name: o.Name}, true
		}
	}
	return v1alpha1.ResourceRef{}, false
}

// Self is the object itself as a resource.
func Self(obj *unstructured.Unstructured) v1alpha1.ResourceRef {
	return v1alpha1.ResourceRef{APIVersion: obj.GetAPIVersion(), Kind: obj.GetKind(), Namespace: obj.GetNamespace(), Name: obj.GetName()}
}
