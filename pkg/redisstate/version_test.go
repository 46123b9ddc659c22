package redisstate

import (
	"context"
	"errors"
	"testing"
)

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		info    string
		want    [3]int
		tooOld  bool
		invalid bool
	}{
		{info: "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n", want: [3]int{7, 0, 15}},
		{info: "redis_version:6.2.0\r\n", want: [3]int{6, 2, 0}},
		{info: "redis_version:6.0.16\r\n", want: [3]int{6, 0, 16}, tooOld: true},
		{info: "redis_version:5.0\r\n", want: [3]int{5, 0, 0}, tooOld: true},
		{info: "redis_version:8.2.1\n", want: [3]int{8, 2, 1}},
		{info: "redis_version:seven\r\n", invalid: true},
		{info: "# Server\r\nredis_mode:standalone\r\n", invalid: true},
	} {
		got, err := parseVersion(tc.info)
		if (err != nil) != tc.invalid {
			t.Errorf("%q: error %v, want invalid=%v", tc.info, err, tc.invalid)
			continue
		}
		if tc.invalid {
			continue
		}
		if got != tc.want {
			t.Errorf("%q: %v, want %v", tc.info, got, tc.want)
		}
		min, _ := parseVersion("redis_version:" + MinVersion)
		if older(got, min) != tc.tooOld {
			t.Errorf("%q: older than %s = %v, want %v", tc.info, MinVersion, older(got, min), tc.tooOld)
		}
	}
}

// TestCheckVersionAgainstRedis: the redis-server the tests run is new enough, and its version is
// the one it reports.
func TestCheckVersionAgainstRedis(t *testing.T) {
	_, c := newStore(t, "version")
	v, err := CheckVersion(context.Background(), c)
	if err != nil {
		t.Fatalf("CheckVersion: %v", err)
	}
	want, _ := c.Info(context.Background(), "server").Result()
	if got, _ := parseVersion(want); versionString(got) != v {
		t.Errorf("reported %s, server says %v", v, got)
	}
	_ = c.Close()
	if _, err := CheckVersion(context.Background(), c); err == nil || errors.Is(err, ErrTooOld) {
		t.Errorf("a closed client: %v, want an error that is not ErrTooOld", err)
	}
}
