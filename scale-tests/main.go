// Command scale-tests drives load through zen-watcher's real paths and measures what comes out.
// It brings up a control plane and Redis (through internal/testenv), starts replicas of the real
// binary as processes, creates Warning Events at a steady rate, and watches the Observations
// appear: findings in, Observations out, end-to-end latency, and the raw create ceiling of the same
// API server measured in the same run. Results go to a JSON file.
//
// This is the harness's frame; scenarios beyond steady Warning Events come with the features they
// exercise.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/kube-zen/zen-watcher/internal/testenv"
)

// options are the scenario's knobs.
type options struct {
	replicas int
	rate     float64
	duration time.Duration
	out      string
}

func main() {
	var o options
	flag.IntVar(&o.replicas, "replicas", 3, "zen-watcher replicas to run")
	flag.Float64Var(&o.rate, "rate", 100, "warnings created per second")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "how long the load lasts")
	flag.StringVar(&o.out, "out", "scale-tests/results", "folder for the JSON results")
	flag.Parse()
	if err := run(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "scale-tests:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	if o.replicas < 1 || o.rate <= 0 || o.duration <= 0 {
		return fmt.Errorf("-replicas, -rate and -duration must be positive")
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "zw-scale-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	binary := filepath.Join(work, "zen-watcher")
	build := exec.Command("go", "build", "-o", binary, "./cmd/zen-watcher")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building zen-watcher: %v\n%s", err, out)
	}
	cluster, err := testenv.StartCluster(testenv.Options{})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	redis, err := testenv.StartRedis()
	if err != nil {
		return err
	}
	defer redis.Close()

	res := &result{Scenario: "steady-warnings", Replicas: o.replicas, TargetRate: o.rate,
		Started: time.Now().UTC(), Machine: machine()}
	if res.RawCreatesPerSec, err = rawCeiling(ctx, cluster); err != nil {
		return err
	}
	stop, err := startReplicas(ctx, binary, cluster.Kubeconfig, redis.Addr, o.replicas, work)
	if err != nil {
		return err
	}
	defer stop()
	if err := drive(ctx, cluster, o, res); err != nil {
		return err
	}
	return write(o.out, res)
}

func write(dir string, res *result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	name := filepath.Join(dir, fmt.Sprintf("%s-%s.json", res.Scenario, res.Started.Format("20060102-150405")))
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(name, b, 0o644); err != nil {
		return err
	}
	fmt.Printf("%s\n%s\n", b, name)
	return nil
}
