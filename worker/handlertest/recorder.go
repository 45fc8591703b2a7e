package handlertest

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// Recorder is a testing.TB that records the kit's failures instead of
// failing the test: for a test that shows the kit fails a handler, such as
// one whose inbox is broken on purpose. Its Fatalf still stops the test.
type Recorder struct {
	testing.TB
	mu     sync.Mutex
	failed []string
}

// Errorf records a failure.
func (r *Recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = append(r.failed, fmt.Sprintf(format, args...))
}

// Fatalf records a failure and stops the test.
func (r *Recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	r.TB.Fatalf("stopped: "+format, args...)
}

// Failures are the failures recorded, a line each.
func (r *Recorder) Failures() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.failed, "\n")
}
