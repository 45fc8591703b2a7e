package metrics

import (
	"runtime"
	"testing"

	"github.com/orderstream/orderstream/internal/buildinfo"
)

// TestNew_buildInfo: every process's registry has orderstream_build_info,
// 1, labelled with the binary's version, revision and Go version.
func TestNew_buildInfo(t *testing.T) {
	families, err := New().Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	build := buildinfo.Read()
	for _, f := range families {
		if f.GetName() != "orderstream_build_info" {
			continue
		}
		if len(f.GetMetric()) != 1 {
			t.Fatalf("orderstream_build_info has %d samples, want 1", len(f.GetMetric()))
		}
		m := f.GetMetric()[0]
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		want := map[string]string{"version": build.Version, "revision": "unknown", "goversion": runtime.Version()}
		if build.Revision != "" {
			want["revision"] = build.Revision
		}
		if m.GetGauge().GetValue() != 1 || len(labels) != 3 || labels["version"] != want["version"] ||
			labels["revision"] != want["revision"] || labels["goversion"] != want["goversion"] {
			t.Errorf("orderstream_build_info = %v %v, want 1 %v", labels, m.GetGauge().GetValue(), want)
		}
		return
	}
	t.Error("no orderstream_build_info")
}
