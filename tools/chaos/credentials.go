package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/orderstream/orderstream/auth"
)

// tokenTTL is how long the harness's tokens are valid: longer than any run.
const tokenTTL = 24 * time.Hour

// credentials are the run's secrets and the tokens made with them: the
// processes verify customers' JWTs with the secret (AUTH_JWT_SECRET) and
// take the admin token (ADMIN_TOKEN) on the admin routes. Both are drawn
// afresh for each run, as long as the application asks of them outside
// development (auth.MinSecretLen).
type credentials struct {
	secret     string
	adminToken string
	cfg        auth.Config

	mu        sync.Mutex
	customers map[string]string // a customer's JWT, by customer id
	admin     string            // an administrator's JWT, once minted
}

func newCredentials() (*credentials, error) {
	secret, err := randomHex(auth.MinSecretLen)
	if err != nil {
		return nil, err
	}
	admin, err := randomHex(auth.MinSecretLen)
	if err != nil {
		return nil, err
	}
	return &credentials{secret: secret, adminToken: admin, cfg: auth.Config{Secret: []byte(secret)},
		customers: map[string]string{}}, nil
}

// env is what the processes need to verify the harness's tokens.
func (c *credentials) env() []string {
	return []string{"AUTH_JWT_SECRET=" + c.secret, "ADMIN_TOKEN=" + c.adminToken}
}

// customer is the JWT of customer id (its sub), minted the first time.
func (c *credentials) customer(id string) (http.Header, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	tok, ok := c.customers[id]
	if !ok {
		var err error
		if tok, err = c.cfg.Mint(auth.Principal{Subject: id}, tokenTTL); err != nil {
			return nil, err
		}
		c.customers[id] = tok
	}
	return bearer(tok), nil
}

// administrator is an administrator's JWT: it sees every customer's orders.
func (c *credentials) administrator() (http.Header, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.admin == "" {
		tok, err := c.cfg.Mint(auth.Principal{Subject: "chaos-admin", Admin: true}, tokenTTL)
		if err != nil {
			return nil, err
		}
		c.admin = tok
	}
	return bearer(c.admin), nil
}

// operator is the admin token, which opens the admin routes only.
func (c *credentials) operator() http.Header { return bearer(c.adminToken) }

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

// randomHex is n random bytes, hex-encoded (2n characters).
func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("draw a secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}
