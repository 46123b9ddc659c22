package pipeline

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

// Bounds of a finding that a sender is told about before it is acknowledged. The title, the
// description and detail values are shortened to fit the CRD on the way; these are what shortening
// cannot mend.
const (
	// MaxDetailKeyLength bounds a detail's key: a key is a name, and a shortened one could collide.
	MaxDetailKeyLength = 253
	// MaxObservationBytes bounds an Observation as JSON. etcd takes 1.5 MiB, but every list of
	// Observations carries each one whole: one of a megabyte made `kubectl get obs -o yaml` fail for
	// everyone while it existed.
	MaxObservationBytes = 64 << 10
)

// Writable returns why the API server would refuse, or the bounds above forbid, the Observation of
// ev — nil when it can be written. The reason names the field and quotes at most 64 bytes of it.
func Writable(ev *Event) error {
	r := ev.Resource
	if r.Namespace != "" {
		if msgs := validation.IsDNS1123Label(r.Namespace); len(msgs) > 0 {
			return fmt.Errorf("resource.namespace %s: %s", quote(r.Namespace), msgs[0])
		}
	}
	for _, f := range []struct {
		name, value string
		max         int
	}{
		{"resource.name", r.Name, 253}, {"resource.kind", r.Kind, 63}, {"resource.apiVersion", r.APIVersion, 253},
	} {
		if len(f.value) > f.max {
			return fmt.Errorf("%s %s is %d bytes, at most %d", f.name, quote(f.value), len(f.value), f.max)
		}
	}
	for k := range ev.Details {
		if len(k) > MaxDetailKeyLength {
			return fmt.Errorf("detail key %s is %d bytes, at most %d", quote(k), len(k), MaxDetailKeyLength)
		}
	}
	if !validSource(ev.Source) {
		return fmt.Errorf("source %s: lower-case letters, digits and '-', at most 63", quote(ev.Source))
	}
	// Encoding every finding only to measure it cost a quarter of the webhook's throughput; the
	// bound decides almost all of them, and only a finding near the limit is encoded.
	if sizeBound(ev) <= MaxObservationBytes {
		return nil
	}
	b, err := json.Marshal(BuildObservation(ev, "default"))
	if err != nil {
		return fmt.Errorf("encoding the Observation: %w", err)
	}
	if len(b) > MaxObservationBytes {
		return fmt.Errorf("the Observation would be %d bytes, at most %d", len(b), MaxObservationBytes)
	}
	return nil
}

// observationFrame bounds the bytes of an Observation's JSON that are not the event's strings:
// field names, the fingerprint, the time, the expiry label, the truncation mark. They come to
// about 400; TestSizeBound keeps that below half of this.
const observationFrame = 1024

// sizeBound is at least the size of ev's Observation as JSON, without building or encoding it:
// each string counted as encoded, those the Observation shortens as shortened.
func sizeBound(ev *Event) int {
	r := ev.Resource
	n := 4*encodedLen(ev.Source) + 2*encodedLen(string(ev.Severity)) + 2*encodedLen(string(ev.Category)) +
		encodedLen(ev.EventType) + encodedLen(r.APIVersion) + encodedLen(r.Kind) + encodedLen(r.Name) +
		2*encodedLen(r.Namespace) + len("default") +
		shortenedLen(ev.Title, v1alpha1.MaxTitleLength) + shortenedLen(ev.Description, v1alpha1.MaxDescriptionLength)
	for k, v := range ev.Details {
		n += encodedLen(k) + shortenedLen(v, v1alpha1.MaxDetailValueLength) + len(`"":"",`)
	}
	return observationFrame + n
}

// shortenedLen is the encoded size of s as the Observation keeps it. Shortening a valid string
// is a slice, so this allocates only for the rare invalid one.
func shortenedLen(s string, max int) int {
	t, _ := truncate(s, max)
	return encodedLen(t)
}

// encodedLen is how many bytes encoding/json writes for s between its quotes, or more.
func encodedLen(s string) int {
	n := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				n += 6 // \u00XX
			case c == '"' || c == '\\':
				n += 2
			default:
				n++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || r == '\u2028' || r == '\u2029' {
			n += 6 // \ufffd for an invalid byte, or the escaped separator
		} else {
			n += size
		}
		i += size
	}
	return n
}

// quote is s in quotes, cut to 64 bytes with an ellipsis, for messages and logs.
func quote(s string) string {
	const max = 64
	if len(s) <= max {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q…", s[:max])
}
