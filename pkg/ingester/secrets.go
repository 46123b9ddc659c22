package ingester

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
		return nil, fmt.Errorf("secret %s/%s: %w %q", namespace, name, ErrNoSecretKey, key)
	}
	return v, nil
}

// ErrNoSecretKey is what a SecretReader wraps when the Secret exists but holds nothing under the key.
var ErrNoSecretKey = errors.New("no value under the key")

// secretMissing is the error of a webhook whose Secret, or the key in it, does not exist yet. It is
// a wait, not a mistake in the spec: the Ingester is tried again every -webhook-secret-refresh and
// its webhook starts when the Secret appears.
type secretMissing struct {
	namespace, name, key string
	err                  error
}

func (e *secretMissing) Error() string {
	return fmt.Sprintf("waiting for Secret %s/%s (key %q): %v", e.namespace, e.name, e.key, e.err)
}

func (e *secretMissing) Unwrap() error { return e.err }

// isMissing reports whether err says that a Secret or its key does not exist.
func isMissing(err error) bool {
	return apierrors.IsNotFound(err) || errors.Is(err, ErrNoSecretKey)
}
