// Command pause is the pod sandbox's process on the test node: it holds the pod's namespaces by
// doing nothing until it is told to stop. It is built static and packed by hack/ociimage as the
// image containerd's CRI plugin starts for every pod (its sandbox_image).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
