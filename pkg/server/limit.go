package server

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// ConnLimits bounds the connections a listener keeps open. An idle connection costs a file and
// the server's buffers (about 17 KiB); thousands of them, from anyone who can reach the port, would
// take a replica's memory and files. Zero means no limit.
type ConnLimits struct {
	// Max bounds the listener's open connections.
	Max int
	// PerClient bounds those of one client address. Behind a proxy every sender has the proxy's
	// address: raise it or set it to zero there.
	PerClient int
	// Refused is told why each connection over a limit was closed: "listener_full" or
	// "client_full". Opened is told the open count after each change.
	Refused func(reason string)
	Opened  func(open int)
}

// limitListener closes a connection over a limit as soon as it is accepted, before a byte of it
// is read: the sender sees the connection end and retries, and the replica keeps what it has.
type limitListener struct {
	net.Listener
	limits ConnLimits

	mu       sync.Mutex
	open     int
	byClient map[string]int
}

// LimitListener returns ln with limits applied; with neither limit set it returns ln.
func LimitListener(ln net.Listener, limits ConnLimits) net.Listener {
	if limits.Max <= 0 && limits.PerClient <= 0 {
		return ln
	}
	if limits.Refused == nil {
		limits.Refused = func(string) {}
	}
	if limits.Opened == nil {
		limits.Opened = func(int) {}
	}
	return &limitListener{Listener: ln, limits: limits, byClient: map[string]int{}}
}

// Accept returns the next connection within the limits, closing those over them.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host := remoteHost(c.RemoteAddr().String())
		if reason := l.take(host); reason != "" {
			l.limits.Refused(reason)
			_ = c.Close()
			continue
		}
		return &limitedConn{Conn: c, release: func() { l.release(host) }}, nil
	}
}

func (l *limitListener) take(host string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.limits.Max > 0 && l.open >= l.limits.Max:
		return "listener_full"
	case l.limits.PerClient > 0 && l.byClient[host] >= l.limits.PerClient:
		return "client_full"
	}
	l.open++
	l.byClient[host]++
	l.limits.Opened(l.open)
	return ""
}

func (l *limitListener) release(host string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.byClient[host]--; l.byClient[host] <= 0 {
		delete(l.byClient, host)
	}
	l.limits.Opened(l.open)
}

// limitedConn gives its place back once, however often it is closed.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// bodyGrace is how long a body may take before the minimum rate applies: a sender's first bytes
// may wait on its own start, a TLS handshake or a slow first round trip.
const bodyGrace = 2 * time.Second

// minRateReader ends a body that falls behind rate bytes a second once bodyGrace has passed — t
// seconds into it, at least (t - bodyGrace) × rate bytes must have arrived — by moving the
// connection's read deadline with every read: a sender that trickles a few
// bytes a second would otherwise hold its in-flight slot for the whole read timeout. The deadline
// never moves past the read timeout, which bounds the whole request.
type minRateReader struct {
	r     io.Reader
	rc    *http.ResponseController
	start time.Time
	rate  float64
	limit time.Duration
	n     int64
}

func newMinRateReader(rw http.ResponseWriter, r io.Reader, rate float64, limit time.Duration) io.Reader {
	if rate <= 0 {
		return r
	}
	return &minRateReader{r: r, rc: http.NewResponseController(rw), start: time.Now(), rate: rate, limit: limit}
}

func (m *minRateReader) Read(p []byte) (int, error) {
	allowed := bodyGrace + time.Duration(float64(m.n)/m.rate*float64(time.Second))
	if m.limit > 0 {
		allowed = min(allowed, m.limit)
	}
	// A writer that cannot set deadlines (a test's recorder) reads without one.
	_ = m.rc.SetReadDeadline(m.start.Add(allowed))
	n, err := m.r.Read(p)
	m.n += int64(n)
	return n, err
}

// timedOut tells a read that ended on a deadline: the minimum rate's or the server's read timeout.
func timedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
