package httpapi_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/orderstream/orderstream/httpapi"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/live"
)

// TestHTTP_customerScoping: a customer places, reads, lists and cancels
// their own orders only; another customer's order is not found, as an
// unknown one is, and nothing about it changes. An administrator sees and
// places for everyone.
func TestHTTP_customerScoping(t *testing.T) {
	t.Parallel()
	db := testenv.DB(t)
	api := newAPIOn(t, db, adminToken)
	alice, bob := testenv.Unique("alice"), testenv.Unique("bob")
	asAlice, asBob, asAdmin := as(bearer(customerJWT(t, alice))), as(bearer(customerJWT(t, bob))), as(bearer(adminJWT(t)))
	const items = `"items":[{"sku":"SKU-1","quantity":1}]`
	place := func(t *testing.T, header map[string]string, body string) map[string]any {
		t.Helper()
		rec := do(t, api, call{method: "POST", path: "/orders", body: body, header: header})
		if rec.Code != http.StatusCreated {
			t.Fatalf("POST /orders = %d %s", rec.Code, rec.Body)
		}
		return decode(t, rec)
	}
	aliceOrder := place(t, asAlice, `{`+items+`}`)
	if aliceOrder["customer_id"] != alice {
		t.Fatalf("placed without customer_id for %v, want the token's sub %s", aliceOrder["customer_id"], alice)
	}
	bobOrder := place(t, asBob, `{"customer_id":"`+bob+`",`+items+`}`)
	aliceID, bobID := aliceOrder["id"].(string), bobOrder["id"].(string)
	unknown := do(t, api, call{method: "GET", path: "/orders/01a2085e-97ee-76b5-b6c7-24fcde6bbcdb", header: asAlice})

	t.Run("reads_own_order", func(t *testing.T) {
		if rec := do(t, api, call{method: "GET", path: "/orders/" + aliceID, header: asAlice}); rec.Code != http.StatusOK {
			t.Errorf("= %d %s, want 200", rec.Code, rec.Body)
		}
	})
	t.Run("finds_no_order_of_another_customer", func(t *testing.T) {
		rec := do(t, api, call{method: "GET", path: "/orders/" + bobID, header: asAlice})
		if rec.Code != http.StatusNotFound || rec.Body.String() != unknown.Body.String() {
			t.Errorf("= %d %s, want 404 as for an unknown id: %s", rec.Code, rec.Body, unknown.Body)
		}
	})
	t.Run("lists_own_orders_only", func(t *testing.T) {
		for _, query := range []string{"", "?customer_id=" + alice, "?limit=100&status=pending"} {
			rec := do(t, api, call{method: "GET", path: "/orders" + query, header: asAlice})
			if got := listedIDs(t, rec, alice); len(got) != 1 || got[0] != aliceID {
				t.Errorf("GET /orders%s lists %v, want only %s", query, got, aliceID)
			}
		}
	})
	t.Run("refuses_to_list_another_customers_orders", func(t *testing.T) {
		wantProblem(t, do(t, api, call{method: "GET", path: "/orders?customer_id=" + bob, header: asAlice}), 403, "your own")
	})
	t.Run("refuses_to_place_for_another_customer", func(t *testing.T) {
		wantProblem(t, do(t, api, call{method: "POST", path: "/orders", body: `{"customer_id":"` + bob + `",` + items + `}`, header: asAlice}), 403, "your own")
		rec := do(t, api, call{method: "GET", path: "/orders?customer_id=" + bob, header: asAdmin})
		if got := listedIDs(t, rec, bob); len(got) != 1 {
			t.Errorf("bob has %d orders after alice tried to place one for him, want 1", len(got))
		}
	})
	t.Run("cancels_no_order_of_another_customer", func(t *testing.T) {
		key := map[string]string{"Authorization": asAlice["Authorization"], "Idempotency-Key": testenv.Unique("k")}
		rec := do(t, api, call{method: "POST", path: "/orders/" + bobID + "/cancel", body: `{"reason":"mine now"}`, header: key})
		if rec.Code != http.StatusNotFound || rec.Body.String() != unknown.Body.String() {
			t.Fatalf("= %d %s, want 404 as for an unknown id", rec.Code, rec.Body)
		}
		if got := decode(t, do(t, api, call{method: "GET", path: "/orders/" + bobID, header: asBob})); got["status"] != "pending" || got["updated_at"] != bobOrder["updated_at"] {
			t.Errorf("bob's order after alice's cancel = %v, want it as placed", got)
		}
		if evs := testenv.OutboxEvents(t, db, "order_id", bobID); len(evs) != 1 {
			t.Errorf("%d events for bob's order, want its OrderPlaced alone", len(evs))
		}
		// Nor was the key kept: bob's own cancel with it, and the same
		// reason, cancels (202) rather than replays alice's.
		key["Authorization"] = asBob["Authorization"]
		if rec := do(t, api, call{method: "POST", path: "/orders/" + bobID + "/cancel", body: `{"reason":"mine now"}`, header: key}); rec.Code != http.StatusAccepted {
			t.Errorf("bob's cancel = %d %s, want 202", rec.Code, rec.Body)
		}
	})
	t.Run("an_administrator_sees_everyone", func(t *testing.T) {
		for _, id := range []string{aliceID, bobID} {
			if rec := do(t, api, call{method: "GET", path: "/orders/" + id, header: asAdmin}); rec.Code != http.StatusOK {
				t.Errorf("GET /orders/%s = %d", id, rec.Code)
			}
		}
		if got := listedIDs(t, do(t, api, call{method: "GET", path: "/orders?customer_id=" + alice, header: asAdmin}), alice); len(got) != 1 {
			t.Errorf("alice's orders listed to an administrator: %v", got)
		}
		// Unfiltered, every customer's, page after page.
		seen := map[string]bool{}
		for query := "/orders?limit=100"; query != ""; {
			rec := do(t, api, call{method: "GET", path: query, header: asAdmin})
			var page struct {
				Orders []struct{ ID string }
				Next   *string
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil || rec.Code != http.StatusOK {
				t.Fatalf("GET %s = %d %s", query, rec.Code, rec.Body)
			}
			for _, o := range page.Orders {
				seen[o.ID] = true
			}
			query = ""
			if page.Next != nil {
				query = "/orders?limit=100&after=" + *page.Next
			}
		}
		if !seen[aliceID] || !seen[bobID] {
			t.Errorf("the unfiltered listing has alice's order %v, bob's %v; want both", seen[aliceID], seen[bobID])
		}
	})
	t.Run("an_administrator_places_for_anyone", func(t *testing.T) {
		o := place(t, asAdmin, `{"customer_id":"`+alice+`",`+items+`}`)
		if rec := do(t, api, call{method: "GET", path: "/orders/" + o["id"].(string), header: asAlice}); o["customer_id"] != alice || rec.Code != http.StatusOK {
			t.Errorf("placed for %v, and alice reads it: %d", o["customer_id"], rec.Code)
		}
		if o := place(t, asAdmin, `{`+items+`}`); o["customer_id"] != adminSubject {
			t.Errorf("an administrator's order without customer_id is %v's, want the token's sub", o["customer_id"])
		}
	})
}

// listedIDs are the ids of a page of orders; each must be customer's.
func listedIDs(t *testing.T, rec *httptest.ResponseRecorder, customer string) []string {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /orders = %d %s", rec.Code, rec.Body)
	}
	var ids []string
	for _, o := range decode(t, rec)["orders"].([]any) {
		o := o.(map[string]any)
		if o["customer_id"] != customer {
			t.Errorf("listed %v's order %v among %s's", o["customer_id"], o["id"], customer)
		}
		ids = append(ids, o["id"].(string))
	}
	return ids
}

// TestHTTP_tokenFailures: a token that does not verify is 401 with
// WWW-Authenticate on every route, whatever is wrong with it.
func TestHTTP_tokenFailures(t *testing.T) {
	t.Parallel()
	api := newAPI(t, adminToken)
	exp := time.Now().Add(time.Hour).Unix()
	sign := func(method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
		t.Helper()
		s, err := jwt.NewWithClaims(method, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	valid := customerJWT(t, "c-1")
	if rec := do(t, api, call{method: "GET", path: "/orders", header: as(bearer(valid))}); rec.Code != http.StatusOK {
		t.Fatalf("a valid token = %d %s", rec.Code, rec.Body)
	}
	// The valid token, its payload made another customer's, its signature
	// kept.
	parts := strings.Split(valid, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"c-1"`, `"c-2"`, 1)))
	tampered := strings.Join(parts, ".")
	unsigned := parts[0] + "." + parts[1] + "."

	tokens := map[string]string{
		"forged_secret":             sign(jwt.SigningMethodHS256, []byte("another-secret-of-at-least-32-bytes!!"), jwt.MapClaims{"sub": "c-1", "exp": exp}),
		"expired":                   sign(jwt.SigningMethodHS256, testAuth.Secret, jwt.MapClaims{"sub": "c-1", "exp": time.Now().Add(-time.Hour).Unix()}),
		"alg_none":                  sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sub": "c-1", "exp": exp, "roles": "admin"}),
		"no_exp":                    sign(jwt.SigningMethodHS256, testAuth.Secret, jwt.MapClaims{"sub": "c-1"}),
		"no_sub":                    sign(jwt.SigningMethodHS256, testAuth.Secret, jwt.MapClaims{"exp": exp}),
		"not_yet_valid":             sign(jwt.SigningMethodHS256, testAuth.Secret, jwt.MapClaims{"sub": "c-1", "exp": exp, "nbf": time.Now().Add(time.Hour).Unix()}),
		"another_algorithm":         sign(jwt.SigningMethodHS512, testAuth.Secret, jwt.MapClaims{"sub": "c-1", "exp": exp}),
		"tampered":                  tampered,
		"signature_removed":         unsigned,
		"garbage":                   "garbage",
		"the_admin_token_cut_short": adminToken[:len(adminToken)-1],
	}
	routes := []call{
		{method: "GET", path: "/orders"},
		{method: "POST", path: "/orders", body: `{"items":[{"sku":"SKU-1","quantity":1}]}`},
		{method: "GET", path: "/orders/01a2085e-97ee-76b5-b6c7-24fcde6bbcdb"},
		{method: "POST", path: "/orders/01a2085e-97ee-76b5-b6c7-24fcde6bbcdb/cancel"},
		{method: "GET", path: "/inventory/SKU-1"},
		{method: "PUT", path: "/inventory/SKU-1", body: `{"available":1}`},
		{method: "GET", path: "/healthz"},
	}
	for name, token := range tokens {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, c := range routes {
				c.header = as(bearer(token))
				rec := do(t, api, c)
				wantProblem(t, rec, http.StatusUnauthorized, "bearer token is not valid")
				if got := rec.Header().Get("WWW-Authenticate"); got != `Bearer realm="orderstream", error="invalid_token"` {
					t.Errorf("%s %s: WWW-Authenticate %q", c.method, c.path, got)
				}
			}
		})
	}
}

// TestHTTP_roles: on both listeners, the customer routes take a JWT, a
// customer's or an administrator's, and refuse the admin token; the admin
// routes take an administrator's JWT or the admin token, and refuse a
// customer's JWT; without a token, both are 401.
func TestHTTP_roles(t *testing.T) {
	t.Parallel()
	db := testenv.DB(t)
	listeners := map[string]http.Handler{
		"public":     newAPIOn(t, db, adminToken),
		"operations": httpapi.NewOps(testConfig(t, db, adminToken), httpapi.Ops{Live: live.New()}),
	}
	const (
		pass         = 0
		unauthorized = http.StatusUnauthorized
		forbidden    = http.StatusForbidden
	)
	type want struct{ none, adminToken, customer, admin int }
	customerRoute, adminRoute := want{unauthorized, forbidden, pass, pass}, want{unauthorized, pass, forbidden, pass}
	routes := []struct {
		call call
		want want
	}{
		{call{method: "POST", path: "/orders", body: `{"items":[{"sku":"SKU-1","quantity":1}]}`}, customerRoute},
		{call{method: "GET", path: "/orders"}, customerRoute},
		{call{method: "GET", path: "/orders/01a2085e-97ee-76b5-b6c7-24fcde6bbcdb"}, customerRoute},
		{call{method: "POST", path: "/orders/01a2085e-97ee-76b5-b6c7-24fcde6bbcdb/cancel"}, customerRoute},
		{call{method: "GET", path: "/inventory/SKU-1"}, customerRoute},
		{call{method: "PUT", path: "/inventory/SKU-roles", body: `{"available":1}`}, adminRoute},
	}
	tokens := map[string]func(want) int{
		"":                                func(w want) int { return w.none },
		bearer(adminToken):                func(w want) int { return w.adminToken },
		bearer(customerJWT(t, "c-roles")): func(w want) int { return w.customer },
		bearer(adminJWT(t)):               func(w want) int { return w.admin },
	}
	for name, h := range listeners {
		for _, r := range routes {
			for authorization, expect := range tokens {
				c := r.call
				c.header = as(authorization)
				rec := do(t, h, c)
				switch status := expect(r.want); {
				case status == pass && (rec.Code == unauthorized || rec.Code == forbidden || rec.Code >= 500):
					t.Errorf("%s %s %s with %.20q = %d %s, want past the check", name, c.method, c.path, authorization, rec.Code, rec.Body)
				case status != pass && rec.Code != status:
					t.Errorf("%s %s %s with %.20q = %d %s, want %d", name, c.method, c.path, authorization, rec.Code, rec.Body, status)
				case status == unauthorized && rec.Header().Get("WWW-Authenticate") != `Bearer realm="orderstream"`:
					t.Errorf("%s %s %s without a token: WWW-Authenticate %q", name, c.method, c.path, rec.Header().Get("WWW-Authenticate"))
				}
			}
		}
	}
}
