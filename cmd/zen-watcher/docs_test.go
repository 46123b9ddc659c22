package main

import (
	"flag"
	"os"
	"strings"
	"testing"
)

// TestConfigurationDocumented keeps docs/CONFIGURATION.md in step with the flags: every flag and its
// environment variable must be in the table.
func TestConfigurationDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/CONFIGURATION.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	newFlagSet(&config{}).VisitAll(func(f *flag.Flag) {
		row := "| `-" + f.Name + "` | `" + envFlags()[f.Name] + "` |"
		if !strings.Contains(text, row) {
			t.Errorf("docs/CONFIGURATION.md has no row starting %q", row)
		}
	})
	if !strings.Contains(text, "REDIS_PASSWORD") {
		t.Error("docs/CONFIGURATION.md does not mention REDIS_PASSWORD")
	}
}
