package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/orderstream/orderstream/auth"
)

// The development secrets: make run and the compose files' local profiles
// use them, and a serving process refuses them unless ORDERSTREAM_DEV=true
// says it runs on a developer's machine. They are in the repository, so
// anyone could use them.
const (
	devAdminToken = "dev-admin-token"
	devJWTSecret  = "dev-jwt-secret-for-local-use-only-000"
)

// checkSecrets refuses what would leave a serving process cmd open: an
// API without keys for its tokens, or, outside development, a secret that
// is the development one or shorter than auth.MinSecretLen bytes.
func (c config) checkSecrets(cmd string) error {
	var errs []error
	api := cmd == "all" || cmd == "api"
	switch {
	case api && c.AuthJWTSecret == "" && c.AuthJWKSURL == "":
		errs = append(errs, errors.New("the API needs the keys of its customers' tokens: set AUTH_JWT_SECRET (HS256, "+
			"at least 32 bytes) or AUTH_JWKS_URL (your identity provider's key set)"))
	case c.AuthJWTSecret != "" && c.AuthJWKSURL != "":
		errs = append(errs, errors.New("set AUTH_JWT_SECRET or AUTH_JWKS_URL, not both"))
	}
	if c.Dev {
		return errors.Join(errs...)
	}
	for _, s := range []struct{ name, value, dev string }{
		{"ADMIN_TOKEN", c.AdminToken, devAdminToken},
		{"AUTH_JWT_SECRET", c.AuthJWTSecret, devJWTSecret},
	} {
		switch {
		case s.value == s.dev:
			errs = append(errs, fmt.Errorf("%s is the development secret, which anyone can read in the repository: "+
				"set your own (openssl rand -hex 32), or ORDERSTREAM_DEV=true on a developer's machine", s.name))
		case s.value != "" && len(s.value) < auth.MinSecretLen:
			errs = append(errs, fmt.Errorf("%s is %d bytes: at least %d, such as openssl rand -hex 32 makes "+
				"(or ORDERSTREAM_DEV=true on a developer's machine)", s.name, len(s.value), auth.MinSecretLen))
		}
	}
	return errors.Join(errs...)
}

// authConfig is where the API finds the keys of its tokens.
func (c config) authConfig() auth.Config {
	return auth.Config{Secret: []byte(c.AuthJWTSecret), JWKSURL: c.AuthJWKSURL, Issuer: c.AuthJWTIssuer, Audience: c.AuthJWTAudience}
}

// mintToken prints a token for inv's subject, signed with AUTH_JWT_SECRET:
// on a developer's machine only, where the tokens make run prints are not
// enough.
func mintToken(w io.Writer, c config, inv invocation) error {
	switch {
	case !c.Dev:
		return errors.New("orderstream token mints development tokens only: set ORDERSTREAM_DEV=true on a developer's " +
			"machine; in production your identity provider issues them")
	case c.AuthJWTSecret == "":
		return errors.New("orderstream token signs with AUTH_JWT_SECRET, which is not set")
	}
	token, err := auth.Config{Secret: []byte(c.AuthJWTSecret)}.Mint(auth.Principal{Subject: inv.args[0], Admin: inv.admin}, inv.ttl)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, token)
	return err
}
