// Package token mints and verifies Floodgate user tokens: JWTs signed with
// HS256 by an app's backend, using the app's secret as the key. An app
// backend written in Go uses Mint; the gateway uses Verify.
package token

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/floodgate/floodgate/protocol"
)

// Claims are what a user token says.
type Claims struct {
	// User is the user id (the "sub" claim).
	User string
	// Device optionally names the device (the "device" claim).
	Device string
	// App optionally binds the token to one app (the "aud" claim).
	App string
	// IssuedAt is "iat"; zero omits it (but then the token is refused once
	// the user's sessions have been disabled).
	IssuedAt time.Time
	// Expires is "exp" and required.
	Expires time.Time
	// NotBefore is "nbf"; zero omits it.
	NotBefore time.Time
}

// Verification errors; each maps to one protocol error code (see Code).
var (
	ErrInvalid  = errors.New("token: invalid")
	ErrExpired  = errors.New("token: expired")
	ErrWrongApp = errors.New("token: issued for another app")
)

// Code returns the protocol error code for an error returned by Verify.
func Code(err error) string {
	switch {
	case errors.Is(err, ErrExpired):
		return protocol.CodeTokenExpired
	case errors.Is(err, ErrWrongApp):
		return protocol.CodeTokenWrongApp
	default:
		return protocol.CodeTokenInvalid
	}
}

type wireClaims struct {
	Device string `json:"device,omitempty"`
	jwt.RegisteredClaims
}

// Mint returns a token for c signed with secret.
func Mint(secret string, c Claims) (string, error) {
	if !protocol.ValidID(c.User) {
		return "", fmt.Errorf("token: invalid user id %q", c.User)
	}
	if c.Expires.IsZero() {
		return "", errors.New("token: expiry is required")
	}
	wc := wireClaims{Device: c.Device}
	wc.Subject = c.User
	wc.ExpiresAt = jwt.NewNumericDate(c.Expires)
	if !c.IssuedAt.IsZero() {
		wc.IssuedAt = jwt.NewNumericDate(c.IssuedAt)
	}
	if !c.NotBefore.IsZero() {
		wc.NotBefore = jwt.NewNumericDate(c.NotBefore)
	}
	if c.App != "" {
		wc.Audience = jwt.ClaimStrings{c.App}
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, wc).SignedString([]byte(secret))
}

// hs256 parses and checks user tokens; it holds only its options, so one
// serves every Verify.
var hs256 = jwt.NewParser(jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
	jwt.WithoutClaimsValidation())

// Verify checks tok for app at time now against the app's secrets (the
// current one first; a previous one during rotation) and returns its claims.
//
// The order of the checks matters: a token naming another app is refused as
// such before its signature is checked (the claim is not trusted, only used
// to give a clearer error); expiry is checked only once the signature
// verifies, so a forged expired token is reported as invalid, not expired.
func Verify(tok, app string, now time.Time, secrets ...string) (Claims, error) {
	var (
		wc      wireClaims
		lastErr error = ErrInvalid
		ok      bool
	)
	for _, s := range secrets {
		if s == "" {
			continue
		}
		wc = wireClaims{}
		// The key function sees the decoded claims before the signature is
		// checked, so the audience is refused there, with no separate
		// unverified parse: decoding is most of the cost of an auth.
		_, err := hs256.ParseWithClaims(tok, &wc, func(*jwt.Token) (any, error) {
			if len(wc.Audience) > 0 && !contains(wc.Audience, app) {
				return nil, ErrWrongApp
			}
			return []byte(s), nil
		})
		if errors.Is(err, ErrWrongApp) {
			return Claims{}, ErrWrongApp
		}
		if err == nil {
			ok = true
			break
		}
		lastErr = fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if !ok {
		return Claims{}, lastErr
	}
	if !protocol.ValidID(wc.Subject) {
		return Claims{}, fmt.Errorf("%w: sub is not a valid user id", ErrInvalid)
	}
	if wc.Device != "" && !protocol.ValidID(wc.Device) {
		return Claims{}, fmt.Errorf("%w: device is not a valid id", ErrInvalid)
	}
	if wc.ExpiresAt == nil {
		return Claims{}, fmt.Errorf("%w: exp is required", ErrInvalid)
	}
	if !now.Before(wc.ExpiresAt.Time) {
		return Claims{}, ErrExpired
	}
	if wc.NotBefore != nil && now.Before(wc.NotBefore.Time) {
		return Claims{}, ErrExpired
	}
	c := Claims{User: wc.Subject, Device: wc.Device, Expires: wc.ExpiresAt.Time}
	if wc.IssuedAt != nil {
		c.IssuedAt = wc.IssuedAt.Time
	}
	if wc.NotBefore != nil {
		c.NotBefore = wc.NotBefore.Time
	}
	if len(wc.Audience) > 0 {
		c.App = app
	}
	return c, nil
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}
