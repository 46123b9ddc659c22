package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Redis is a real redis-server on a loopback port, without persistence unless started with
// StartRedisPersistent.
type Redis struct {
	// Addr is host:port.
	Addr string

	persist bool
	port    int
	dir     string
	extra   []string // further redis-server arguments (cluster mode, a replica's primary)
	host    string   // listened on besides loopback, when set
	// sentinelConf, when set, makes the process a Sentinel of this configuration file.
	sentinelConf string
	cmd          *exec.Cmd
}

// StartRedis starts redis-server on a free loopback port. A missing redis-server is an error naming
// the command that installs it.
func StartRedis() (*Redis, error) { return startRedis(false) }

// StartRedisPersistent starts redis-server with an append-only file synced on every write, as a
// durable webhook queue needs: a killed server restarts with every acknowledged entry.
func StartRedisPersistent() (*Redis, error) { return startRedis(true) }

// StartRedisOn starts redis-server listening on host as well as loopback, with further arguments;
// Addr is on host. The server is asked whether it is ready over loopback, which protected mode
// always serves.
func StartRedisOn(host string, args ...string) (*Redis, error) {
	return startRedis(false, func(r *Redis) {
		r.host = host
		r.Addr = net.JoinHostPort(host, strconv.Itoa(r.port))
		r.extra = args
	})
}

func startRedis(persist bool, opts ...func(*Redis)) (*Redis, error) {
	if err := unitOnly("redis-server"); err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, errors.New("redis-server not found: run `make tools` (as root it installs Debian's " +
			"redis-server), or `apt-get install -y redis-server`")
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "zw-redis-")
	if err != nil {
		return nil, err
	}
	r := &Redis{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), persist: persist, port: port, dir: dir}
	for _, o := range opts {
		o(r)
	}
	if err := r.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return r, nil
}

// Start starts the server (again) on its port; tests use Stop and Start to take Redis away and
// bring it back at the same address.
func (r *Redis) Start() error {
	if r.cmd != nil {
		return errors.New("redis-server already running")
	}
	aof := []string{"--appendonly", "no"}
	if r.persist {
		aof = []string{"--appendonly", "yes", "--appendfsync", "always"}
	}
	bind := []string{"--bind", "127.0.0.1"}
	if r.host != "" && r.host != "127.0.0.1" {
		bind = append(bind, r.host)
	}
	args := append(append(bind, "--port", strconv.Itoa(r.port), "--save", "", "--dir", r.dir,
		"--logfile", filepath.Join(r.dir, "redis.log")), append(aof, r.extra...)...)
	if r.sentinelConf != "" {
		args = []string{r.sentinelConf, "--sentinel"}
	}
	cmd := exec.Command("redis-server", args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting redis-server: %w", err)
	}
	r.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if r.Ping() == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = r.Stop()
	return fmt.Errorf("redis-server on %s did not answer PING within 10s", r.Addr)
}

// Ping sends PING over loopback and expects PONG.
func (r *Redis) Ping() error {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)), time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// Stop kills the server and waits for it to exit, as a crash would: without persistence its data
// is gone.
func (r *Redis) Stop() error {
	if r.cmd == nil {
		return nil
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
	return nil
}

// Pause stops the server's process (SIGSTOP) without closing a connection: commands sent to it
// wait in its sockets, and run when Resume continues it.
func (r *Redis) Pause() error {
	if r.cmd == nil {
		return errors.New("redis-server not running")
	}
	return r.cmd.Process.Signal(syscall.SIGSTOP)
}

// Resume continues a paused server (SIGCONT).
func (r *Redis) Resume() error {
	if r.cmd == nil {
		return errors.New("redis-server not running")
	}
	return r.cmd.Process.Signal(syscall.SIGCONT)
}

// PID is the server's process ID (0 while stopped).
func (r *Redis) PID() int {
	if r.cmd == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// Close stops the server and removes its directory.
func (r *Redis) Close() error {
	return errors.Join(r.Stop(), os.RemoveAll(r.dir))
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	ports, err := freePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// FreePort is a loopback port nobody listens on now, for a process the test starts.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// FreeAddr is FreePort as a host:port.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// RunWithRedis is a TestMain body: it starts redis-server into *r, runs the tests, stops it, and
// returns the exit code.
func RunWithRedis(m *testing.M, r **Redis) int {
	srv, err := StartRedis()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	*r = srv
	defer srv.Close()
	return m.Run()
}
