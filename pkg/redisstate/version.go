package redisstate

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// MinVersion is the oldest Redis zen-watcher works with: the webhook queue reclaims a dead
// replica's entries with XAUTOCLAIM, which Redis 6.2 introduced.
const MinVersion = "6.2.0"

// CheckVersion asks the server for its version and refuses one older than MinVersion, with a
// message that names both. Errors reaching the server are returned wrapped as they are, so that
// the caller can tell "too old" (ErrTooOld) from "not answering", with the server's reason when
// it refuses the connection (ErrRefused).
func CheckVersion(ctx context.Context, client redis.UniversalClient) (string, error) {
	info, err := client.Info(ctx, "server").Result()
	if err != nil {
		return "", fmt.Errorf("asking Redis for its version: %w", Explain(ctx, client, err))
	}
	v, err := parseVersion(info)
	if err != nil {
		return "", err
	}
	if min, _ := parseVersion("redis_version:" + MinVersion); older(v, min) {
		return versionString(v), fmt.Errorf("%w: the server is Redis %s; zen-watcher needs Redis %s or newer",
			ErrTooOld, versionString(v), MinVersion)
	}
	return versionString(v), nil
}

// ErrTooOld marks a Redis server older than MinVersion.
var ErrTooOld = errors.New("redis too old")

// parseVersion reads redis_version from the text of INFO server ("7.0.15", or "6.2" alone).
func parseVersion(info string) ([3]int, error) {
	var v [3]int
	for line := range strings.SplitSeq(info, "\n") {
		s, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:")
		if !ok {
			continue
		}
		parts := strings.SplitN(s, ".", 3)
		for i, p := range parts {
			n, err := strconv.Atoi(p)
			if err != nil {
				return v, fmt.Errorf("redis_version %q: not a version", s)
			}
			v[i] = n
		}
		return v, nil
	}
	return v, fmt.Errorf("INFO server has no redis_version line")
}

func older(a, b [3]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

func versionString(v [3]int) string { return fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2]) }
