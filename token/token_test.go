package token

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	good := Claims{User: "alice", Device: "phone", IssuedAt: now.Add(-time.Minute), Expires: now.Add(time.Hour)}
	mint := func(secret string, c Claims) string {
		t.Helper()
		tok, err := Mint(secret, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	withApp := good
	withApp.App = "app-b"
	expired := good
	expired.Expires = now.Add(-time.Second)
	notYet := good
	notYet.NotBefore = now.Add(time.Minute)
	noneTok, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Hour).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	hs512, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Hour).Unix()}).SignedString([]byte("s1"))
	noExp, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice"}).SignedString([]byte("s1"))
	badSub, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "al ice", "exp": now.Add(time.Hour).Unix()}).SignedString([]byte("s1"))

	tests := []struct {
		name    string
		tok     string
		secrets []string
		want    error
	}{
		{"valid", mint("s1", good), []string{"s1"}, nil},
		{"previous secret", mint("old", good), []string{"s1", "old"}, nil},
		{"forged", mint("other", good), []string{"s1"}, ErrInvalid},
		{"forged and expired", mint("other", expired), []string{"s1"}, ErrInvalid},
		{"expired", mint("s1", expired), []string{"s1"}, ErrExpired},
		{"not yet valid", mint("s1", notYet), []string{"s1"}, ErrExpired},
		{"other app", mint("s1", withApp), []string{"s1"}, ErrWrongApp},
		{"alg none", noneTok, []string{"s1"}, ErrInvalid},
		{"alg hs512", hs512, []string{"s1"}, ErrInvalid},
		{"no exp", noExp, []string{"s1"}, ErrInvalid},
		{"bad sub", badSub, []string{"s1"}, ErrInvalid},
		{"garbage", "not.a.jwt", []string{"s1"}, ErrInvalid},
		{"empty", "", []string{"s1"}, ErrInvalid},
		{"tampered", tamper(mint("s1", good)), []string{"s1"}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Verify(tt.tok, "app-a", now, tt.secrets...)
			if !errors.Is(err, tt.want) && !(tt.want == nil && err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			if tt.want == nil && (c.User != "alice" || c.Device != "phone" || !c.IssuedAt.Equal(good.IssuedAt)) {
				t.Fatalf("claims = %+v", c)
			}
		})
	}
}

func TestVerifyMatchingAudience(t *testing.T) {
	now := time.Now()
	tok, err := Mint("s", Claims{User: "u", App: "app-a", Expires: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Verify(tok, "app-a", now, "s")
	if err != nil || c.App != "app-a" {
		t.Fatalf("Verify = %+v, %v", c, err)
	}
}

func TestMintRejects(t *testing.T) {
	if _, err := Mint("s", Claims{User: "u"}); err == nil {
		t.Error("Mint without expiry succeeded")
	}
	if _, err := Mint("s", Claims{User: "bad user", Expires: time.Now()}); err == nil {
		t.Error("Mint with invalid user succeeded")
	}
}

func TestCode(t *testing.T) {
	for err, want := range map[error]string{ErrInvalid: "token_invalid", ErrExpired: "token_expired", ErrWrongApp: "token_wrong_app"} {
		if got := Code(err); got != want {
			t.Errorf("Code(%v) = %q, want %q", err, got, want)
		}
	}
}

// tamper flips the payload so the signature no longer matches.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	parts[1] = parts[1][:len(parts[1])-2] + "AA"
	return strings.Join(parts, ".")
}
