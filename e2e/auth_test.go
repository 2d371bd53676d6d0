package e2e

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/floodgate/floodgate/client"
	"github.com/floodgate/floodgate/internal/config"
	"github.com/floodgate/floodgate/protocol"
	"github.com/floodgate/floodgate/token"
)

// Each refused token gets its own error code, then a directive, then the
// close code of its range.
func TestTokensRefused(t *testing.T) {
	n := startNode(t, nil)
	a := n.createApp(t, "a")
	b := n.createApp(t, "b")
	now := time.Now()
	mint := func(secret string, c token.Claims) string {
		tok, err := token.Mint(secret, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tests := []struct {
		name, app, tok string
		code           string
		close          int
		action         string
	}{
		{"expired", a.ID, mint(a.Secret, token.Claims{User: "u", Expires: now.Add(-time.Minute)}),
			protocol.CodeTokenExpired, protocol.CloseTokenExpired, protocol.ActionReconnect},
		{"forged", a.ID, mint("not-the-secret", token.Claims{User: "u", Expires: now.Add(time.Hour)}),
			protocol.CodeTokenInvalid, protocol.CloseTokenInvalid, protocol.ActionStop},
		{"signed by another app", a.ID, mint(b.Secret, token.Claims{User: "u", Expires: now.Add(time.Hour)}),
			protocol.CodeTokenInvalid, protocol.CloseTokenInvalid, protocol.ActionStop},
		{"issued for another app", a.ID, mint(b.Secret, token.Claims{User: "u", App: b.ID, Expires: now.Add(time.Hour)}),
			protocol.CodeTokenWrongApp, protocol.CloseTokenWrongApp, protocol.ActionStop},
		{"garbage", a.ID, "not-a-jwt", protocol.CodeTokenInvalid, protocol.CloseTokenInvalid, protocol.ActionStop},
		{"unknown app", "app_nope", a.token(t, "u"), protocol.CodeAppNotFound, protocol.CloseAppNotFound, protocol.ActionStop},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := n.raw(t)
			f := r.call(protocol.OpAuth, protocol.AuthArgs{App: tt.app, Token: tt.tok})
			if errCode(f) != tt.code {
				t.Fatalf("auth error = %+v, want %s", f.Error, tt.code)
			}
			code, frames := r.closeCode()
			if code != tt.close {
				t.Fatalf("close code %d, want %d", code, tt.close)
			}
			if len(frames) != 1 || frames[0].Ev != protocol.EvDirective {
				t.Fatalf("frames before close = %+v, want one directive", frames)
			}
			var d protocol.Directive
			_ = jsonUnmarshal(frames[0].Data, &d)
			if d.Action != tt.action || d.Code != tt.close {
				t.Fatalf("directive = %+v", d)
			}
		})
	}
	t.Run("sdk stops on an invalid token", func(t *testing.T) {
		_, err := client.Dial(ctxT(t), client.Options{URL: n.url(), App: a.ID,
			Token: func(context.Context) (string, error) { return "not-a-jwt", nil }})
		var ce *client.CloseError
		var pe *protocol.Error
		if !errors.As(err, &ce) || ce.Code != protocol.CloseTokenInvalid || !errors.As(err, &pe) || pe.Code != protocol.CodeTokenInvalid {
			t.Fatalf("Dial = %v", err)
		}
	})
}

func TestAuthRequiredAndTimeout(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.AuthTimeout = 300 * time.Millisecond })
	a := n.createApp(t, "a")
	r := n.raw(t)
	if f := r.call(protocol.OpPing, nil); errCode(f) != protocol.CodeAuthRequired {
		t.Fatalf("ping before auth = %+v", f)
	}
	if code, _ := r.closeCode(); code != protocol.CloseAuthTimeout {
		t.Fatalf("close code %d, want %d", code, protocol.CloseAuthTimeout)
	}
	r2 := n.raw(t)
	if f := r2.auth(a, "u"); f.Error != nil {
		t.Fatal(f.Error)
	}
	if f := r2.auth(a, "u"); errCode(f) != protocol.CodeAlreadyAuthed {
		t.Fatalf("second auth = %+v", f)
	}
	if f := r2.call(protocol.OpPing, nil); f.Error != nil {
		t.Fatal("ping after auth:", f.Error)
	}
}

func TestDisabledAppAndUser(t *testing.T) {
	n := startNode(t, nil)
	a := n.createApp(t, "a")
	r := n.raw(t)
	r.auth(a, "alice")
	r2 := n.raw(t)
	r2.auth(a, "bob")

	// Disabling a user's sessions closes them (4301) and refuses old tokens.
	// iat has second precision: a token from two seconds ago is older than
	// the revocation, one stamped a second ahead is newer.
	mintAt := func(at time.Time) string {
		tok, err := token.Mint(a.Secret, token.Claims{User: "bob", IssuedAt: at, Expires: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	oldBobToken := mintAt(time.Now().Add(-2 * time.Second))
	if code := a.server(t, "POST", "/v1/server/users/bob/disable", nil, nil); code != http.StatusNoContent {
		t.Fatalf("disable user: HTTP %d", code)
	}
	if code, _ := r2.closeCode(); code != protocol.CloseTokenRevoked {
		t.Fatalf("bob's close code %d, want %d", code, protocol.CloseTokenRevoked)
	}
	r3 := n.raw(t)
	if f := r3.call(protocol.OpAuth, protocol.AuthArgs{App: a.ID, Token: oldBobToken}); errCode(f) != protocol.CodeTokenRevoked {
		t.Fatalf("old token after disable = %+v", f)
	}
	r4 := n.raw(t)
	if f := r4.call(protocol.OpAuth, protocol.AuthArgs{App: a.ID, Token: mintAt(time.Now().Add(time.Second))}); f.Error != nil {
		t.Fatalf("fresh token after disable: %v", f.Error)
	}

	// Disabling the app closes every connection with 4403 and refuses new ones.
	if code := n.admin(t, "POST", "/admin/v1/apps/"+a.ID+"/disable", nil, nil); code != http.StatusNoContent {
		t.Fatalf("disable app: HTTP %d", code)
	}
	if code, _ := r.closeCode(); code != protocol.CloseAppDisabled {
		t.Fatalf("close code %d, want %d", code, protocol.CloseAppDisabled)
	}
	r5 := n.raw(t)
	if f := r5.auth(a, "carol"); errCode(f) != protocol.CodeAppDisabled {
		t.Fatalf("auth to a disabled app = %+v", f)
	}
	if code := a.server(t, "POST", "/v1/server/direct", map[string]any{"users": []string{"a", "b"}}, nil); code != http.StatusForbidden {
		t.Fatalf("server API of a disabled app: HTTP %d", code)
	}
	if code := n.admin(t, "POST", "/admin/v1/apps/"+a.ID+"/enable", nil, nil); code != http.StatusNoContent {
		t.Fatalf("enable app: HTTP %d", code)
	}
	r6 := n.raw(t)
	if f := r6.auth(a, "carol"); f.Error != nil {
		t.Fatalf("auth after re-enable: %v", f.Error)
	}
}

func TestSecretRotation(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.SecretGrace = time.Hour })
	a := n.createApp(t, "a")
	oldTok := a.token(t, "alice")
	var rotated struct{ Secret string }
	if code := n.admin(t, "POST", "/admin/v1/apps/"+a.ID+"/rotate-secret", nil, &rotated); code != 200 || rotated.Secret == "" || rotated.Secret == a.Secret {
		t.Fatalf("rotate: HTTP %d, %+v", code, rotated)
	}
	// Tokens of the old secret work during the grace period, and so does
	// the old secret on the server API.
	if f := n.raw(t).call(protocol.OpAuth, protocol.AuthArgs{App: a.ID, Token: oldTok}); f.Error != nil {
		t.Fatalf("old token during grace: %v", f.Error)
	}
	if code := a.server(t, "POST", "/v1/server/direct", map[string]any{"users": []string{"a", "b"}}, nil); code != 200 {
		t.Fatalf("old secret on the server API: HTTP %d", code)
	}
	fresh := app{ID: a.ID, Secret: rotated.Secret, n: n}
	if f := n.raw(t).auth(fresh, "alice"); f.Error != nil {
		t.Fatalf("new token: %v", f.Error)
	}
	// The admin API refuses without its token.
	if code := httpJSON(t, "GET", n.srv.HTTPURL()+"/admin/v1/apps", nil, nil, func(*http.Request) {}); code != http.StatusUnauthorized {
		t.Fatalf("admin API without token: HTTP %d", code)
	}
}
