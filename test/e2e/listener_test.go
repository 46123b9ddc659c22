package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
	"github.com/kube-zen/zen-watcher/pkg/server"
)

// TestListenerHoldsUnderConnectionAttacks runs the real binary with its connection limits, minimum
// body rate and refusal budget, and attacks its webhook listener from three loopback addresses
// while a fourth posts a steady stream of genuine HMAC-signed alerts: 2,000 idle connections from
// one address; 10,000 connections from another that trickle their bodies; replays of a genuine
// alert with its signature re-encoded, a 1 MiB and a 200 KB detail key; then a wrong-token flood of
// up to 10,000 requests from a third. The replica keeps only its per-client share of connections,
// its open files and memory stay bounded, every trickling body it read from ends in a 408 after the
// grace, each bad request gets its status and no Observation, the flood past its budget is answered
// 429 unread, and at least 99% of the genuine stream is accepted — each accepted alert written
// exactly once, and nothing else. The bounds, through all of it: open files at most the per-client
// share and 60 more than before (measured: 12 before, 214 at most), resident memory at most 25 MiB
// more (measured: 58 MiB before, 69 at most), in the binary built without the race detector.
func TestListenerHoldsUnderConnectionAttacks(t *testing.T) {
	const perClient = 200
	ensureNamespace(t, "zen-system")
	ensureNamespace(t, "listener")
	ingester(t, "falco-listener", v1alpha1.IngesterSpec{Source: "falcol", Adapter: v1alpha1.AdapterFalco,
		Webhook: &v1alpha1.WebhookSource{Path: "/falcol", Auth: v1alpha1.WebhookAuth{Type: v1alpha1.WebhookAuthNone}}})
	secret(t, "falco-listener-token", map[string][]byte{"token": []byte(listenerToken)})
	secret(t, "falco-listener-hmac", map[string][]byte{"key": []byte(listenerKey)})
	ingester(t, "falco-listener-hmac", v1alpha1.IngesterSpec{Source: "falcolh", Adapter: v1alpha1.AdapterFalco,
		Webhook: &v1alpha1.WebhookSource{Path: "/falcolh", Auth: v1alpha1.WebhookAuth{Type: v1alpha1.WebhookAuthHMAC,
			SecretRef: &v1alpha1.SecretKeyRef{Name: "falco-listener-hmac", Key: "key"}}}})
	ingester(t, "falco-listener-bearer", v1alpha1.IngesterSpec{Source: "falcolb", Adapter: v1alpha1.AdapterFalco,
		Webhook: &v1alpha1.WebhookSource{Path: "/falcolb", Auth: v1alpha1.WebhookAuth{Type: v1alpha1.WebhookAuthBearer,
			SecretRef: &v1alpha1.SecretKeyRef{Name: "falco-listener-token", Key: "token"}}}})
	// Without the race detector: its shadow memory would be most of what the bounds measure.
	plain, err := plainBinary()
	if err != nil {
		t.Fatal(err)
	}
	r := startBinary(t, plain, "listener", "-namespace", "zen-system", "-release", "listener", "-member-id", "listener",
		"-webhook-max-connections", "600", "-webhook-max-connections-per-client", strconv.Itoa(perClient),
		"-webhook-max-in-flight", "300", "-webhook-min-body-rate", "1024")
	r.WaitReady(t, 60*time.Second)
	waitRoute(t, r, "/falcol")
	waitRoute(t, r, "/falcolb")
	waitRoute(t, r, "/falcolh")
	pid := r.Cmd.Process.Pid
	files0, rss0 := openFiles(t, pid), rssMiB(t, pid)
	use := watchUse(pid)

	g := startGenuine(t, r)

	// Idle connections: each costs a file and buffers until the header timeout; one address may
	// hold its share and no more.
	idle := dialFrom(t, "127.0.0.2", r.WebhookAddr, 5000)
	time.Sleep(2 * time.Second)
	if n := r.metric("zen_watcher_webhook_connections"); n > perClient+20 {
		t.Errorf("%v connections open during the idle flood, want at most %d and the genuine sender's", n, perClient)
	}
	if n := r.metric(`zen_watcher_webhook_connections_refused_total{reason="client_full"}`); n < 5000-perClient-100 {
		t.Errorf("%v idle connections refused, want about %d", n, 5000-perClient)
	}
	for _, c := range idle {
		c.Close()
	}

	// Trickling bodies: a few bytes a second each, for longer than the grace.
	answers := trickle(t, "127.0.0.3", r.WebhookAddr, 10_000, 8*time.Second)
	got408 := answers["408"]
	if got408 < perClient/2 || got408+answers["closed"] != 10_000 {
		t.Errorf("answers to the trickling bodies %v: want each kept one answered 408 (at least %d) and the rest closed unread",
			answers, perClient/2)
	}
	if n := r.metric(`zen_watcher_webhook_rejected_total{reason="slow_body",source="falcol"}`); n != float64(got408) {
		t.Errorf("%v slow bodies counted, %d answered 408", n, got408)
	}

	// Bad requests among the genuine ones: each its status, none an Observation.
	genuineBody := signedAlert(0)
	genuineHeader := signedHeader([]byte(listenerKey), time.Now(), genuineBody)
	sig := strings.TrimPrefix(genuineHeader.Get(server.DefaultSignatureHeader), "sha256=")
	recased := func(v string) http.Header {
		h := genuineHeader.Clone()
		h.Set(server.DefaultSignatureHeader, v)
		return h
	}
	unwritable := func(field, value string) []byte {
		fields := map[string]string{"k8s.ns.name": "listener", "k8s.pod.name": "cart-0"}
		fields[field] = value
		b, _ := json.Marshal(map[string]any{"output": "unwritable " + field, "priority": "Warning", "rule": "Unwritable",
			"time": "2026-12-01T10:00:00Z", "hostname": "node-1", "output_fields": fields})
		return b
	}
	huge := func(keyBytes int) []byte {
		b, _ := json.Marshal(map[string]any{"output": "huge key", "priority": "Warning", "rule": "Huge key", "time": "2026-12-01T10:00:00Z",
			"hostname": "node-1", "output_fields": map[string]string{"k8s.ns.name": "listener", strings.Repeat("k", keyBytes): "1"}})
		return b
	}
	for _, bad := range []struct {
		name   string
		body   []byte
		header http.Header
		want   int
	}{
		{"the genuine alert once", genuineBody, genuineHeader, http.StatusAccepted},
		{"replayed as sent", genuineBody, genuineHeader, http.StatusUnauthorized},
		{"replayed in upper case", genuineBody, recased("sha256=" + strings.ToUpper(sig)), http.StatusUnauthorized},
		{"replayed with one letter upper-cased", genuineBody, recased("sha256=" + upperFirstLetter(sig)), http.StatusUnauthorized},
		{"replayed without its prefix", genuineBody, recased(sig), http.StatusUnauthorized},
		{"replayed padded with spaces", genuineBody, recased("sha256=" + sig + "  "), http.StatusUnauthorized},
		{"a pod name over 253", unwritable("k8s.pod.name", strings.Repeat("p", 300)), nil, http.StatusUnprocessableEntity},
		{"a namespace over 63", unwritable("k8s.ns.name", strings.Repeat("n", 64)), nil, http.StatusUnprocessableEntity},
		{"a 1 MiB detail key", huge(1 << 20), nil, http.StatusRequestEntityTooLarge},
		{"a 200 KB detail key", huge(200_000), nil, http.StatusUnprocessableEntity},
	} {
		header := bad.header
		if header == nil {
			header = signedHeader([]byte(listenerKey), time.Now(), bad.body)
		}
		if code := postWith(t, "http://"+r.WebhookAddr+"/falcolh", bad.body, header); code != bad.want {
			t.Errorf("%s: HTTP %d, want %d", bad.name, code, bad.want)
		}
	}
	// The bearer scheme in any case is the genuine token.
	for i, scheme := range []string{"Bearer", "bearer", "BEARER"} {
		h := http.Header{"Authorization": {scheme + " " + listenerToken}}
		body := []byte(fmt.Sprintf(`{"output":"bearer case %d","priority":"Warning","rule":"Bearer case","time":"2026-12-01T10:00:00Z",`+
			`"hostname":"node-1","output_fields":{"k8s.ns.name":"listener"}}`, i))
		if code := postWith(t, "http://"+r.WebhookAddr+"/falcolb", body, h); code != http.StatusAccepted {
			t.Errorf("scheme %q with the right token: HTTP %d, want 202", scheme, code)
		}
	}

	// A wrong-token flood from one address: at most the refusal budget is looked at, the rest is
	// answered 429 unread.
	floodStart := time.Now()
	flood := floodFrom(t, "127.0.0.4", "http://"+r.WebhookAddr+"/falcolb", "Bearer not-the-token", 10_000, 5*time.Second)
	t.Logf("wrong-token flood: %v in %v", flood, time.Since(floodStart).Round(time.Millisecond))
	if flood["401"] > 250 || flood["429"] < flood["401"] {
		t.Errorf("wrong-token flood answered %v: want at most the budget's burst and rate refused as 401, the rest 429", flood)
	}

	// Genuine signed alerts faster than the local replay memory once took (about 166 a second).
	signedBurst := burstSigned(t, "http://"+r.WebhookAddr+"/falcolh", 1000, 8)
	if signedBurst.accepted != 1000 {
		t.Errorf("a burst of 1,000 genuine signed alerts: %d accepted (%v)", signedBurst.accepted, signedBurst.codes)
	}
	t.Logf("signed burst: 1,000 in %v", signedBurst.took.Round(time.Millisecond))

	maxFiles, maxRSS := use.stop()
	t.Logf("during the attacks: at most %d open files (%d before), %.1f MiB resident (%.1f before)", maxFiles, files0, maxRSS, rss0)
	if maxFiles > files0+perClient+60 {
		t.Errorf("%d open files during the attacks, %d before: more than the per-client share", maxFiles, files0)
	}
	if maxRSS > rss0+25 {
		t.Errorf("%.1f MiB resident during the attacks, %.1f before", maxRSS, rss0)
	}
	sent, accepted := g.stop()
	t.Logf("genuine alerts: %d sent, %d accepted; trickling bodies: %v", sent, accepted, answers)
	if sent < 50 || float64(accepted) < 0.99*float64(sent) {
		t.Errorf("%d of %d genuine alerts accepted during the attacks, want at least 99%%", accepted, sent)
	}
	waitObservations(t, "listener", "falcolh", accepted+1+1000) // the replayed alert once, and the burst
	waitObservations(t, "listener", "falcolb", 3)
	waitObservations(t, "listener", "falcol", 0)
	if files := openFiles(t, pid); files > files0+50 {
		t.Errorf("%d open files after the attacks, %d before", files, files0)
	}
}

// floodFrom posts a body with the header auth to url from the loopback address from, from 16
// senders, until n requests were sent or d passed, and counts the answers by status code.
func floodFrom(t *testing.T, from, url, auth string, n int, d time.Duration) map[string]int {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16,
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext}}
	defer client.CloseIdleConnections()
	var mu sync.Mutex
	codes := map[string]int{}
	var next atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for next.Add(1) <= int64(n) && time.Now().Before(deadline) {
				req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"output":"flood","priority":"Warning","rule":"Flood"}`))
				req.Header.Set("Authorization", auth)
				req.Header.Set("Content-Type", "application/json")
				code := "error"
				if resp, err := client.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = strconv.Itoa(resp.StatusCode)
				}
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return codes
}

// use samples a process's open files and resident memory every 100 ms and keeps the highest.
type use struct {
	stopped  chan struct{}
	done     chan struct{}
	maxFiles int
	maxRSS   float64
}

func watchUse(pid int) *use {
	u := &use{stopped: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(u.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			// Errors are left to the test's own reads; a sample missed is not a bound broken.
			if n, err := procFiles(pid); err == nil {
				u.maxFiles = max(u.maxFiles, n)
			}
			if v, err := procRSS(pid); err == nil {
				u.maxRSS = max(u.maxRSS, v)
			}
			select {
			case <-u.stopped:
				return
			case <-tick.C:
			}
		}
	}()
	return u
}

// stop ends the sampling and returns the highest open files and resident MiB seen.
func (u *use) stop() (int, float64) {
	close(u.stopped)
	<-u.done
	return u.maxFiles, u.maxRSS
}

// burst is what burstSigned measured.
type burst struct {
	accepted int
	codes    map[int]int
	took     time.Duration
}

// burstSigned posts n distinct genuine signed alerts to url from senders concurrent senders, as fast
// as they are answered.
func burstSigned(t *testing.T, url string, n, senders int) burst {
	t.Helper()
	var mu sync.Mutex
	b := burst{codes: map[int]int{}}
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for i := int(next.Add(1)); i <= n; i = int(next.Add(1)) {
				body := signedAlert(100_000 + i)
				code := postWith(t, url, body, signedHeader([]byte(listenerKey), time.Now(), body))
				mu.Lock()
				b.codes[code]++
				if code == http.StatusAccepted {
					b.accepted++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	b.took = time.Since(start)
	return b
}

// openFiles is the number of files process pid has open.
func openFiles(t *testing.T, pid int) int {
	t.Helper()
	n, err := procFiles(pid)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// rssMiB is process pid's resident memory.
func rssMiB(t *testing.T, pid int) float64 {
	t.Helper()
	v, err := procRSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func procFiles(pid int) (int, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(fds), err
}

func procRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kib / 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// dialFrom opens n TCP connections from the loopback address from; those the server closes at
// once stay in the list, closed.
func dialFrom(t *testing.T, from, addr string, n int) []net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d from %s: %v", len(conns), from, err)
		}
		conns = append(conns, c)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	return conns
}

// trickle opens n connections from the address from, each sending a request's headers and then
// a byte of its body every 250 ms for up to d, and counts how each ended: its status code, or
// "closed" when the server closed it without an answer.
func trickle(t *testing.T, from, addr string, n int, d time.Duration) map[string]int {
	t.Helper()
	conns := dialFrom(t, from, addr, n)
	var mu sync.Mutex
	ends := map[string]int{}
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			end := trickleOne(c, d)
			mu.Lock()
			ends[end]++
			mu.Unlock()
		})
	}
	wg.Wait()
	return ends
}

func trickleOne(c net.Conn, d time.Duration) string {
	answer := make(chan string, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			answer <- "closed"
			return
		}
		resp.Body.Close()
		answer <- strconv.Itoa(resp.StatusCode)
	}()
	if _, err := fmt.Fprintf(c, "POST /falcol HTTP/1.1\r\nHost: zen\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n"); err != nil {
		return "closed"
	}
	stop := time.After(d)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case a := <-answer:
			return a
		case <-stop:
			return "unanswered"
		case <-tick.C:
			_, _ = c.Write([]byte(" "))
		}
	}
}

// The credentials of the test's signed and bearer webhooks.
const listenerKey, listenerToken = "listener-hmac-key-2c9d", "listener-token-8b1f"

// signedAlert is genuine alert i (0 is kept for the one the test replays).
func signedAlert(i int) []byte {
	return fmt.Appendf(nil, `{"output":"listener test %d","priority":"Warning","rule":"Listener test","time":"2026-12-01T10:00:00Z",`+
		`"hostname":"node-1","output_fields":{"k8s.ns.name":"listener","k8s.pod.name":"cart-%d"}}`, i, i)
}

// upperFirstLetter upper-cases the first of hex's letters.
func upperFirstLetter(hex string) string {
	for i, c := range hex {
		if c >= 'a' && c <= 'f' {
			return hex[:i] + strings.ToUpper(string(c)) + hex[i+1:]
		}
	}
	return hex
}

// postWith posts body with header to url and returns the status code, or 0 when no answer came
// (reported as an error: it may run on any goroutine).
func postWith(t *testing.T, url string, body []byte, header http.Header) int {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Error(err)
		return 0
	}
	req.Header = header.Clone()
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("posting to %s: %v", url, err)
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// genuine posts a genuine signed alert every 50 ms from 127.0.0.1 until stopped.
type genuine struct {
	cancel   context.CancelFunc
	done     chan struct{}
	sent     atomic.Int64
	accepted atomic.Int64
}

func startGenuine(t *testing.T, r *replica) *genuine {
	ctx, cancel := context.WithCancel(context.Background())
	g := &genuine{cancel: cancel, done: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second}
	go func() {
		defer close(g.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 1; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			body := signedAlert(i)
			req, _ := http.NewRequest(http.MethodPost, "http://"+r.WebhookAddr+"/falcolh", bytes.NewReader(body))
			req.Header = signedHeader([]byte(listenerKey), time.Now(), body)
			req.Header.Set("Content-Type", "application/json")
			g.sent.Add(1)
			resp, err := client.Do(req)
			if err != nil {
				t.Logf("genuine alert %d: %v", i, err)
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusAccepted {
				g.accepted.Add(1)
			} else {
				t.Logf("genuine alert %d: HTTP %d", i, resp.StatusCode)
			}
		}
	}()
	t.Cleanup(func() { g.cancel(); <-g.done })
	return g
}

// stop ends the stream and returns how many alerts were sent and accepted.
func (g *genuine) stop() (sent, accepted int) {
	g.cancel()
	<-g.done
	return int(g.sent.Load()), int(g.accepted.Load())
}
