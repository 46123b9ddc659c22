package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// SentinelMaster is the master name the Sentinels of StartRedisSentinel monitor.
const SentinelMaster = "zw-master"

// RedisSentinel is a real Sentinel deployment on loopback: a primary, one replica of it and three
// Sentinels (redis-server --sentinel) that agree on which of the two is the primary.
type RedisSentinel struct {
	// Sentinels are the Sentinels' host:port, as a client's -redis-addr.
	Sentinels []string
	// Primary and Replica are the data servers as started; after a Failover they swap roles.
	Primary, Replica *Redis
	sentinels        []*Redis
}

// StartRedisSentinel starts the primary, its replica and three Sentinels with a quorum of two,
// and waits until every Sentinel knows the replica and the other two.
func StartRedisSentinel() (*RedisSentinel, error) {
	if err := unitOnly("Redis Sentinels"); err != nil {
		return nil, err
	}
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%s not found: run `make tools` (it installs Debian's redis-server)", bin)
		}
	}
	ports, err := freePorts(5)
	if err != nil {
		return nil, err
	}
	s := &RedisSentinel{}
	start := func(port int, extra ...string) (*Redis, error) {
		dir, err := os.MkdirTemp("", "zw-redis-sentinel-")
		if err != nil {
			return nil, err
		}
		r := &Redis{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), port: port, dir: dir, extra: extra}
		return r, r.Start()
	}
	if s.Primary, err = start(ports[0]); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	if s.Replica, err = start(ports[1], "--replicaof", "127.0.0.1", strconv.Itoa(ports[0])); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	for _, port := range ports[2:] {
		sen, err := startSentinel(port, ports[0])
		if sen != nil {
			s.sentinels = append(s.sentinels, sen)
		}
		if err != nil {
			return nil, errors.Join(err, s.Close())
		}
		s.Sentinels = append(s.Sentinels, sen.Addr)
	}
	if err := s.waitAgreed(30 * time.Second); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	return s, nil
}

// startSentinel starts one Sentinel on port monitoring the primary on primaryPort. A Sentinel
// rewrites its configuration file, so each gets its own in its own directory.
func startSentinel(port, primaryPort int) (*Redis, error) {
	dir, err := os.MkdirTemp("", "zw-sentinel-")
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "sentinel.conf")
	m := SentinelMaster
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\n", port, dir, filepath.Join(dir, "sentinel.log")) +
		fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 2\n", m, primaryPort) +
		fmt.Sprintf("sentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 10000\n", m, m) +
		fmt.Sprintf("sentinel parallel-syncs %s 1\n", m)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return nil, err
	}
	r := &Redis{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), port: port, dir: dir, sentinelConf: conf}
	return r, r.Start()
}

// waitAgreed waits until the replica has synced from the primary and every Sentinel sees it and
// the two other Sentinels.
func (s *RedisSentinel) waitAgreed(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		role, err := s.Replica.cli("ROLE")
		ok := err == nil && strings.Contains(role, "connected")
		for _, sen := range s.sentinels {
			info, err := sen.cli("SENTINEL", "MASTER", SentinelMaster)
			ok = ok && err == nil && field(info, "num-slaves") == "1" && field(info, "num-other-sentinels") == "2"
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the Sentinels on %v did not agree on %s within %v", s.Sentinels, SentinelMaster, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Failover has the Sentinels promote the replica (SENTINEL FAILOVER) and waits until every
// Sentinel names it the primary and the former primary replicates from it; the roles in s swap.
func (s *RedisSentinel) Failover(timeout time.Duration) error {
	if _, err := s.sentinels[0].cli("SENTINEL", "FAILOVER", SentinelMaster); err != nil {
		return fmt.Errorf("SENTINEL FAILOVER: %w", err)
	}
	want := s.Replica.Addr
	deadline := time.Now().Add(timeout)
	for {
		ok := true
		for _, sen := range s.sentinels {
			out, err := sen.cli("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster)
			ok = ok && err == nil && strings.Join(strings.Fields(out), ":") == want
		}
		role, err := s.Primary.cli("ROLE")
		ok = ok && err == nil && strings.HasPrefix(role, "slave") && strings.Contains(role, "connected")
		if ok {
			s.Primary, s.Replica = s.Replica, s.Primary
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the Sentinels did not make %s the primary within %v", want, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Close stops the Sentinels and both servers and removes their directories.
func (s *RedisSentinel) Close() error {
	var errs []error
	for _, r := range append(s.sentinels, s.Primary, s.Replica) {
		if r != nil {
			errs = append(errs, r.Close())
		}
	}
	return errors.Join(errs...)
}

// cli runs one redis-cli command against r and returns its output.
func (r *Redis) cli(args ...string) (string, error) {
	host, port, _ := net.SplitHostPort(r.Addr)
	out, err := exec.Command("redis-cli", append([]string{"-h", host, "-p", port}, args...)...).Output()
	if err != nil {
		return "", fmt.Errorf("redis-cli %s on %s: %w", strings.Join(args, " "), r.Addr, err)
	}
	return string(out), nil
}

// field reads name's value from redis-cli's output of a flat list of names and values.
func field(out, name string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := 0; i+1 < len(lines); i++ {
		if strings.TrimSpace(lines[i]) == name {
			return strings.TrimSpace(lines[i+1])
		}
	}
	return ""
}
