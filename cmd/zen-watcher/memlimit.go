package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// softMemoryShare is the share of the container's memory limit the Go runtime is asked to stay
// under. The rest is headroom for what its accounting does not steer — the binary's own pages,
// thread stacks, memory returned to the kernel lazily — so that the garbage collector works harder
// before the kernel's OOM killer acts, not after.
const softMemoryShare = 0.9

// cgroupMemoryFiles hold a container's memory limit under cgroup v2 and v1.
var cgroupMemoryFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// memoryLimit is the container's memory limit in bytes: the -memory-limit value (the chart passes
// the container's limit), else the cgroup's, else 0 for none known.
func memoryLimit(configured string, readFile func(string) ([]byte, error)) (int64, error) {
	if configured != "" {
		q, err := resource.ParseQuantity(configured)
		if err != nil {
			return 0, fmt.Errorf("parsing -memory-limit %q: %w", configured, err)
		}
		return q.Value(), nil
	}
	for _, f := range cgroupMemoryFiles {
		b, err := readFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("reading the memory limit: %w", err)
		}
		// "max" under v2, and a number near 2^63 under v1, mean no limit.
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err == nil && n > 0 && n < 1<<50 {
			return n, nil
		}
		return 0, nil
	}
	return 0, nil
}

// applyMemoryLimit sets the Go runtime's soft memory limit to softMemoryShare of the container's
// limit. GOMEMLIMIT, when set, is the operator's own choice and is left as the runtime read it.
func applyMemoryLimit(limit int64, log *slog.Logger) {
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		log.Info("memory limit", "container", limit, "GOMEMLIMIT", v)
		return
	}
	if limit <= 0 {
		log.Info("memory limit", "container", "none known", "GOMEMLIMIT", "off")
		return
	}
	soft := int64(float64(limit) * softMemoryShare)
	debug.SetMemoryLimit(soft)
	log.Info("memory limit", "container", limit, "GOMEMLIMIT", soft)
}
