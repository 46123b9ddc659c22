// Command memprobe prints its own resident memory a moment after start: what linking a set of
// client-go packages costs a process before it does any work. Built plainly it links the clients
// zen-watcher cannot do without (rest, dynamic); built with -tags leaderelection it also links
// client-go's leader election, which imports the whole typed Clientset and informer factory:
//
//	go build -ldflags='-s -w' -o /tmp/memprobe ./hack/memprobe && /tmp/memprobe
//	go build -tags leaderelection -ldflags='-s -w' -o /tmp/memprobe-le ./hack/memprobe && /tmp/memprobe-le
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// elect is set by the leaderelection build: it builds a leader elector, so that the linker keeps
// what leader election needs.
var elect func() error

func main() {
	if _, err := dynamic.NewForConfig(&rest.Config{Host: "http://127.0.0.1:1"}); err != nil {
		fmt.Fprintln(os.Stderr, "memprobe:", err)
		os.Exit(1)
	}
	if elect != nil {
		if err := elect(); err != nil {
			fmt.Fprintln(os.Stderr, "memprobe:", err)
			os.Exit(1)
		}
	}
	time.Sleep(1500 * time.Millisecond) // the runtime's start-up work settles
	status, err := os.Open("/proc/self/status")
	if err != nil {
		fmt.Fprintln(os.Stderr, "memprobe:", err)
		os.Exit(1)
	}
	defer status.Close()
	sc := bufio.NewScanner(status)
	for sc.Scan() {
		for _, field := range []string{"VmRSS:", "RssAnon:", "RssFile:"} {
			if strings.HasPrefix(sc.Text(), field) {
				fmt.Println(strings.Join(strings.Fields(sc.Text()), " "))
			}
		}
	}
}
