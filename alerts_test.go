package main

import (
	"os/exec"
	"testing"
)

// TestAlertRules runs the unit tests of the Prometheus alert rules where
// promtool is installed (Debian's prometheus package has it).
func TestAlertRules(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed")
	}
	out, err := exec.Command(promtool, "test", "rules", "deploy/prometheus/alerts_test.yml").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}
