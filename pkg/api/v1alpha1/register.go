package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the API group of every zen-watcher resource.
const GroupName = "zen.kube-zen.io"

// SchemeGroupVersion is the group and version of the types in this package.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

// ObservationResource is the resource (plural) under which Observations are served.
var ObservationResource = SchemeGroupVersion.WithResource("observations")

// IngesterResource is the resource (plural) under which Ingesters are served.
var IngesterResource = SchemeGroupVersion.WithResource("ingesters")

// AddToScheme registers the types of this package with a scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion,
		&Observation{}, &ObservationList{},
		&Ingester{}, &IngesterList{},
	)
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}
