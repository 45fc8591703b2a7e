package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/orderstream/orderstream/httpapi"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/logging"
)

// TestHTTP_trustedProxies: X-Request-ID and X-Forwarded-For are taken
// from a trusted proxy only; from any other peer the request id is
// generated and the client is the peer. The request's log line names its
// client.
func TestHTTP_trustedProxies(t *testing.T) {
	t.Parallel()
	logs := &testenv.Buffer{}
	cfg := testConfig(t, testenv.DB(t), adminToken)
	logger, err := logging.New(logs, "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = logger
	api := httpapi.New(cfg)
	tests := []struct {
		name, remote, forwardedFor string
		keepsID                    bool
		client                     string
	}{
		{"a_trusted_proxy_names_the_client", "192.0.2.1:1234", "203.0.113.7", true, "203.0.113.7"},
		{"the_client_is_the_last_address_not_a_proxy", "192.0.2.1:1234", "198.51.100.1, 203.0.113.8, 192.0.2.9", true, "203.0.113.8"},
		{"a_trusted_proxy_without_forwarded_for_is_the_client", "192.0.2.1:1234", "", true, "192.0.2.1"},
		{"an_untrusted_peer_is_its_own_client", "198.51.100.9:4321", "203.0.113.7", false, "198.51.100.9"},
		{"an_untrusted_peer_naming_a_trusted_proxy", "198.51.100.9:4321", "192.0.2.1", false, "198.51.100.9"},
		{"an_untrusted_ipv6_peer", "[2001:db8::1]:443", "203.0.113.7", false, "2001:db8::1"},
		{"a_loopback_peer_is_not_trusted_unless_listed", "127.0.0.1:5555", "203.0.113.7", false, "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sent := testenv.Unique("proxy-req")
			header := map[string]string{"X-Request-ID": sent}
			if tt.forwardedFor != "" {
				header["X-Forwarded-For"] = tt.forwardedFor
			}
			rec := do(t, api, call{method: "GET", path: "/inventory/" + testenv.Unique("SKU"), header: header, remote: tt.remote})
			if rec.Code != http.StatusNotFound {
				t.Fatalf("= %d %s, want 404", rec.Code, rec.Body)
			}
			id := rec.Header().Get("X-Request-ID")
			if kept := id == sent; kept != tt.keepsID || id == "" {
				t.Errorf("X-Request-ID %q sent, %q answered; want it kept: %v", sent, id, tt.keepsID)
			}
			line := requestLine(t, logs.String(), id)
			if want := `"client":"` + tt.client + `"`; !strings.Contains(line, want) {
				t.Errorf("the log line %s lacks %s", line, want)
			}
		})
	}
}

// requestLine is the "http request" log line of the request whose
// correlation id is id.
func requestLine(t *testing.T, logs, id string) string {
	t.Helper()
	for line := range strings.SplitSeq(logs, "\n") {
		if strings.Contains(line, `"msg":"http request"`) && strings.Contains(line, `"correlation_id":"`+id+`"`) {
			return line
		}
	}
	t.Fatalf("no request line with correlation_id %s in\n%s", id, logs)
	return ""
}
