package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kube-zen/zen-watcher/internal/testenv"
)

// replica is one zen-watcher process of a run.
type replica struct {
	id                       string
	metricsAddr, webhookAddr string
	cmd                      *exec.Cmd
	exited                   chan struct{}
	// log is the file the replica writes its output to.
	log string
	// stopping is set when a scale step began to stop the replica (by the generator's goroutine).
	stopping bool
}

func (r *replica) alive() bool {
	select {
	case <-r.exited:
		return false
	default:
		return true
	}
}

// startReplica runs the binary with the run's release; ready waits for /readyz.
func (r *run) startReplica(ctx context.Context, i int) (*replica, error) {
	metricsAddr, err := testenv.PickAddr()
	if err != nil {
		return nil, err
	}
	webhookAddr, err := testenv.PickAddr()
	if err != nil {
		return nil, err
	}
	rep := &replica{id: fmt.Sprintf("%s-%d", r.tok, i), metricsAddr: metricsAddr, webhookAddr: webhookAddr, exited: make(chan struct{})}
	rep.log = filepath.Join(r.env.work, rep.id+".log")
	logf, err := os.Create(rep.log)
	if err != nil {
		return nil, err
	}
	args := []string{"-kubeconfig", r.env.cluster.Kubeconfig, "-namespace", r.release, "-release", r.release,
		"-redis-addr", r.env.redis.Addr, "-member-id", rep.id, "-metrics-addr", rep.metricsAddr,
		"-webhook-addr", rep.webhookAddr, "-webhook-rate", "100000", "-log-level", r.env.logLevel, "-default-sources=false"}
	if r.sc.FastLeases {
		args = append(args, "-member-lease-duration", "4s", "-member-renew-interval", "1s",
			"-leader-lease-duration", "4s", "-leader-renew-deadline", "3s", "-leader-retry-period", "500ms",
			"-webhook-claim-idle", "5s")
	}
	if r.sc.MinSeverity != "" {
		args = append(args, "-min-severity", r.sc.MinSeverity)
	}
	rep.cmd = exec.Command(r.env.binary, args...)
	rep.cmd.Stdout, rep.cmd.Stderr = logf, logf
	if err := rep.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = rep.cmd.Wait(); logf.Close(); close(rep.exited) }()
	return rep, nil
}

func (rep *replica) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !rep.alive() {
			return fmt.Errorf("replica %s exited (%v) before it was ready; its output ends:\n%s",
				rep.id, rep.cmd.ProcessState, rep.logTail(20))
		}
		if resp, err := http.Get("http://" + rep.metricsAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("replica %s not ready within %s", rep.id, timeout)
}

// logTail is the last n lines of the replica's output: why it exited, once the work folder is gone.
func (rep *replica) logTail(n int) string {
	b, err := os.ReadFile(rep.log)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", rep.log, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func (rep *replica) stop() {
	if !rep.alive() {
		return
	}
	_ = rep.cmd.Process.Signal(os.Interrupt)
	select {
	case <-rep.exited:
	case <-time.After(15 * time.Second):
		_ = rep.cmd.Process.Kill()
		<-rep.exited
	}
}

func (rep *replica) kill() {
	_ = rep.cmd.Process.Kill()
	<-rep.exited
}

// usage is a process's CPU time so far and its resident memory, from /proc.
func (rep *replica) usage() (u use, err error) {
	pid := rep.cmd.Process.Pid
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return use{}, err
	}
	// Fields after the command name, which may hold spaces: state is the 3rd field, utime the 14th.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(f) < 13 {
		return use{}, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const userHZ = 100 // the kernel's USER_HZ on Linux
	u.cpu = time.Duration(utime+stime) * time.Second / userHZ
	status, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return use{}, err
	}
	defer status.Close()
	sc := bufio.NewScanner(status)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			u.rss = kibibytes(v)
		} else if v, ok := strings.CutPrefix(sc.Text(), "RssAnon:"); ok {
			u.anon = kibibytes(v)
		}
	}
	return u, sc.Err()
}

// cpuAtExit is the CPU time an exited replica used in all, from its exit status; zero while it runs.
func (rep *replica) cpuAtExit() time.Duration {
	if rep.alive() || rep.cmd.ProcessState == nil {
		return 0
	}
	return rep.cmd.ProcessState.UserTime() + rep.cmd.ProcessState.SystemTime()
}

// use is a replica's CPU used so far and its resident memory now: all of it (VmRSS, mostly the
// binary's own pages) and the anonymous part (RssAnon: the heap, stacks and runtime).
type use struct {
	cpu       time.Duration
	rss, anon int64
	heap      int64 // the Go heap in use, read from the metrics by the sampler
}

// kibibytes reads a /proc/PID/status size ("   1234 kB") in bytes.
func kibibytes(v string) int64 {
	f := strings.Fields(v)
	if len(f) == 0 {
		return 0
	}
	kb, _ := strconv.ParseInt(f[0], 10, 64)
	return kb << 10
}

// metrics reads a replica's /metrics: the sum of each family's samples, by name (labels dropped)
// and by the full series text.
func (rep *replica) metrics() (map[string]float64, error) {
	resp, err := http.Get("http://" + rep.metricsAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return parseMetrics(resp.Body)
}

func parseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		series := line[:i]
		name, _, _ := strings.Cut(series, "{")
		out[name] += v
		out[series] = v
	}
	return out, sc.Err()
}
