package main

import (
	"flag"
	"os"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
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

// TestIngesterFieldsDocumented keeps the Ingester field table of docs/CONFIGURATION.md in step with
// the CRD: every leaf field of spec must have a row.
func TestIngesterFieldsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/CONFIGURATION.md")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("../../charts/zen-watcher/crds/zen.kube-zen.io_ingesters.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.Unmarshal(raw, &crd); err != nil {
		t.Fatal(err)
	}
	spec := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"]
	var paths []string
	var walk func(s apiextensionsv1.JSONSchemaProps, path string)
	walk = func(s apiextensionsv1.JSONSchemaProps, path string) {
		props := s.Properties
		if s.Items != nil && s.Items.Schema != nil {
			props = s.Items.Schema.Properties
		}
		if len(props) == 0 {
			paths = append(paths, path)
			return
		}
		for name, p := range props {
			walk(p, path+"."+name)
		}
	}
	walk(spec, "spec")
	if len(paths) < 30 {
		t.Fatalf("only %d fields found in the CRD", len(paths))
	}
	for _, p := range paths {
		if !strings.Contains(string(doc), "| `"+p+"` |") {
			t.Errorf("docs/CONFIGURATION.md has no row for %s", p)
		}
	}
}
