package sources

import (
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// handedOn is what an informer handed on, per object: the sorted fingerprints of its findings,
// with the object's namespace, so that an informer restarted on a new share keeps what it handed
// on for the namespaces it still owns instead of handing all of it on again.
type handedOn struct {
	mu      sync.Mutex
	objects map[types.UID]handed
}

type handed struct {
	namespace string
	fps       []uint64
}

func newHandedOn() *handedOn { return &handedOn{objects: map[types.UID]handed{}} }

// swap records fps as what was handed on for an object and returns what was before.
func (h *handedOn) swap(uid types.UID, namespace string, fps []uint64) []uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	prev := h.objects[uid].fps
	h.objects[uid] = handed{namespace: namespace, fps: fps}
	return prev
}

// forgetFinding removes one fingerprint of an object, to be handed on again.
func (h *handedOn) forgetFinding(uid types.UID, fp uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	o := h.objects[uid]
	if k, found := slices.BinarySearch(o.fps, fp); found {
		o.fps = slices.Delete(slices.Clone(o.fps), k, k+1)
		h.objects[uid] = o
	}
}

// forget removes an object.
func (h *handedOn) forget(uid types.UID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.objects, uid)
}

// keep removes every object whose namespace owns rejects.
func (h *handedOn) keep(owns func(namespace string) bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for uid, o := range h.objects {
		if !owns(o.namespace) {
			delete(h.objects, uid)
		}
	}
}

// uids is the objects remembered now.
func (h *handedOn) uids() map[types.UID]bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[types.UID]bool, len(h.objects))
	for uid := range h.objects {
		out[uid] = true
	}
	return out
}

// drop removes the objects in gone: deleted while no informer watched them.
func (h *handedOn) drop(gone map[types.UID]bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for uid := range gone {
		delete(h.objects, uid)
	}
}

// len is the number of objects remembered.
func (h *handedOn) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.objects)
}
