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
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kube-zen/zen-watcher/internal/testenv"
)

// TestRefusalsExplained: a Redis that refuses a replica's connections as it accepts them is named
// in the errors the replica logs and reports, with the server's reason, where go-redis alone says
// only "EOF" or "broken pipe". Real servers refuse in each case.
func TestRefusalsExplained(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) *testenv.Redis
		want  string
	}{
		{
			name: "protected mode",
			start: func(t *testing.T) *testenv.Redis {
				// Protected mode serves loopback alone: the server listens on an address of this
				// machine that is not loopback, and connections from it come from that address.
				host := testenv.NonLoopbackIPv4(t)
				return startRedis(t, host, "--protected-mode", "yes")
			},
			want: "DENIED Redis is running in protected mode",
		},
		{
			name: "client table full",
			start: func(t *testing.T) *testenv.Redis {
				r := startRedis(t, "127.0.0.1", "--maxclients", "1")
				holdConnection(t, r.Addr)
				return r
			},
			want: "ERR max number of clients reached",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.start(t)
			c := redis.NewClient(&redis.Options{Addr: r.Addr, DialTimeout: 200 * time.Millisecond,
				ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond, MaxRetries: -1})
			t.Cleanup(func() { _ = c.Close() })
			s := NewDedupStore(c, Options{Release: "refusal"})
			t.Cleanup(s.Close)
			ctx := context.Background()

			_, verr := CheckVersion(ctx, c)
			perr := s.Ping(ctx)
			for what, err := range map[string]error{"CheckVersion": verr, "Ping": perr} {
				if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s: %v, want ErrRefused with %q", what, err, tc.want)
				}
				if errors.Is(err, ErrTooOld) {
					t.Errorf("%s: %v is not a Redis too old", what, err)
				}
			}
		})
	}
}

// TestExplainLeavesOtherErrors: an error that is not a dropped connection, or a server that says
// nothing on a new connection, is returned as it is.
func TestExplainLeavesOtherErrors(t *testing.T) {
	stopped := startRedis(t, "127.0.0.1")
	stoppedAddr := stopped.Addr
	if err := stopped.Stop(); err != nil {
		t.Fatal(err)
	}
	single := func(addr string) redis.UniversalClient { return redis.NewClient(&redis.Options{Addr: addr}) }
	for _, tc := range []struct {
		name   string
		client redis.UniversalClient
		err    error
	}{
		{"a server that accepts, after a drop", single(srv.Addr), fmt.Errorf("ping: %w", io.EOF)},
		{"a server that accepts, after a reset", single(srv.Addr), syscall.ECONNRESET},
		{"not a dropped connection", single(srv.Addr), redis.Nil},
		{"a deadline", single(srv.Addr), context.DeadlineExceeded},
		{"no server, after a drop", single(stoppedAddr), syscall.EPIPE},
		{"no error", single(srv.Addr), nil},
		{"a cluster's client", redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{srv.Addr}}), io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer tc.client.Close()
			if got := Explain(context.Background(), tc.client, tc.err); got != tc.err {
				t.Errorf("Explain(%v) = %v, want it unchanged", tc.err, got)
			}
		})
	}
}

func startRedis(t *testing.T, host string, args ...string) *testenv.Redis {
	t.Helper()
	r, err := testenv.StartRedisOn(host, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// holdConnection takes a slot of addr's client table until the test ends: it is held once the
// server has answered on it.
func holdConnection(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(time.Second))
		_, _ = conn.Write([]byte("PING\r\n"))
		line, _ := bufio.NewReader(conn).ReadString('\n')
		if strings.TrimSpace(line) == "+PONG" {
			_ = conn.SetDeadline(time.Time{})
			t.Cleanup(func() { _ = conn.Close() })
			return
		}
		// The server's readiness check may still hold the one slot.
		_ = conn.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s: no slot of its client table came free in 5s (last answer %q)", addr, line)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
