package main

import (
	"fmt"
	"sync"
	"time"

	"github.com/orderstream/orderstream/auth"
)

// tokenTTL is how long the bench's tokens are valid: longer than any run.
const tokenTTL = 24 * time.Hour

// customersPerGroup is how many customers the orders of one load spread
// over: the customer of an order is <group>-<n mod customersPerGroup>.
const customersPerGroup = 1000

// credentials are the run's secrets: the processes verify customers' JWTs
// with secret (AUTH_JWT_SECRET) and take adminToken (ADMIN_TOKEN) on PUT
// /inventory. Both are drawn afresh for each run, as long as the
// application asks of them outside development (auth.MinSecretLen).
type credentials struct {
	secret, adminToken string
	cfg                auth.Config

	mu     sync.Mutex
	tokens map[string]string // a customer's JWT, by customer id
}

func newCredentials() *credentials {
	secret := randomHex(auth.MinSecretLen)
	return &credentials{secret: secret, adminToken: randomHex(auth.MinSecretLen),
		cfg: auth.Config{Secret: []byte(secret)}, tokens: map[string]string{}}
}

// customers returns the customer ids of group, each with its token, minting
// those not minted yet. A load asks before it starts, so that no request
// it times waits for a signature.
func (c *credentials) customers(group string) ([]customer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]customer, customersPerGroup)
	for i := range out {
		id := fmt.Sprintf("%s-%d", group, i)
		tok, ok := c.tokens[id]
		if !ok {
			var err error
			if tok, err = c.cfg.Mint(auth.Principal{Subject: id}, tokenTTL); err != nil {
				return nil, err
			}
			c.tokens[id] = tok
		}
		out[i] = customer{id: id, authorization: "Bearer " + tok}
	}
	return out, nil
}

// customer is one customer of a load: its id and Authorization header.
type customer struct{ id, authorization string }
