package pipeline

import (
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

// The bounds of an Observation's TTL, as the CRD enforces them.
const (
	minTTLSeconds = 60
	maxTTLSeconds = 365 * 24 * 3600
)

// DetailTruncated is the detail key set when any part of a finding was shortened to fit.
const DetailTruncated = "truncated"

// BuildObservation makes the Observation for ev in namespace ns (the affected resource's namespace,
// or fallbackNS for cluster-scoped findings). Everything is bounded to what the CRD accepts.
func BuildObservation(ev *Event, fallbackNS string) *v1alpha1.Observation {
	ns := ev.Resource.Namespace
	if ns == "" {
		ns = fallbackNS
	}
	obs := &v1alpha1.Observation{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns,
			Labels: map[string]string{
				v1alpha1.LabelSource:   ev.Source,
				v1alpha1.LabelSeverity: string(ev.Severity),
				v1alpha1.LabelCategory: string(ev.Category),
			},
		},
		Spec: v1alpha1.ObservationSpec{
			Source:      ev.Source,
			Category:    ev.Category,
			Severity:    ev.Severity,
			EventType:   ev.EventType,
			Resource:    ev.Resource,
			DetectedAt:  metav1.NewTime(ev.DetectedAt),
			Fingerprint: ev.FingerprintHex(),
		},
	}
	switch {
	case ev.Instance != "":
		obs.Name = ObservationName(ev.Source, instanceHash(ev))
	case ev.Stateful:
		obs.Name = ObservationName(ev.Source, obs.Spec.Fingerprint)
	default:
		obs.GenerateName = ev.Source + "-"
	}
	var cut, c bool
	obs.Spec.Title, c = truncate(ev.Title, v1alpha1.MaxTitleLength)
	cut = cut || c
	obs.Spec.Description, c = truncate(ev.Description, v1alpha1.MaxDescriptionLength)
	cut = cut || c
	obs.Spec.Details, c = boundDetails(ev.Details)
	cut = cut || c
	if cut {
		if obs.Spec.Details == nil {
			obs.Spec.Details = map[string]v1alpha1.DetailValue{}
		}
		obs.Spec.Details[DetailTruncated] = "true"
	}
	if ev.TTLSeconds > 0 {
		ttl := min(max(ev.TTLSeconds, minTTLSeconds), maxTTLSeconds)
		obs.Spec.TTLSecondsAfterCreation = &ttl
		obs.Labels[v1alpha1.LabelExpiresAt] = strconv.FormatInt(time.Now().Unix()+ttl, 10)
	}
	return obs
}

// instanceHash names one occurrence: the fingerprint and the instance, hashed together.
func instanceHash(ev *Event) string {
	var buf [8]byte
	for i := range buf {
		buf[i] = byte(ev.FP >> (56 - 8*i))
	}
	h := xxhash.New()
	_, _ = h.Write(buf[:])
	_, _ = h.WriteString(ev.Instance)
	sum := h.Sum64()
	for i := range buf {
		buf[i] = byte(sum >> (56 - 8*i))
	}
	return hex.EncodeToString(buf[:])
}

// ObservationName is the deterministic name of a stateful finding's Observation.
func ObservationName(source, fingerprint string) string {
	name := source + "-" + fingerprint
	if len(name) > 253 {
		name = name[:253]
	}
	return strings.TrimRight(name, "-")
}

// boundDetails copies d into the CRD's bounds: at most MaxDetails-1 keys (one is kept for the
// truncation mark), each value at most MaxDetailValueLength bytes of valid UTF-8.
func boundDetails(d map[string]string) (map[string]v1alpha1.DetailValue, bool) {
	if len(d) == 0 {
		return nil, false
	}
	out := make(map[string]v1alpha1.DetailValue, min(len(d), v1alpha1.MaxDetails))
	cut := false
	for k, v := range d {
		if v == "" {
			continue
		}
		if len(out) == v1alpha1.MaxDetails-1 {
			cut = true
			break
		}
		v, c := truncate(v, v1alpha1.MaxDetailValueLength)
		cut = cut || c
		out[k] = v1alpha1.DetailValue(v)
	}
	if len(out) == 0 {
		return nil, cut
	}
	return out, cut
}
