package ingester

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// KubeSecrets reads Secrets from the API server.
type KubeSecrets struct {
	Client kubernetes.Interface
}

// SecretValue implements SecretReader. The error names the Secret and key, never the value.
func (k KubeSecrets) SecretValue(ctx context.Context, namespace, name, key string) ([]byte, error) {
	s, err := k.Client.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading Secret %s/%s: %w", namespace, name, err)
	}
	v, ok := s.Data[key]
	if !ok || len(v) == 0 {
		return nil, fmt.Errorf("secret %s/%s has no key %q", namespace, name, key)
	}
	return v, nil
}
