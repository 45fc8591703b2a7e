package main

import (
	"os"
	"os/exec"
	"testing"
)

// TestAlertRules runs the unit tests of the Prometheus alert rules with
// promtool (Debian's prometheus package has it; .ci/run installs it). A
// laptop without it skips them; CI fails.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is not installed: install Debian's prometheus package")
		}
		t.Skip("promtool is not installed")
	}
	out, err := exec.Command(promtool, "test", "rules", "deploy/prometheus/alerts_test.yml").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}
