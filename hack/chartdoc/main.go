// Command chartdoc writes the values table of the chart's README from the `# --` comments of its
// values.yaml: `go run ./hack/chartdoc charts/zen-watcher`. With -check it fails when the README
// is not current instead of writing it.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

const (
	begin = "<!-- values:begin -->"
	end   = "<!-- values:end -->"
)

func main() {
	check := flag.Bool("check", false, "fail if the README is not current; write nothing")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: chartdoc [-check] CHART_DIR")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *check); err != nil {
		fmt.Fprintln(os.Stderr, "chartdoc:", err)
		os.Exit(1)
	}
}

func run(dir string, check bool) error {
	values, err := os.ReadFile(filepath.Join(dir, "values.yaml"))
	if err != nil {
		return err
	}
	table, err := Table(values)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, "README.md")
	readme, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := splice(readme, table)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if check {
		if !bytes.Equal(out, readme) {
			return fmt.Errorf("%s is not current: run `make chart-docs`", path)
		}
		return nil
	}
	return os.WriteFile(path, out, 0o644)
}

func splice(readme, table []byte) ([]byte, error) {
	i, j := bytes.Index(readme, []byte(begin)), bytes.Index(readme, []byte(end))
	if i < 0 || j < i {
		return nil, errors.New("no " + begin + " ... " + end + " markers")
	}
	var b bytes.Buffer
	b.Write(readme[:i+len(begin)])
	b.WriteString("\n")
	b.Write(table)
	b.Write(readme[j:])
	return b.Bytes(), nil
}

// Table renders one row per documented key: its dotted path, its default and its comment.
func Table(values []byte) ([]byte, error) {
	var tree map[string]any
	if err := yaml.Unmarshal(values, &tree); err != nil {
		return nil, fmt.Errorf("parsing values.yaml: %w", err)
	}
	var b bytes.Buffer
	b.WriteString("| value | default | meaning |\n|---|---|---|\n")
	var stack []string // keys of the enclosing maps, by indentation / 2
	var doc []string
	sc := bufio.NewScanner(bytes.NewReader(values))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "# --"):
			doc = []string{strings.TrimSpace(strings.TrimPrefix(trimmed, "# --"))}
			continue
		case strings.HasPrefix(trimmed, "#") && doc != nil:
			doc = append(doc, strings.TrimSpace(strings.TrimPrefix(trimmed, "#")))
			continue
		case trimmed == "" || strings.HasPrefix(trimmed, "#") || strings.HasPrefix(trimmed, "-"):
			continue
		}
		key, _, ok := strings.Cut(trimmed, ":")
		if !ok {
			continue
		}
		depth := (len(line) - len(strings.TrimLeft(line, " "))) / 2
		if depth > len(stack) {
			return nil, fmt.Errorf("values.yaml line %d: indent by two spaces", n)
		}
		stack = append(stack[:depth], key)
		if doc == nil {
			continue
		}
		def, err := lookup(tree, stack)
		if err != nil {
			return nil, fmt.Errorf("values.yaml line %d: %w", n, err)
		}
		fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", strings.Join(stack, "."), def, strings.Join(doc, " "))
		doc = nil
	}
	return b.Bytes(), sc.Err()
}

func lookup(tree map[string]any, path []string) (string, error) {
	var v any = tree
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return "", fmt.Errorf("%s is not under a map", strings.Join(path, "."))
		}
		v = m[k]
	}
	out, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return strings.ReplaceAll(string(out), "|", `\|`), nil
}
