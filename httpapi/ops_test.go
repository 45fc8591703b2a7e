package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/orderstream/orderstream/httpapi"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/live"
)

// opsOnly are requests to the operations listener's own routes, what it
// answers them with the live page, and what a part of the body says.
var opsOnly = []struct {
	call        call
	status      int
	contentType string
	says        string
}{
	{call{method: "GET", path: "/metrics", header: as("")}, 200, "text/plain", "orderstream_orders_placed_total"},
	{call{method: "GET", path: "/debug/pprof/", header: as("")}, 200, "text/html", "goroutine"},
	{call{method: "GET", path: "/debug/pprof/cmdline", header: as("")}, 200, "text/plain", ""},
	{call{method: "GET", path: "/debug/pprof/goroutine?debug=1", header: as("")}, 200, "text/plain", "goroutine profile"},
	{call{method: "GET", path: "/", header: as("")}, 200, "text/html", "<html"},
	{call{method: "GET", path: "/ui/app.js", header: as("")}, 200, "javascript", ""},
	{call{method: "GET", path: "/ui/style.css", header: map[string]string{"Authorization": "", "Range": "bytes=0-3"}}, 206, "text/css", ""},
	{call{method: "GET", path: "/ui/app.js", header: map[string]string{"Authorization": "", "Range": "bytes=999999-"}}, 416, "text/plain", ""},
	{call{method: "GET", path: "/ui/index.html", header: as("")}, 301, "", ""},
	{call{method: "POST", path: "/deadletters/1-1/replay", header: as(bearer(adminToken))}, 200, "application/json", `"replayed":"1-1"`},
}

// TestOps_serves: the operations listener serves metrics, profiles, a
// /readyz naming each dependency, and with the API the live page, its
// assets and dead-letter replay; the public listener serves none of them.
func TestOps_serves(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, testenv.DB(t), adminToken)
	var replayed []string
	ops := httpapi.NewOps(cfg, httpapi.Ops{
		Live:             live.New(),
		ReplayDeadLetter: func(_ context.Context, id string) error { replayed = append(replayed, id); return nil },
	})
	api := httpapi.New(cfg)
	for _, tt := range opsOnly {
		rec := do(t, ops, tt.call)
		if rec.Code != tt.status || !strings.Contains(rec.Header().Get("Content-Type"), tt.contentType) || !strings.Contains(rec.Body.String(), tt.says) {
			t.Errorf("operations %s %s = %d %s %.200s; want %d %s saying %q", tt.call.method, tt.call.path,
				rec.Code, rec.Header().Get("Content-Type"), rec.Body, tt.status, tt.contentType, tt.says)
		}
		wantProblem(t, do(t, api, tt.call), http.StatusNotFound, "")
	}
	if len(replayed) != 1 || replayed[0] != "1-1" {
		t.Errorf("replayed %v, want 1-1", replayed)
	}

	t.Run("readyz_names_each_dependency", func(t *testing.T) {
		rec := do(t, ops, call{method: "GET", path: "/readyz", header: as("")})
		p := decode(t, rec)
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(p["detail"].(string), "redis") {
			t.Errorf("= %d %s, want 503 naming redis", rec.Code, rec.Body)
		}
		if checks, _ := p["checks"].(map[string]any); checks["postgres"] != "ok" || checks["redis"] != "unavailable" {
			t.Errorf("checks = %v", p["checks"])
		}
		public := do(t, api, call{method: "GET", path: "/readyz", header: as("")})
		if public.Code != http.StatusServiceUnavailable || strings.Contains(public.Body.String(), "redis") || strings.Contains(public.Body.String(), "checks") {
			t.Errorf("the public /readyz = %d %s, want 503 naming nothing", public.Code, public.Body)
		}

		cfg := cfg
		cfg.Checks = map[string]func(context.Context) error{"postgres": func(context.Context) error { return nil }}
		rec = do(t, httpapi.NewOps(cfg, httpapi.Ops{}), call{method: "GET", path: "/readyz", header: as("")})
		if rec.Code != http.StatusOK || rec.Body.String() != `{"checks":{"postgres":"ok"},"status":"ready"}`+"\n" {
			t.Errorf("ready = %d %s", rec.Code, rec.Body)
		}
		rec = do(t, httpapi.New(cfg), call{method: "GET", path: "/readyz", header: as("")})
		if rec.Code != http.StatusOK || rec.Body.String() != `{"status":"ready"}`+"\n" {
			t.Errorf("the public ready = %d %s, want {\"status\":\"ready\"}", rec.Code, rec.Body)
		}
	})

	// Without the API (a worker's process) there is no page, no replay and
	// no customer route: only metrics, health, readiness and profiles.
	t.Run("serves_no_page_without_the_api", func(t *testing.T) {
		bare := httpapi.NewOps(cfg, httpapi.Ops{})
		for _, c := range []call{
			{method: "GET", path: "/", header: as("")},
			{method: "GET", path: "/events", header: as("")},
			{method: "POST", path: "/deadletters/1-1/replay", header: as(bearer(adminToken))},
			{method: "GET", path: "/orders"},
		} {
			wantProblem(t, do(t, bare, c), http.StatusNotFound, "")
		}
		for _, path := range []string{"/metrics", "/healthz", "/debug/pprof/"} {
			if rec := do(t, bare, call{method: "GET", path: path, header: as("")}); rec.Code != http.StatusOK {
				t.Errorf("GET %s = %d", path, rec.Code)
			}
		}
	})
}
