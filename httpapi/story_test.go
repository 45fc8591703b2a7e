package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/httpapi"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/live"
	"github.com/orderstream/orderstream/story"
)

// TestOps_story: GET /orders/{id}/story on the operations listener answers
// an order's story as JSON to an administrator (a JWT with the admin role,
// as the live page sends, or ADMIN_TOKEN); an unknown order is 404, an id
// that is not a UUID 400, a request without a token 401, a customer's 403.
// The public listener has no such route.
func TestOps_story(t *testing.T) {
	t.Parallel()
	known := uuid.NewString()
	at := time.Date(2026, 12, 7, 17, 0, 0, 0, time.UTC)
	read := func(_ context.Context, id string) (story.Story, error) {
		switch id {
		case known:
			return story.Story{Order: story.Order{ID: known, Status: "pending"}, Missing: []string{"something"},
				Steps: []story.Step{{Kind: story.KindPlaced, Name: "order placed", At: at}, {Kind: story.KindWritten,
					Name: "OrderPlaced", At: at.Add(1500 * time.Microsecond), Delay: 1500 * time.Microsecond}}}, nil
		case "nope":
			return story.Story{}, fmt.Errorf("%w: nope", story.ErrBadID)
		}
		return story.Story{}, fmt.Errorf("%w: %s", story.ErrNotFound, id)
	}
	cfg := testConfig(t, testenv.DB(t), adminToken)
	ops := httpapi.NewOps(cfg, httpapi.Ops{Live: live.New(), Story: read})
	path := "/orders/" + known + "/story"

	for name, token := range map[string]string{"admin_jwt": bearer(adminJWT(t)), "admin_token": bearer(adminToken)} {
		rec := do(t, ops, call{method: "GET", path: path, header: as(token)})
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != jsonType {
			t.Fatalf("%s: GET %s = %d %s %s", name, path, rec.Code, rec.Header().Get("Content-Type"), rec.Body)
		}
		doc := decode(t, rec)
		steps, _ := doc["steps"].([]any)
		if order, _ := doc["order"].(map[string]any); order["id"] != known || len(steps) != 2 || doc["settled"] != false {
			t.Errorf("%s: GET %s = %s", name, path, rec.Body)
		}
		if second, _ := steps[1].(map[string]any); second["delay_ms"] != 1.5 || second["kind"] != "written" {
			t.Errorf("%s: second step = %v, want kind written, delay_ms 1.5", name, second)
		}
	}
	wantProblem(t, do(t, ops, call{method: "GET", path: "/orders/" + uuid.NewString() + "/story"}), http.StatusNotFound, "no order has this id")
	wantProblem(t, do(t, ops, call{method: "GET", path: "/orders/nope/story"}), http.StatusBadRequest, "not a UUID")
	wantProblem(t, do(t, ops, call{method: "GET", path: path, header: as("")}), http.StatusUnauthorized, "")
	wantProblem(t, do(t, ops, call{method: "GET", path: path, header: as(bearer(customerJWT(t, "c-1")))}), http.StatusForbidden, "")

	none := httpapi.NewOps(cfg, httpapi.Ops{Live: live.New()})
	wantProblem(t, do(t, none, call{method: "GET", path: path}), http.StatusNotFound, "cannot be read from this process")
	wantProblem(t, do(t, httpapi.New(cfg), call{method: "GET", path: path}), http.StatusNotFound, "")
}
