// Package auth owns who a request speaks for: it verifies the bearer
// tokens of customers and administrators (JWTs signed with an HMAC secret
// or by an identity provider's keys, fetched from its JWKS URL), and mints
// development tokens.
//
// The contract, which tooling outside the repository relies on: the claim
// `sub` is the customer; a `roles` claim containing `admin` makes an
// administrator; `exp` is required.
package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// Principal is who a request speaks for.
type Principal struct {
	// Subject is the token's sub: the customer.
	Subject string
	// Admin is true for a token whose roles contain RoleAdmin.
	Admin bool
}

// RoleAdmin is the role, in a token's roles claim, of an administrator.
const RoleAdmin = "admin"

// MinSecretLen is the shortest HMAC secret (and admin token) accepted
// outside development: HS256's key is as strong as its 32 bytes.
const MinSecretLen = 32

// ErrInvalidToken is any token that does not verify: malformed, signed
// with another key or algorithm (alg "none" included), expired, not yet
// valid, for another issuer or audience, or without a subject.
var ErrInvalidToken = errors.New("invalid token")

// Config says where the keys come from: Secret or JWKSURL, one of them.
type Config struct {
	// Secret verifies HS256 tokens (for local use and tests).
	Secret []byte
	// JWKSURL is an identity provider's key set; tokens signed with
	// RSA, ECDSA or Ed25519 keys of it verify.
	JWKSURL string
	// Issuer and Audience, when set, must be the token's iss and be in
	// its aud: without them, a token the same provider issued for another
	// application would be accepted.
	Issuer, Audience string
}

// Verifier checks bearer tokens.
type Verifier struct {
	keys   jwt.Keyfunc
	parser *jwt.Parser
}

// clockSkew is how far apart the issuer's clock and this one may be.
const clockSkew = 30 * time.Second

// New returns the Verifier cfg describes. With a JWKS URL it fetches the
// key set now and refreshes it in the background until ctx is done; an
// unknown key id triggers a refresh, at most once every few seconds.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	opts := []jwt.ParserOption{jwt.WithExpirationRequired(), jwt.WithLeeway(clockSkew)}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v := &Verifier{}
	switch {
	case len(cfg.Secret) > 0 && cfg.JWKSURL != "":
		return nil, errors.New("auth: set a secret or a JWKS URL, not both")
	case len(cfg.Secret) > 0:
		secret := cfg.Secret
		v.keys = func(*jwt.Token) (any, error) { return secret, nil }
		// The algorithm is fixed, never the token's to choose: "none",
		// or RS256 with the secret as a public key, are refused.
		opts = append(opts, jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}))
	case cfg.JWKSURL != "":
		k, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{cfg.JWKSURL}, keyfunc.Override{HTTPTimeout: 10 * time.Second})
		if err != nil {
			return nil, fmt.Errorf("auth: fetch the key set: %w", err)
		}
		v.keys = k.KeyfuncCtx(ctx)
		opts = append(opts, jwt.WithValidMethods([]string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
			"ES256", "ES384", "ES512", "EdDSA"}))
	default:
		return nil, errors.New("auth: no keys: set a secret or a JWKS URL")
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// claims are the claims orderstream reads.
type claims struct {
	jwt.RegisteredClaims
	Roles roles `json:"roles,omitempty"`
}

// roles is the roles claim: a list of names, or one name as a string, as
// some identity providers write it.
type roles []string

func (r *roles) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*r = roles{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("roles: want a string or a list of strings")
	}
	*r = many
	return nil
}

// Verify returns the principal token speaks for, or an error wrapping
// ErrInvalidToken that says why it does not verify.
func (v *Verifier) Verify(token string) (Principal, error) {
	var c claims
	if _, err := v.parser.ParseWithClaims(token, &c, v.keys); err != nil {
		return Principal{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if c.Subject == "" {
		return Principal{}, fmt.Errorf("%w: no sub", ErrInvalidToken)
	}
	return Principal{Subject: c.Subject, Admin: slices.Contains(c.Roles, RoleAdmin)}, nil
}

// Mint returns an HS256 token for p signed with cfg's secret, valid for
// ttl from now, with cfg's issuer and audience: the development tokens
// (`orderstream token`, make run) and the tests'. Tokens of a JWKS are
// the identity provider's to issue.
func (cfg Config) Mint(p Principal, ttl time.Duration) (string, error) {
	if len(cfg.Secret) == 0 {
		return "", errors.New("mint token: only a secret (AUTH_JWT_SECRET) can sign one")
	}
	now := time.Now()
	c := claims{RegisteredClaims: jwt.RegisteredClaims{
		Issuer:    cfg.Issuer,
		Subject:   p.Subject,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	if cfg.Audience != "" {
		c.Audience = jwt.ClaimStrings{cfg.Audience}
	}
	if p.Admin {
		c.Roles = roles{RoleAdmin}
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(cfg.Secret)
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	return s, nil
}
