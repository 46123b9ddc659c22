// Command obsctl shows what zen-watcher found and how its replicas share the work: Observations
// listed, counted and explained, and the members, leader and namespace shares of a release. It
// follows kubectl's conventions (--kubeconfig, --context, -n, -A, -o) and works as a kubectl
// plugin when installed as kubectl-obs.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kube-zen/zen-watcher/pkg/obsclient"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := newRootCmd(os.Stdout, os.Stderr)
	if filepath.Base(os.Args[0]) == "kubectl-obs" {
		cmd.Use = "kubectl obs"
	}
	if err := cmd.ExecuteContext(ctx); err != nil {
		os.Exit(1)
	}
}

// options are the flags every command shares.
type options struct {
	kubeconfig    string
	context       string
	namespace     string
	allNamespaces bool
	output        string
	out, errOut   io.Writer
}

func newRootCmd(out, errOut io.Writer) *cobra.Command {
	o := &options{out: out, errOut: errOut}
	root := &cobra.Command{
		Use:           "obsctl",
		Short:         "Look at zen-watcher's Observations and replicas",
		SilenceUsage:  true,
		SilenceErrors: false,
	}
	root.SetOut(out)
	root.SetErr(errOut)
	pf := root.PersistentFlags()
	pf.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	pf.StringVar(&o.context, "context", "", "kubeconfig context to use")
	pf.StringVarP(&o.namespace, "namespace", "n", "", "namespace (default: the context's)")
	pf.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "every namespace")
	pf.StringVarP(&o.output, "output", "o", "table", "output format: table, json or yaml")
	root.AddCommand(newListCmd(o), newStatsCmd(o), newGetCmd(o), newShardsCmd(o), newExplainCmd(o))
	return root
}

// clientConfig loads the kubeconfig the kubectl way.
func (o *options) clientConfig() clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if o.kubeconfig != "" {
		rules.ExplicitPath = o.kubeconfig
	}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
		&clientcmd.ConfigOverrides{CurrentContext: o.context})
}

func (o *options) restConfig() (*rest.Config, error) {
	rc, err := o.clientConfig().ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	rc.UserAgent = "obsctl"
	rc.QPS, rc.Burst = 50, 100
	return rc, nil
}

// scope is the namespace to read: "" with -A, else -n, else the context's.
func (o *options) scope() (string, error) {
	if o.allNamespaces {
		return "", nil
	}
	if o.namespace != "" {
		return o.namespace, nil
	}
	ns, _, err := o.clientConfig().Namespace()
	if err != nil {
		return "", fmt.Errorf("reading the context's namespace: %w", err)
	}
	return ns, nil
}

func (o *options) observations() (*obsclient.Client, error) {
	rc, err := o.restConfig()
	if err != nil {
		return nil, err
	}
	return obsclient.New(rc)
}

func (o *options) kube() (kubernetes.Interface, error) {
	rc, err := o.restConfig()
	if err != nil {
		return nil, err
	}
	k, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("building Kubernetes client: %w", err)
	}
	return k, nil
}
