// Package buildinfo reads what the Go toolchain recorded in the binary: the
// main module's version and the revision of the checkout it was built from.
package buildinfo

import "runtime/debug"

// Info is what the binary says about its own build. `go build` inside a git
// checkout records the revision, its time and whether the work tree had
// changes (-trimpath does not drop them; -buildvcs=false does); `go run`,
// `go test` and a build outside a checkout (such as the Dockerfile's, whose
// context leaves .git out) record none, and Version is then "(devel)".
type Info struct {
	Version   string `json:"version"`    // a tag, a pseudo-version, or "(devel)"
	Revision  string `json:"revision"`   // the commit; "" when not recorded
	Time      string `json:"vcs_time"`   // the commit's time, RFC 3339; "" when not recorded
	Modified  *bool  `json:"modified"`   // uncommitted changes; nil when not recorded
	GoVersion string `json:"go_version"` // the toolchain that built it
}

// Read returns the binary's build information. Without any (a binary built
// without module support), Version is "unknown".
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: "unknown"}
	}
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) Info {
	info := Info{Version: bi.Main.Version, GoVersion: bi.GoVersion}
	if info.Version == "" {
		info.Version = "unknown"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			modified := s.Value == "true"
			info.Modified = &modified
		}
	}
	return info
}
