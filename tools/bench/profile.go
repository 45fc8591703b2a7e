package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// profileWindow is how long the profiles of a load cover: most of it, and
// less than the profile server's write timeout (the application's
// HTTP_REQUEST_TIMEOUT + 5 s, 15 s by default).
func profileWindow(load time.Duration) time.Duration {
	return max(min(load-time.Second, 10*time.Second), time.Second)
}

// captureProfiles fetches, from the operations listener at addr, a CPU
// profile and the allocations of the next window, into dir as
// cpu-<name>.pprof and allocs-<name>.pprof. It returns at once; wait
// returns once both are written.
func captureProfiles(ctx context.Context, addr, dir, name string, window time.Duration) (wait func() error) {
	secs := int(window / time.Second)
	kinds := map[string]string{
		"cpu":    fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs),
		"allocs": fmt.Sprintf("http://%s/debug/pprof/allocs?seconds=%d", addr, secs),
	}
	errs := make(chan error, len(kinds))
	for kind, url := range kinds {
		go func() { errs <- fetchProfile(ctx, url, filepath.Join(dir, kind+"-"+name+".pprof")) }()
	}
	return func() error {
		var first error
		for range kinds {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
		return first
	}
}

func fetchProfile(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetch profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("fetch profile %s: status %d: %s", url, resp.StatusCode, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write profile: %w", err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("write profile: %w", err)
	}
	return f.Close()
}
