package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// handedOut holds every port freePorts returned in this process, so that a port is handed out once:
// two addresses of one replica, or of two replicas, never coincide, though a test starts its
// process only after it has asked for all the ports it needs.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// lowestPort is the bottom of the range freePorts picks from.
const lowestPort = 10000

// freePorts returns n loopback ports nobody listens on now. They are picked below the kernel's
// ephemeral range where it leaves room: a port the kernel chose for a listener that was then
// closed is one it may give the next outgoing connection — the API server's, Redis's, a scrape's —
// before the process the port was meant for listens on it ("address already in use").
func freePorts(n int) ([]int, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	top := ephemeralLow()
	var out []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for tries := 0; len(out) < n; tries++ {
		if tries == 10000 {
			return nil, fmt.Errorf("finding a free port: none of %d tried below %d was free", tries, top)
		}
		port := 0 // the kernel's choice, where there is no room below its range
		if top > lowestPort {
			if port = lowestPort + rand.IntN(top-lowestPort); handedOut.ports[port] {
				continue
			}
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			if port == 0 {
				return nil, fmt.Errorf("finding a free port: %w", err)
			}
			continue // taken
		}
		// Held open until the end, so a port handed out before is not offered again now.
		lns = append(lns, ln)
		port = ln.Addr().(*net.TCPAddr).Port
		if handedOut.ports[port] {
			continue
		}
		handedOut.ports[port] = true
		out = append(out, port)
	}
	return out, nil
}

// ephemeralLow is the first port of the range the kernel gives outgoing connections; 0 where it
// cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return 0
	}
	low, err := strconv.Atoi(fields[0])
	if err != nil {
		return 0
	}
	return low
}

// PickAddr is FreeAddr for a caller without a testing.TB.
func PickAddr() (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}

// NonLoopbackIPv4 is an IPv4 address of this machine that is not loopback: connections to it come
// from it, so a server that serves loopback alone refuses them. The test is skipped on a machine
// without one.
func NonLoopbackIPv4(t testing.TB) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	t.Skip("this machine has no IPv4 address besides loopback")
	return ""
}
