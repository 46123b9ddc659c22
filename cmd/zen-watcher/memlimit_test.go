package main

import (
	"errors"
	"io/fs"
	"testing"
)

func TestMemoryLimit(t *testing.T) {
	files := func(m map[string]string) func(string) ([]byte, error) {
		return func(name string) ([]byte, error) {
			if v, ok := m[name]; ok {
				return []byte(v), nil
			}
			return nil, fs.ErrNotExist
		}
	}
	v2, v1 := cgroupMemoryFiles[0], cgroupMemoryFiles[1]
	for _, tc := range []struct {
		name       string
		configured string
		files      map[string]string
		want       int64
		wantErr    bool
	}{
		{name: "the chart's bytes", configured: "268435456", want: 256 << 20},
		{name: "a quantity", configured: "192Mi", want: 192 << 20},
		{name: "configured wins over the cgroup", configured: "1Gi", files: map[string]string{v2: "1048576\n"}, want: 1 << 30},
		{name: "not a quantity", configured: "lots", wantErr: true},
		{name: "cgroup v2", files: map[string]string{v2: "134217728\n"}, want: 128 << 20},
		{name: "cgroup v2 without a limit", files: map[string]string{v2: "max\n"}, want: 0},
		{name: "cgroup v1", files: map[string]string{v1: "100663296\n"}, want: 96 << 20},
		{name: "cgroup v1 without a limit", files: map[string]string{v1: "9223372036854771712\n"}, want: 0},
		{name: "no cgroup at all", want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := memoryLimit(tc.configured, files(tc.files))
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("memoryLimit(%q) = %d, %v; want %d, error %v", tc.configured, got, err, tc.want, tc.wantErr)
			}
		})
	}
	unreadable := func(string) ([]byte, error) { return nil, errors.New("permission denied") }
	if _, err := memoryLimit("", unreadable); err == nil {
		t.Error("an unreadable cgroup file gave no error")
	}
}
