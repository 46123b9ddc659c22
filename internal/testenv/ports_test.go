package testenv

import (
	"net"
	"strconv"
	"testing"
)

// TestFreePortsBelowTheEphemeralRange: the ports handed out are distinct, free, and outside the
// range the kernel gives outgoing connections, which could take one before its process listens.
func TestFreePortsBelowTheEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	if low <= lowestPort {
		t.Skipf("the ephemeral range starts at %d: no room below it", low)
	}
	ports, err := freePorts(50)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Errorf("port %d handed out twice", p)
		}
		seen[p] = true
		if p < lowestPort || p >= low {
			t.Errorf("port %d is outside [%d, %d)", p, lowestPort, low)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Errorf("port %d is not free: %v", p, err)
			continue
		}
		ln.Close()
	}
}
