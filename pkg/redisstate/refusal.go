package redisstate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrRefused marks a connection the Redis server refused as it accepted it, with its reason.
var ErrRefused = errors.New("the Redis server refuses connections")

// greetingWait bounds how long Explain listens: a server that accepts a connection says nothing
// first, so a healthy one costs the whole wait.
const greetingWait = 500 * time.Millisecond

// maxGreeting bounds what Explain reads; protected mode's explanation is about 1 KiB.
const maxGreeting = 4096

// Explain adds the server's own reason to err when err is a connection the server dropped.
//
// Redis refuses some connections as soon as it accepts them — protected mode, in which a server
// without a password serves loopback clients alone, and a full client table — by writing one
// error line and closing. A client that has sent its first command by then sees only the drop (an
// EOF, a broken pipe, a reset): the reset discards the line the server wrote. Explain dials once
// more and listens without sending anything, so the line arrives. Any other error, or a server
// that says nothing, leaves err as it is, as does a Redis Cluster client's.
func Explain(ctx context.Context, client redis.UniversalClient, err error) error {
	if !dropped(err) {
		return err
	}
	dial, addr, ok := dialer(client)
	if !ok {
		return err
	}
	from, reason, ok := greeting(ctx, dial, addr)
	if !ok {
		return err
	}
	return fmt.Errorf("%w: %s says %q: %w", ErrRefused, from, reason, err)
}

// dropped reports whether err is a connection that ended under the client.
func dropped(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}

type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// dialer returns how client reaches its server. A Sentinel-backed client's dialer asks the
// Sentinels for the master, whatever address it is given. A cluster's errors are left as they are:
// which of its nodes refused is not known here.
func dialer(client redis.UniversalClient) (dialFunc, string, bool) {
	c, ok := client.(*redis.Client)
	if !ok {
		return nil, "", false
	}
	o := c.Options()
	return o.Dialer, o.Addr, o.Dialer != nil
}

// greeting dials addr and reads what the server writes before it is asked anything. It returns
// the server's address and the first sentence of its error reply, or false when the server wrote
// no error within greetingWait.
func greeting(ctx context.Context, dial dialFunc, addr string) (from, reason string, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, greetingWait)
	defer cancel()
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return "", "", false
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()
	line, _ := bufio.NewReader(io.LimitReader(conn, maxGreeting)).ReadString('\n')
	reason, isErr := strings.CutPrefix(strings.TrimSpace(line), "-")
	if !isErr || reason == "" {
		return "", "", false
	}
	if i := strings.Index(reason, ". "); i > 0 {
		reason = reason[:i]
	}
	return conn.RemoteAddr().String(), reason, true
}
