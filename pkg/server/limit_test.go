package server

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestLimitListener opens real connections from two loopback addresses against a listener that
// keeps three, two per client: the one over a limit is closed unread with its reason, and a
// closed connection gives its place back.
func TestLimitListener(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	refused := map[string]int{}
	open := 0
	ln := LimitListener(raw, ConnLimits{Max: 3, PerClient: 2,
		Refused: func(r string) { mu.Lock(); refused[r]++; mu.Unlock() },
		Opened:  func(n int) { mu.Lock(); open = n; mu.Unlock() }})
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func(from string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// closedUnread tells whether the server closed c: a read ends at once with EOF or a reset.
	closedUnread := func(c net.Conn) bool {
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		ne, timeout := err.(net.Error)
		return err != nil && !(timeout && ne.Timeout())
	}
	for _, step := range []struct {
		from   string
		kept   bool
		reason string
	}{
		{"127.0.0.1", true, ""},
		{"127.0.0.1", true, ""},
		{"127.0.0.1", false, "client_full"},
		{"127.0.0.2", true, ""},
		{"127.0.0.2", false, "listener_full"},
	} {
		c := dial(step.from)
		if got := !closedUnread(c); got != step.kept {
			t.Fatalf("a connection from %s kept: %v, want %v", step.from, got, step.kept)
		}
	}
	mu.Lock()
	if refused["client_full"] != 1 || refused["listener_full"] != 1 || open != 3 {
		t.Errorf("refused %v, open %d; want one of each reason and 3 open", refused, open)
	}
	mu.Unlock()
	first := <-accepted
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	_ = first.Close() // a second close gives nothing back twice
	if c := dial("127.0.0.2"); closedUnread(c) {
		t.Fatal("no place after a connection closed")
	}
	if c := dial("127.0.0.2"); !closedUnread(c) {
		t.Fatal("a place given back twice")
	}
}

// TestRefusalBudget: an address refused more often than its budget is answered 429 unread, while
// another address is served, and a sender's unparsable or unwritable content spends nothing.
func TestRefusalBudget(t *testing.T) {
	w, m := newHooksWith(t, WebhookConfig{Acceptor: Direct{Handler: &countingHandler{}}, RefusalsPerClient: 0.001, RefusalBurstPerClient: 3})
	do := func(from, path, auth, body string) int {
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
		req.RemoteAddr = from + ":40000"
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, req)
		return rec.Code
	}
	for i, step := range []struct {
		from, path, auth, body string
		want                   int
	}{
		{"10.0.0.1", "/falco", "", "{not json", http.StatusBadRequest}, // content: spends nothing
		{"10.0.0.1", "/falco", "", "{not json", http.StatusBadRequest},
		{"10.0.0.1", "/falco", "", "{not json", http.StatusBadRequest},
		{"10.0.0.1", "/falco", "", "{not json", http.StatusBadRequest},
		{"10.0.0.1", "/secure", "Bearer wrong", alert, http.StatusUnauthorized},
		{"10.0.0.1", "/nowhere", "", alert, http.StatusNotFound},
		{"10.0.0.1", "/secure", "Bearer wrong", alert, http.StatusUnauthorized},
		{"10.0.0.1", "/secure", "Bearer tok", alert, http.StatusTooManyRequests}, // the budget is spent
		{"10.0.0.1", "/falco", "", alert, http.StatusTooManyRequests},
		{"10.0.0.2", "/secure", "Bearer tok", alert, http.StatusAccepted}, // another address
		{"10.0.0.2", "/secure", "Bearer wrong", alert, http.StatusUnauthorized},
	} {
		if got := do(step.from, step.path, step.auth, step.body); got != step.want {
			t.Fatalf("step %d (%s %s): HTTP %d, want %d", i, step.from, step.path, got, step.want)
		}
	}
	if got := testutil.ToFloat64(m.WebhookRejected.WithLabelValues("falco", "client_refused")); got != 1 {
		t.Errorf("client_refused counted %v times for /falco, want 1", got)
	}
}
