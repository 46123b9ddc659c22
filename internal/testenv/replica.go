package testenv

import (
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"
)

// Replica is one zen-watcher process a test started, exactly as `make run` starts one.
type Replica struct {
	// Name names the replica in the test's messages.
	Name string
	// MetricsAddr serves /metrics, /healthz and /readyz; WebhookAddr the webhooks.
	MetricsAddr, WebhookAddr string
	Cmd                      *exec.Cmd
	// Out is what the process wrote to stdout and stderr.
	Out    *Buffer
	exited chan struct{}
	err    error
}

// StartReplica starts the daemon at bin serving its metrics on metricsAddr (a free loopback
// address when empty) and its webhooks on a free one; args follow and win. The process is stopped
// when t ends, and its output logged if t failed.
func StartReplica(t testing.TB, bin, name, metricsAddr string, args ...string) *Replica {
	t.Helper()
	if metricsAddr == "" {
		metricsAddr = FreeAddr(t)
	}
	r := &Replica{Name: name, MetricsAddr: metricsAddr, WebhookAddr: FreeAddr(t), Out: &Buffer{}, exited: make(chan struct{})}
	r.Cmd = exec.Command(bin, append([]string{"-metrics-addr", r.MetricsAddr, "-webhook-addr", r.WebhookAddr}, args...)...)
	r.Cmd.Stdout, r.Cmd.Stderr = r.Out, r.Out
	if err := r.Cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { r.err = r.Cmd.Wait(); close(r.exited) }()
	t.Cleanup(func() {
		r.Stop()
		if t.Failed() {
			t.Logf("output of %s:\n%s", name, r.Out.String())
		}
	})
	return r
}

// Exited is closed once the process has exited.
func (r *Replica) Exited() <-chan struct{} { return r.exited }

// Err is how the process exited; nil before it has (see Exited).
func (r *Replica) Err() error {
	select {
	case <-r.exited:
		return r.err
	default:
		return nil
	}
}

// Stop ends the process as a rolling update would: SIGINT, then SIGKILL after 15 s.
func (r *Replica) Stop() {
	select {
	case <-r.exited:
		return
	default:
	}
	_ = r.Cmd.Process.Signal(os.Interrupt)
	select {
	case <-r.exited:
	case <-time.After(15 * time.Second):
		_ = r.Cmd.Process.Kill()
		<-r.exited
	}
}

// Kill ends the process as a crash would.
func (r *Replica) Kill() {
	_ = r.Cmd.Process.Kill()
	<-r.exited
}

// WaitReady polls /readyz until it answers 200, and fails t if the process exits first or
// timeout passes.
func (r *Replica) WaitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-r.exited:
			t.Fatalf("%s exited before it was ready: %v\n%s", r.Name, r.err, r.Out.String())
		default:
		}
		resp, err := http.Get("http://" + r.MetricsAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s not ready within %s\n%s", r.Name, timeout, r.Out.String())
}
