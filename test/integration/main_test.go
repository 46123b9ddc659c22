// Package integration tests the pipeline with its real dependencies: the writer against a real
// kube-apiserver, the dedup store against a real redis-server.
package integration

import (
	"fmt"
	"os"
	"testing"

	"github.com/kube-zen/zen-watcher/internal/testenv"
)

var (
	cluster *testenv.Cluster
	redisS  *testenv.Redis
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	if redisS, err = testenv.StartRedis(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer redisS.Close()
	if cluster, err = testenv.StartCluster(testenv.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cluster.Stop()
	return m.Run()
}
