package testenv

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Containerd is a containerd of the test's own — its root, state, socket and configuration in a
// directory of its own, without the CRI plugin — started by its PID, as the machine's packaged
// containerd (Debian's) is started by nobody here.
type Containerd struct {
	// Socket is the address of its API, for ctr -a.
	Socket string
	// Namespace is the containerd namespace the test's images and containers live in.
	Namespace string

	dir string
	cmd *exec.Cmd
	log Buffer
	// runDir is where runc's shims keep their sockets whatever containerd's configuration says;
	// what they leave empty there is removed at Stop, and the directory itself if it was not there.
	runDir    string
	hadRunDir bool
}

// StartContainerd starts containerd with everything under a new temporary directory and waits
// until it answers.
func StartContainerd() (*Containerd, error) {
	if err := unitOnly("containerd"); err != nil {
		return nil, err
	}
	for _, b := range []string{"containerd", "ctr", "runc"} {
		if _, err := exec.LookPath(b); err != nil {
			return nil, fmt.Errorf("%s missing: run `make tools` (it installs Debian's containerd and runc)", b)
		}
	}
	dir, err := os.MkdirTemp("", "zw-containerd-")
	if err != nil {
		return nil, err
	}
	c := &Containerd{Socket: filepath.Join(dir, "containerd.sock"), Namespace: "zen-watcher-test", dir: dir,
		runDir: "/run/containerd"}
	if _, err := os.Stat(c.runDir); err == nil {
		c.hadRunDir = true
	}
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.Socket, c.Socket+".ttrpc")
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o600); err != nil {
		return nil, err
	}
	c.cmd = exec.Command("containerd", "--config", filepath.Join(dir, "config.toml"))
	c.cmd.Stdout, c.cmd.Stderr = &c.log, &c.log
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting containerd: %w", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := c.Ctr(context.Background(), "version")
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) {
			_ = c.Stop()
			return nil, fmt.Errorf("containerd did not answer within 20s: %w\n%s", err, tail([]byte(c.log.String()), 2000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Command is ctr against this containerd, in its namespace, to be started by the caller: `ctr run`
// without -d exits with the container's status and passes on what it prints.
func (c *Containerd) Command(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ctr", append([]string{"-a", c.Socket, "-n", c.Namespace}, args...)...)
}

// Ctr runs ctr against this containerd, in its namespace, and returns what it printed.
func (c *Containerd) Ctr(ctx context.Context, args ...string) (string, error) {
	cmd := c.Command(ctx, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// Log is what containerd printed.
func (c *Containerd) Log() string { return c.log.String() }

// Stop kills every task the test left, stops containerd, unmounts what it mounted and removes its
// directory.
func (c *Containerd) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := c.Ctr(ctx, "tasks", "ls", "-q"); err == nil {
		for _, id := range strings.Fields(out) {
			_, _ = c.Ctr(ctx, "tasks", "kill", "-s", "SIGKILL", id)
			_, _ = c.Ctr(ctx, "tasks", "delete", "-f", id)
		}
	}
	if out, err := c.Ctr(ctx, "containers", "ls", "-q"); err == nil {
		for _, id := range strings.Fields(out) {
			_, _ = c.Ctr(ctx, "containers", "delete", id)
		}
	}
	err := stopProcess(c.cmd, 10*time.Second)
	unmountUnder(c.dir)
	removeEmptyDirs(c.runDir, !c.hadRunDir)
	if rerr := os.RemoveAll(c.dir); err == nil {
		err = rerr
	}
	return err
}

// unmountUnder unmounts every mount below dir, deepest first: the snapshots and shim state a
// killed containerd leaves mounted.
func unmountUnder(dir string) {
	data, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			points = append(points, f[1])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		_ = syscall.Unmount(points[i], syscall.MNT_DETACH)
	}
}

// removeEmptyDirs removes the empty directories below dir, deepest first, and dir itself when
// self is set and it is empty then: what another containerd still uses is never empty.
func removeEmptyDirs(dir string, self bool) {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && (p != dir || self) {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = os.Remove(dirs[i]) // fails, as it should, on a directory that is not empty
	}
}
