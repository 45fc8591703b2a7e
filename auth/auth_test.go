package auth_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/orderstream/orderstream/auth"
)

var secret = []byte("a-secret-of-at-least-thirty-two-bytes")

func newVerifier(t *testing.T, cfg auth.Config) *auth.Verifier {
	t.Helper()
	v, err := auth.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifier_secret(t *testing.T) {
	cfg := auth.Config{Secret: secret}
	v := newVerifier(t, cfg)
	exp := time.Now().Add(time.Hour).Unix()

	t.Run("a_minted_token_verifies", func(t *testing.T) {
		for _, p := range []auth.Principal{{Subject: "alice"}, {Subject: "ops", Admin: true}} {
			tok, err := cfg.Mint(p, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := v.Verify(tok); err != nil || got != p {
				t.Errorf("Verify(Mint(%+v)) = %+v, %v", p, got, err)
			}
		}
	})
	t.Run("roles_as_a_list_or_one_string", func(t *testing.T) {
		for _, roles := range []any{[]string{"reader", "admin"}, "admin"} {
			tok := sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "bob", "exp": exp, "roles": roles})
			if got, err := v.Verify(tok); err != nil || !got.Admin {
				t.Errorf("roles %v: %+v, %v; want an admin", roles, got, err)
			}
		}
		tok := sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "bob", "exp": exp, "roles": []string{"administrator"}})
		if got, err := v.Verify(tok); err != nil || got.Admin {
			t.Errorf("roles [administrator]: %+v, %v; want no admin", got, err)
		}
	})

	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "mallory", "exp": exp}).
		SignedString(jwt.UnsafeAllowNoneSignatureType)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	refused := map[string]string{
		"expired":           sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "a", "exp": time.Now().Add(-time.Hour).Unix()}),
		"no_exp":            sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "a"}),
		"not_yet_valid":     sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "a", "exp": exp, "nbf": time.Now().Add(time.Hour).Unix()}),
		"no_sub":            sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"exp": exp}),
		"another_secret":    sign(t, jwt.SigningMethodHS256, []byte("another-secret-of-thirty-two-bytes!!"), jwt.MapClaims{"sub": "a", "exp": exp}),
		"alg_none":          none,
		"another_algorithm": sign(t, jwt.SigningMethodHS512, secret, jwt.MapClaims{"sub": "a", "exp": exp}),
		"rs256":             sign(t, jwt.SigningMethodRS256, rsaKey, jwt.MapClaims{"sub": "a", "exp": exp}),
		"not_a_jwt":         "component-token",
		"empty":             "",
		"roles_a_number":    sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "a", "exp": exp, "roles": 7}),
	}
	for name, tok := range refused {
		t.Run("refuses_"+name, func(t *testing.T) {
			if p, err := v.Verify(tok); !errors.Is(err, auth.ErrInvalidToken) {
				t.Errorf("Verify = %+v, %v; want ErrInvalidToken", p, err)
			}
		})
	}
}

func TestVerifier_issuerAndAudience(t *testing.T) {
	cfg := auth.Config{Secret: secret, Issuer: "https://id.example", Audience: "orderstream"}
	v := newVerifier(t, cfg)
	tok, err := cfg.Mint(auth.Principal{Subject: "alice"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(tok); err != nil {
		t.Errorf("a token with the issuer and audience: %v", err)
	}
	exp := time.Now().Add(time.Hour).Unix()
	for name, claims := range map[string]jwt.MapClaims{
		"another_audience": {"sub": "a", "exp": exp, "iss": "https://id.example", "aud": "billing"},
		"another_issuer":   {"sub": "a", "exp": exp, "iss": "https://evil.example", "aud": "orderstream"},
		"neither":          {"sub": "a", "exp": exp},
	} {
		if _, err := v.Verify(sign(t, jwt.SigningMethodHS256, secret, claims)); !errors.Is(err, auth.ErrInvalidToken) {
			t.Errorf("%s: %v, want ErrInvalidToken", name, err)
		}
	}
}

func TestVerifier_jwks(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	set, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
		"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
	}}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(set)
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v, err := auth.New(ctx, auth.Config{JWKSURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Unix()
	signed := func(kid string, k any, m jwt.SigningMethod) string {
		tok := jwt.NewWithClaims(m, jwt.MapClaims{"sub": "carol", "exp": exp, "roles": []string{"admin"}})
		tok.Header["kid"] = kid
		s, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if p, err := v.Verify(signed("k1", key, jwt.SigningMethodRS256)); err != nil || p != (auth.Principal{Subject: "carol", Admin: true}) {
		t.Errorf("a token of the provider's key: %+v, %v", p, err)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	if _, err := v.Verify(signed("k1", other, jwt.SigningMethodRS256)); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("another key under the provider's kid: %v, want ErrInvalidToken", err)
	}
	if _, err := v.Verify(signed("k1", secret, jwt.SigningMethodHS256)); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("HS256 against a key set: %v, want ErrInvalidToken", err)
	}
}

func TestNew_refusesNoKeysAndBoth(t *testing.T) {
	for _, cfg := range []auth.Config{{}, {Secret: secret, JWKSURL: "http://127.0.0.1:1/jwks"}} {
		if _, err := auth.New(context.Background(), cfg); err == nil {
			t.Errorf("New(%+v) = nil error", cfg)
		}
	}
	if _, err := (auth.Config{JWKSURL: "http://x"}).Mint(auth.Principal{Subject: "a"}, time.Minute); err == nil {
		t.Error("Mint without a secret = nil error")
	}
}
