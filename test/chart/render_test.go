package chart

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
)

// TestLintAndRender lints and renders each profile and checks what it must contain.
func TestLintAndRender(t *testing.T) {
	want := map[string]struct {
		kinds map[string]int
		env   map[string]string
		// adapterOptions of Ingesters, by name
		options map[string]map[string]string
	}{
		"default": {kinds: map[string]int{"Deployment": 2, "Service": 3, "PodDisruptionBudget": 1, "ServiceAccount": 1},
			env: map[string]string{"REDIS_ADDR": "zw-zen-watcher-redis:6379", "HA_OPTIMIZATION_ENABLED": "false", "OBSERVATION_TTL_SECONDS": "604800",
				"DEFAULT_SOURCES": "true"}},
		"ha-on": {kinds: map[string]int{"ServiceMonitor": 1, "PrometheusRule": 1, "ConfigMap": 1, "Ingester": 11},
			env:     map[string]string{"HA_OPTIMIZATION_ENABLED": "true"},
			options: map[string]map[string]string{"audit": {"maxBodyBytes": "536870912", "maxEventBytes": "524288"}, "falco": nil}},
		"ha-off": {kinds: map[string]int{"Deployment": 1, "PodDisruptionBudget": 0},
			env: map[string]string{"REDIS_ADDR": "", "HA_OPTIMIZATION_ENABLED": "false"}},
		"external-redis": {kinds: map[string]int{"Deployment": 1},
			env: map[string]string{"REDIS_ADDR": "redis.example.svc:6379", "REDIS_TLS": "true", "REDIS_TLS_CA_FILE": "/etc/zen-watcher/redis-ca/ca.crt"}},
		"sentinel": {kinds: map[string]int{"Deployment": 1},
			env: map[string]string{"REDIS_MASTER_NAME": "mymaster", "REDIS_WAIT_REPLICAS": "1", "REDIS_ADDR": "sentinel-0.sentinel:26379,sentinel-1.sentinel:26379,sentinel-2.sentinel:26379"}},
		"cluster-redis": {kinds: map[string]int{"Deployment": 1},
			env: map[string]string{"REDIS_ADDR": "redis-0.redis:6379,redis-1.redis:6379,redis-2.redis:6379"}},
		"networkpolicy": {kinds: map[string]int{"NetworkPolicy": 2, "PersistentVolumeClaim": 1},
			env: map[string]string{"WEBHOOK_TLS_CERT_FILE": "/etc/zen-watcher/tls/tls.crt"}},
	}
	profs := profiles(t)
	if len(profs) != len(want) {
		t.Errorf("profiles %v; expectations for %d", profs, len(want))
	}
	for name, file := range profs {
		t.Run(name, func(t *testing.T) {
			args := []string{"lint", "--strict", "."}
			if file != "" {
				args = append(args, "-f", file)
			}
			if out, err := command(chartDir, helm, args...); err != nil || strings.Contains(out, "[WARNING]") {
				t.Fatalf("helm lint: %v\n%s", err, out)
			}
			objs := render(t, "zw", "zen", file)
			got := kinds(objs)
			for k, n := range want[name].kinds {
				if got[k] != n {
					t.Errorf("%d %s, want %d (all: %v)", got[k], k, n, got)
				}
			}
			dep := find(objs, "Deployment", "zw-zen-watcher")
			if dep == nil {
				t.Fatal("no zen-watcher Deployment")
			}
			env := containerEnv(t, dep)
			for k, v := range want[name].env {
				if env[k] != v {
					t.Errorf("env %s=%q, want %q", k, env[k], v)
				}
			}
			checkRestricted(t, dep)
			for ingester, want := range want[name].options {
				ing := find(objs, "Ingester", ingester)
				if ing == nil {
					t.Fatalf("no Ingester %s", ingester)
				}
				got, _, _ := unstructured.NestedStringMap(ing.Object, "spec", "adapterOptions")
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("Ingester %s: adapterOptions %v, want %v", ingester, got, want)
				}
			}
		})
	}
}

// TestBundledRedisServesTheReplicas: the bundled Redis accepts connections from other pods with
// or without a password; its own builds' protected mode refuses them while none is set.
func TestBundledRedisServesTheReplicas(t *testing.T) {
	for name, set := range map[string][]string{"no password": nil, "password": {"redis.passwordSecret.name=redis-auth"}} {
		t.Run(name, func(t *testing.T) {
			redis := find(render(t, "zw", "zen", "", set...), "Deployment", "zw-zen-watcher-redis")
			if redis == nil {
				t.Fatal("no bundled Redis Deployment")
			}
			cs, _, _ := unstructured.NestedSlice(redis.Object, "spec", "template", "spec", "containers")
			args := fmt.Sprint(cs[0].(map[string]any)["args"])
			if !strings.Contains(args, "--protected-mode no") {
				t.Errorf("args %s: want --protected-mode no", args)
			}
		})
	}
}

// containerEnv is the plain values of the first container's environment ("" for valueFrom).
func containerEnv(t *testing.T, dep *unstructured.Unstructured) map[string]string {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	out := map[string]string{}
	for _, e := range cs[0].(map[string]any)["env"].([]any) {
		m := e.(map[string]any)
		v, _ := m["value"].(string)
		out[m["name"].(string)] = v
	}
	return out
}

// TestGOMAXPROCSFollowsTheCPURequest: the replicas run one Go processor per core their container
// requests, rounded up, unless extraEnv sets GOMAXPROCS, which then stands alone.
func TestGOMAXPROCSFollowsTheCPURequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  []string
		want string // the one GOMAXPROCS entry, as rendered
	}{
		{name: "default", want: "map[name:GOMAXPROCS valueFrom:map[resourceFieldRef:map[divisor:1 resource:requests.cpu]]]"},
		{name: "extraEnv", set: []string{"extraEnv[0].name=GOMAXPROCS", "extraEnv[0].value=4"}, want: "map[name:GOMAXPROCS value:4]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dep := find(render(t, "zw", "zen", "", tc.set...), "Deployment", "zw-zen-watcher")
			if dep == nil {
				t.Fatal("no zen-watcher Deployment")
			}
			cs, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
			var found []string
			for _, e := range cs[0].(map[string]any)["env"].([]any) {
				if m := e.(map[string]any); m["name"] == "GOMAXPROCS" {
					found = append(found, fmt.Sprint(m))
				}
			}
			if len(found) != 1 || found[0] != tc.want {
				t.Errorf("GOMAXPROCS entries %v, want one: %s", found, tc.want)
			}
		})
	}
}

// checkRestricted holds the pod to the restricted Pod Security Standard.
func checkRestricted(t *testing.T, dep *unstructured.Unstructured) {
	t.Helper()
	pod, _, _ := unstructured.NestedMap(dep.Object, "spec", "template", "spec")
	if v, _, _ := unstructured.NestedBool(pod, "securityContext", "runAsNonRoot"); !v {
		t.Error("pod may run as root")
	}
	if v, _, _ := unstructured.NestedString(pod, "securityContext", "seccompProfile", "type"); v != "RuntimeDefault" {
		t.Errorf("seccomp %q", v)
	}
	c := pod["containers"].([]any)[0].(map[string]any)
	if v, _, _ := unstructured.NestedBool(c, "securityContext", "readOnlyRootFilesystem"); !v {
		t.Error("root filesystem writable")
	}
	if v, _, _ := unstructured.NestedBool(c, "securityContext", "allowPrivilegeEscalation"); v {
		t.Error("privilege escalation allowed")
	}
	if v, _, _ := unstructured.NestedStringSlice(c, "securityContext", "capabilities", "drop"); len(v) != 1 || v[0] != "ALL" {
		t.Errorf("capabilities dropped: %v", v)
	}
}

// TestSchemaRejectsWrongValues: a wrong value fails at render time with its path.
func TestSchemaRejectsWrongValues(t *testing.T) {
	cases := []struct{ set, want string }{
		{"replicaCount=0", "/replicaCount"},
		{"logLevel=loud", "/logLevel"},
		{"redis.mode=memcached", "/redis/mode"},
		{"haOptimization.lowTrafficWindow=5 minutes", "/haOptimization/lowTrafficWindow"},
		{"webhook.port=70000", "/webhook/port"},
		{"sources.falco.auth=basic", "/sources/falco/auth"},
		{"sources.audit.maxBodyBytes=-1", "/sources/audit/maxBodyBytes"},
		{"sources.audit.maxEventBytes=1.5", "/sources/audit/maxEventBytes"},
		{"haOptimizaton.enabled=true", "haOptimizaton"},
		{"redis.mode=sentinel,redis.addresses[0]=s:26379", "redis.masterName"},
		{"redis.mode=external", "redis.addresses"},
		{"webhook.tls.enabled=true", "webhook.tls.secretName"},
	}
	for _, tc := range cases {
		_, err := command(chartDir, helm, "template", "zw", ".", "--set", tc.set)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--set %s: %v; want an error naming %s", tc.set, err, tc.want)
		}
	}
}

// TestManifestsAcceptedByAPIServer creates every rendered object of every profile with a
// server-side dry run: the real API server validates them, Ingesters against zen-watcher's CRD and
// the monitoring objects against the Prometheus Operator's.
func TestManifestsAcceptedByAPIServer(t *testing.T) {
	dyn, err := dynamic.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cluster.Kube.Discovery()))
	i := 0
	for name, file := range profiles(t) {
		i++
		ns := fmt.Sprintf("chart-dry-%d", i)
		createNamespace(t, ns)
		for _, o := range render(t, "dry"+fmt.Sprint(i), ns, file) {
			gvk := o.GroupVersionKind()
			m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				t.Fatalf("%s: no resource for %s: %v", name, gvk, err)
			}
			var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
			if o.GetNamespace() != "" {
				ri = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
			}
			if _, err := ri.Create(context.Background(), o, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
				t.Errorf("%s: %s %s refused: %v", name, o.GetKind(), o.GetName(), err)
			}
		}
	}
	// The control: the same dry run refuses what the schemas forbid.
	for _, bad := range []string{"sources.create=true,sources.falco.enabled=true,sources.falco.secretName=",
		"metrics.serviceMonitor.enabled=true,metrics.serviceMonitor.labels.team=@@bad"} {
		refused := false
		for _, o := range render(t, "bad", "chart-dry-1", "", bad) {
			gvk := o.GroupVersionKind()
			if gvk.Kind != "Ingester" && gvk.Kind != "ServiceMonitor" {
				continue
			}
			m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				t.Fatal(err)
			}
			_, err = dyn.Resource(m.Resource).Namespace(o.GetNamespace()).Create(context.Background(), o,
				metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			refused = refused || apierrors.IsInvalid(err)
		}
		if !refused {
			t.Errorf("--set %s: nothing refused", bad)
		}
	}
}

func createNamespace(t *testing.T, name string) {
	t.Helper()
	_, err := cluster.Kube.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}
