// Package credentials holds a harness run's secrets and the tokens made
// with them: the processes it starts verify customers' JWTs with the
// secret (AUTH_JWT_SECRET) and take the admin token (ADMIN_TOKEN) on the
// admin routes. Both are drawn afresh for each run, as long as the
// application asks of them outside development (auth.MinSecretLen).
package credentials

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"github.com/orderstream/orderstream/auth"
)

// tokenTTL is how long the tokens are valid: longer than any run.
const tokenTTL = 24 * time.Hour

// Credentials are one run's secrets and the JWTs minted with them, each
// minted once.
type Credentials struct {
	Secret, AdminToken string

	cfg    auth.Config
	mu     sync.Mutex
	tokens map[auth.Principal]string
}

// New draws a run's secrets.
func New() *Credentials {
	secret := randomHex(auth.MinSecretLen)
	return &Credentials{Secret: secret, AdminToken: randomHex(auth.MinSecretLen),
		cfg: auth.Config{Secret: []byte(secret)}, tokens: map[auth.Principal]string{}}
}

// Env is what the processes need to verify the run's tokens.
func (c *Credentials) Env() []string {
	return []string{"AUTH_JWT_SECRET=" + c.Secret, "ADMIN_TOKEN=" + c.AdminToken}
}

// Customer is the JWT of the customer id (its sub).
func (c *Credentials) Customer(id string) (string, error) {
	return c.token(auth.Principal{Subject: id})
}

// Administrator is the JWT of an administrator: it sees every customer's
// orders.
func (c *Credentials) Administrator(id string) (string, error) {
	return c.token(auth.Principal{Subject: id, Admin: true})
}

func (c *Credentials) token(p auth.Principal) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if tok, ok := c.tokens[p]; ok {
		return tok, nil
	}
	tok, err := c.cfg.Mint(p, tokenTTL)
	if err != nil {
		return "", err
	}
	c.tokens[p] = tok
	return tok, nil
}

// randomHex is n random bytes, hex-encoded (2n characters). crypto/rand's
// Read does not fail (Go 1.24 and later).
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
