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

// RedisCluster is a real Redis Cluster of redis-server processes on loopback ports, every slot
// assigned, no replicas.
type RedisCluster struct {
	// Addrs are the nodes' host:port, as a client's seed list.
	Addrs []string
	nodes []*Redis
}

// StartRedisCluster starts n (at least 3) redis-server processes in cluster mode and joins them
// with `redis-cli --cluster create`. Each node's bus port is chosen free too, since the default
// (port + 10000) may lie past 65535 for a port the kernel hands out.
func StartRedisCluster(n int) (*RedisCluster, error) {
	if err := unitOnly("a Redis Cluster"); err != nil {
		return nil, err
	}
	if n < 3 {
		return nil, errors.New("a Redis Cluster needs at least 3 nodes")
	}
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%s not found: run `make tools` (it installs Debian's redis-server)", bin)
		}
	}
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	c := &RedisCluster{}
	for i := range n {
		dir, err := os.MkdirTemp("", "zw-redis-cluster-")
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		r := &Redis{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i])), port: ports[i], dir: dir,
			extra: []string{"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
				"--cluster-port", strconv.Itoa(ports[n+i]), "--cluster-node-timeout", "2000"}}
		c.nodes = append(c.nodes, r)
		if err := r.Start(); err != nil {
			_ = c.Close()
			return nil, err
		}
		c.Addrs = append(c.Addrs, r.Addr)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.waitOK(30 * time.Second); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// waitOK waits until every node reports the cluster's state as ok.
func (c *RedisCluster) waitOK(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ok := true
		for _, r := range c.nodes {
			host, port, _ := net.SplitHostPort(r.Addr)
			out, err := exec.Command("redis-cli", "-h", host, "-p", port, "cluster", "info").Output()
			ok = ok && err == nil && strings.Contains(string(out), "cluster_state:ok")
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the Redis Cluster on %v was not ok within %v", c.Addrs, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Close stops every node and removes their directories.
func (c *RedisCluster) Close() error {
	var errs []error
	for _, r := range c.nodes {
		errs = append(errs, r.Close())
	}
	return errors.Join(errs...)
}
