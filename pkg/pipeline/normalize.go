package pipeline

import (
	"strings"
	"unicode/utf8"

	"github.com/kube-zen/zen-watcher/pkg/api/v1alpha1"
)

// NormalizeSeverity maps a tool's severity word to zen-watcher's scale. Case and surrounding space
// are ignored. ok is false for a word no tool we know uses; the caller counts it and gets info.
func NormalizeSeverity(word string) (sev v1alpha1.Severity, ok bool) {
	switch strings.ToUpper(strings.TrimSpace(word)) {
	case "CRITICAL", "FATAL", "EMERGENCY", "EMERG", "CRIT":
		return v1alpha1.SeverityCritical, true
	case "HIGH", "ERROR", "ERR", "ALERT":
		return v1alpha1.SeverityHigh, true
	case "MEDIUM", "WARNING", "WARN", "MODERATE":
		return v1alpha1.SeverityMedium, true
	case "LOW":
		return v1alpha1.SeverityLow, true
	case "INFO", "INFORMATIONAL", "NOTICE", "DEBUG", "NONE":
		return v1alpha1.SeverityInfo, true
	}
	return v1alpha1.SeverityInfo, false
}

// NormalizeEventType turns a tool's word for what happened into lower snake case made of
// [a-z0-9_]: "FailedScheduling" becomes "failed_scheduling", "policy-violation" "policy_violation".
// Anything that leaves nothing becomes "unknown".
func NormalizeEventType(s string) string {
	if isNormalEventType(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 4)
	prevLower := false
	pendingSep := false
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			if pendingSep && b.Len() > 0 {
				b.WriteByte('_')
			}
			pendingSep = false
			b.WriteRune(r)
			prevLower = true
		case r >= 'A' && r <= 'Z':
			if (pendingSep || prevLower) && b.Len() > 0 {
				b.WriteByte('_')
			}
			pendingSep = false
			b.WriteRune(r + ('a' - 'A'))
			prevLower = false
		default:
			pendingSep = true
			prevLower = false
		}
		if b.Len() >= 128 {
			break
		}
	}
	if b.Len() == 0 {
		return "unknown"
	}
	out := b.String()
	if len(out) > 128 {
		out = out[:128]
	}
	return out
}

func isNormalEventType(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// truncate shortens s to at most max bytes without splitting a UTF-8 sequence, replacing invalid
// UTF-8 so the API server accepts it. truncated reports whether anything was cut.
func truncate(s string, max int) (out string, truncated bool) {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= max {
		return s, false
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut], true
}
