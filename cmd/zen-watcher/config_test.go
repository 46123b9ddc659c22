package main

import (
	"flag"
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(*config) bool
		wantErr string
	}{
		{name: "defaults", check: func(c *config) bool {
			return c.kubeQPS == -1 && c.writerWorkers == 64 && c.metricsAddr == ":9090" && c.connectTimeout == 10*time.Second
		}},
		{name: "env sets", env: map[string]string{"WRITER_WORKERS": "4", "KUBE_QPS": "50"},
			check: func(c *config) bool { return c.writerWorkers == 4 && c.kubeQPS == 50 }},
		{name: "flag wins over env", args: []string{"-writer-workers", "8"}, env: map[string]string{"WRITER_WORKERS": "4"},
			check: func(c *config) bool { return c.writerWorkers == 8 }},
		{name: "malformed env", env: map[string]string{"CONNECT_TIMEOUT": "soon"}, wantErr: "CONNECT_TIMEOUT"},
		{name: "malformed flag", args: []string{"-kube-burst", "lots"}, wantErr: "kube-burst"},
		{name: "zero workers", args: []string{"-writer-workers", "0"}, wantErr: "at least 1"},
		{name: "stray argument", args: []string{"extra"}, wantErr: "unexpected arguments"},
		{name: "renew deadline as long as the lease", args: []string{"-leader-lease-duration", "10s", "-leader-renew-deadline", "10s"},
			wantErr: "-leader-renew-deadline (env LEADER_RENEW_DEADLINE) = 10s: must be positive and shorter than -leader-lease-duration (10s)"},
		{name: "retry within the renew deadline's jitter", args: []string{"-leader-renew-deadline", "2s", "-leader-retry-period", "2s"},
			wantErr: "-leader-retry-period"},
		{name: "no election, no election rules", args: []string{"-leader-election=false", "-leader-renew-deadline", "20s"},
			check: func(c *config) bool { return !c.leaderElection }},
		{name: "zero coordination interval", args: []string{"-coordination-interval", "0s"}, wantErr: "-coordination-interval (env "},
		{name: "member renew past its lease", args: []string{"-member-renew-interval", "20s"}, wantErr: "-member-renew-interval"},
		{name: "zero chunks", args: []string{"-shard-chunks", "0"}, wantErr: "-shard-chunks"},
		{name: "re-cut at even", args: []string{"-shard-recut-threshold", "1"}, wantErr: "-shard-recut-threshold"},
		{name: "no load re-cut interval", env: map[string]string{"SHARD_LOAD_RECUT_INTERVAL": "0s"}, wantErr: "-shard-load-recut-interval (env SHARD_LOAD_RECUT_INTERVAL)"},
		{name: "sub-minute TTL", env: map[string]string{"OBSERVATION_TTL_SECONDS": "30"},
			wantErr: "-observation-ttl-seconds (env OBSERVATION_TTL_SECONDS) = 30: must be from 60"},
		{name: "negative TTL", args: []string{"-observation-ttl-seconds", "-5"}, wantErr: "-observation-ttl-seconds"},
		{name: "a minute TTL", args: []string{"-observation-ttl-seconds", "60"}, check: func(c *config) bool { return c.ttlSeconds == 60 }},
		{name: "WAIT on a Redis Cluster", args: []string{"-redis-addr", "a:6379,b:6379,c:6379", "-redis-wait-replicas", "1"},
			wantErr: "-redis-wait-replicas (env REDIS_WAIT_REPLICAS) = 1: must be 0 or more, and 0 with a Redis Cluster"},
		{name: "WAIT with Sentinels", args: []string{"-redis-addr", "a:26379,b:26379", "-redis-master-name", "m"},
			env:   map[string]string{"REDIS_WAIT_REPLICAS": "1"},
			check: func(c *config) bool { return c.redisWait == 1 }},
		{name: "negative WAIT", args: []string{"-redis-wait-replicas", "-1"}, wantErr: "-redis-wait-replicas"},
		{name: "every fault at once", args: []string{"-writer-queue", "0", "-webhook-rate", "0"},
			wantErr: "-writer-queue (env WRITER_QUEUE_SIZE) = 0: must be at least 1\n  -webhook-rate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConfig(tc.args, func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Errorf("unexpected config %+v", c)
			}
		})
	}
}

// TestEveryFlagHasAnEnvVar keeps the flag and environment tables in step.
func TestEveryFlagHasAnEnvVar(t *testing.T) {
	fs := newFlagSet(&config{})
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		if envFlags()[f.Name] == "" {
			t.Errorf("flag -%s has no environment variable", f.Name)
		}
	})
	if n != len(envFlags()) {
		t.Errorf("%d flags, %d environment variables", n, len(envFlags()))
	}
}
