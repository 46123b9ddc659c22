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
			return c.kubeQPS == -1 && c.writerWorkers == 16 && c.metricsAddr == ":9090" && c.connectTimeout == 10*time.Second
		}},
		{name: "env sets", env: map[string]string{"WRITER_WORKERS": "4", "KUBE_QPS": "50"},
			check: func(c *config) bool { return c.writerWorkers == 4 && c.kubeQPS == 50 }},
		{name: "flag wins over env", args: []string{"-writer-workers", "8"}, env: map[string]string{"WRITER_WORKERS": "4"},
			check: func(c *config) bool { return c.writerWorkers == 8 }},
		{name: "malformed env", env: map[string]string{"CONNECT_TIMEOUT": "soon"}, wantErr: "CONNECT_TIMEOUT"},
		{name: "malformed flag", args: []string{"-kube-burst", "lots"}, wantErr: "kube-burst"},
		{name: "zero workers", args: []string{"-writer-workers", "0"}, wantErr: "at least 1"},
		{name: "stray argument", args: []string{"extra"}, wantErr: "unexpected arguments"},
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
