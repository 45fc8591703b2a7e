package main

import (
	"net/http"

	"github.com/orderstream/orderstream/tools/internal/credentials"
)

// harnessCredentials are the run's secrets and tokens as the clients send
// them: Authorization headers.
type harnessCredentials struct{ *credentials.Credentials }

func newCredentials() *harnessCredentials {
	return &harnessCredentials{credentials.New()}
}

// env is what the processes need to verify the harness's tokens.
func (c *harnessCredentials) env() []string { return c.Env() }

// customer is the Authorization of customer id (its sub).
func (c *harnessCredentials) customer(id string) (http.Header, error) {
	tok, err := c.Customer(id)
	return bearer(tok), err
}

// administrator is an administrator's Authorization: it sees every
// customer's orders.
func (c *harnessCredentials) administrator() (http.Header, error) {
	tok, err := c.Administrator("chaos-admin")
	return bearer(tok), err
}

// operator is the admin token's, which opens the admin routes only.
func (c *harnessCredentials) operator() http.Header { return bearer(c.AdminToken) }

func bearer(token string) http.Header {
	return http.Header{"Authorization": {"Bearer " + token}}
}

// with returns a copy of h with the headers kv (name, value, name, value…)
// set.
func with(h http.Header, kv ...string) http.Header {
	out := h.Clone()
	for i := 0; i+1 < len(kv); i += 2 {
		out.Set(kv[i], kv[i+1])
	}
	return out
}
