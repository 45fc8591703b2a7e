package httpapi_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/httpapi"
	"github.com/orderstream/orderstream/live"
	"github.com/orderstream/orderstream/metrics"
)

// TestHTTP_inventedMethods: a client sending methods of its own making
// adds one label value to the metrics, "other", however many it invents,
// and a log line holds only the start of each.
func TestHTTP_inventedMethods(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	var logs bytes.Buffer
	h := httpapi.New(httpapi.Config{Metrics: m, Logger: slog.New(slog.NewTextHandler(&logs, nil)), RequestTimeout: 5 * time.Second})
	long := strings.Repeat("X", 100_000)
	for i := range 20 {
		rec := send(t, h, long+string(rune('A'+i)), "/orders", "", "Authorization", "")
		if rec.Code < 400 || rec.Code >= 500 {
			t.Fatalf("an invented method = %d, want a 4xx", rec.Code)
		}
	}
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if !strings.HasSuffix(f.GetName(), "http_requests_total") {
			continue
		}
		var methods []string
		for _, series := range f.GetMetric() {
			for _, l := range series.GetLabel() {
				if l.GetName() == "method" {
					methods = append(methods, l.GetValue())
				}
			}
		}
		if len(methods) != 1 || methods[0] != "other" || f.GetMetric()[0].GetCounter().GetValue() != 20 {
			t.Errorf("%s has methods %v, want the 20 requests under \"other\"", f.GetName(), methods)
		}
	}
	if logs.Len() > 20*1000 {
		t.Errorf("20 requests logged %d bytes: the invented methods are logged whole", logs.Len())
	}
}

// TestHTTP_securityHeaders: every answer of either listener forbids
// content sniffing and sends no Referer elsewhere; the live page's policy
// also pins its base and forms.
func TestHTTP_securityHeaders(t *testing.T) {
	t.Parallel()
	cfg := httpapi.Config{Metrics: metrics.New(), Logger: discardLogger(), RequestTimeout: 5 * time.Second}
	api, ops := httpapi.New(cfg), httpapi.NewOps(cfg, httpapi.Ops{Live: live.New()})
	for name, h := range map[string]http.Handler{"public": api, "operations": ops} {
		for _, path := range []string{"/healthz", "/orders/nope", "/", "/metrics"} {
			rec := send(t, h, http.MethodGet, path, "", "Authorization", "")
			if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("%s GET %s: X-Content-Type-Options = %q, want nosniff", name, path, got)
			}
			if got := rec.Header().Get("Referrer-Policy"); got != "no-referrer" {
				t.Errorf("%s GET %s: Referrer-Policy = %q, want no-referrer", name, path, got)
			}
		}
	}
	csp := send(t, ops, http.MethodGet, "/", "", "Authorization", "").Header().Get("Content-Security-Policy")
	for _, want := range []string{"base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("the page's Content-Security-Policy %q lacks %s", csp, want)
		}
	}
}
