package buildinfo

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	t.Run("reads_the_vcs_stamp", func(t *testing.T) {
		info := fromBuildInfo(&debug.BuildInfo{
			GoVersion: "go1.26.8",
			Main:      debug.Module{Path: "github.com/orderstream/orderstream", Version: "v0.0.0-20261201232403-5e864c3cd0f4+dirty"},
			Settings: []debug.BuildSetting{
				{Key: "-trimpath", Value: "true"},
				{Key: "vcs", Value: "git"},
				{Key: "vcs.revision", Value: "5e864c3cd0f4222641d28c24505e3f668e33a2e0"},
				{Key: "vcs.time", Value: "2026-12-01T23:24:03Z"},
				{Key: "vcs.modified", Value: "true"},
			},
		})
		if info.Version != "v0.0.0-20261201232403-5e864c3cd0f4+dirty" || info.Revision != "5e864c3cd0f4222641d28c24505e3f668e33a2e0" ||
			info.Time != "2026-12-01T23:24:03Z" || info.Modified == nil || !*info.Modified || info.GoVersion != "go1.26.8" {
			t.Errorf("fromBuildInfo() = %+v", info)
		}
	})
	t.Run("leaves_what_was_not_recorded_empty", func(t *testing.T) {
		info := fromBuildInfo(&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}})
		if info.Version != "(devel)" || info.Revision != "" || info.Time != "" || info.Modified != nil {
			t.Errorf("fromBuildInfo() = %+v, want (devel) and nothing else", info)
		}
		if info := fromBuildInfo(&debug.BuildInfo{}); info.Version != "unknown" {
			t.Errorf("without a main module version: %q, want unknown", info.Version)
		}
	})
	t.Run("reads_this_binary", func(t *testing.T) {
		if info := Read(); info.GoVersion != runtime.Version() || info.Version == "" {
			t.Errorf("Read() = %+v, want go %s and a version", info, runtime.Version())
		}
	})
}
