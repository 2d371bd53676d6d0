// Package api serves Floodgate's HTTP APIs: the server API an app's
// backend calls with its app secret (/v1/server/…), and the admin API the
// operator calls with the admin token (/admin/v1/…). Both are described in
// docs/openapi.yaml, which a test keeps in step with Routes.
package api

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/floodgate/floodgate/internal/gateway"
	"github.com/floodgate/floodgate/internal/store"
	"github.com/floodgate/floodgate/protocol"
)

// maxRequestBytes bounds a request body; a message body is at most
// max-body-bytes, far below it.
const maxRequestBytes = 1 << 20

// Options configure the API handler.
type Options struct {
	Gateway *gateway.Gateway
	Store   store.Store
	// AdminToken authenticates the admin API (Authorization: Bearer …).
	AdminToken string
	// SecretGrace is how long a rotated-out app secret keeps working.
	SecretGrace time.Duration
	// RequestTimeout bounds each request's store calls (default 10s).
	RequestTimeout time.Duration
	Logger         *slog.Logger
	Now            func() time.Time
}

// Route is one endpoint.
type Route struct {
	Method, Path string // Path in net/http pattern syntax: /v1/server/conversations/{conv}
	handler      func(*api, http.ResponseWriter, *http.Request)
	admin        bool
}

// Routes lists every endpoint, for the handler and for the test that keeps
// docs/openapi.yaml in step with the code.
func Routes() []Route {
	return []Route{
		{"POST", "/v1/server/conversations", (*api).createConversation, false},
		{"POST", "/v1/server/direct", (*api).direct, false},
		{"GET", "/v1/server/conversations/{conv}", (*api).getConversation, false},
		{"POST", "/v1/server/conversations/{conv}/members", (*api).addMembers, false},
		{"DELETE", "/v1/server/conversations/{conv}/members/{user}", (*api).removeMember, false},
		{"POST", "/v1/server/conversations/{conv}/messages", (*api).send, false},
		{"GET", "/v1/server/conversations/{conv}/messages", (*api).history, false},
		{"POST", "/v1/server/users/{user}/disable", (*api).disableUser, false},

		{"POST", "/admin/v1/apps", (*api).createApp, true},
		{"GET", "/admin/v1/apps", (*api).listApps, true},
		{"GET", "/admin/v1/apps/{app}", (*api).getApp, true},
		{"POST", "/admin/v1/apps/{app}/rotate-secret", (*api).rotateSecret, true},
		{"POST", "/admin/v1/apps/{app}/disable", (*api).disableApp, true},
		{"POST", "/admin/v1/apps/{app}/enable", (*api).enableApp, true},
	}
}

type api struct {
	o   Options
	log *slog.Logger
}

// Register adds every route to mux.
func Register(mux *http.ServeMux, o Options) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 10 * time.Second
	}
	a := &api{o: o, log: o.Logger}
	for _, r := range Routes() {
		h := r.handler
		var wrapped http.HandlerFunc
		if r.admin {
			wrapped = func(w http.ResponseWriter, req *http.Request) {
				if !a.adminOK(req) {
					writeError(w, http.StatusUnauthorized, &protocol.Error{Code: "unauthorized", Message: "admin token required"})
					return
				}
				h(a, w, req)
			}
		} else {
			wrapped = func(w http.ResponseWriter, req *http.Request) { h(a, w, req) }
		}
		mux.HandleFunc(r.Method+" "+r.Path, func(w http.ResponseWriter, req *http.Request) {
			ctx, cancel := context.WithTimeout(req.Context(), a.o.RequestTimeout)
			defer cancel()
			req.Body = http.MaxBytesReader(w, req.Body, maxRequestBytes)
			wrapped(w, req.WithContext(ctx))
		})
	}
}

func (a *api) adminOK(r *http.Request) bool {
	const prefix = "Bearer "
	h := r.Header.Get("Authorization")
	if a.o.AdminToken == "" || len(h) <= len(prefix) || h[:len(prefix)] != prefix {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(h[len(prefix):]), []byte(a.o.AdminToken)) == 1
}

// appAuth authenticates an app's backend by HTTP Basic auth (app id and
// secret) and returns the app id, or writes the error and returns "".
func (a *api) appAuth(w http.ResponseWriter, r *http.Request) string {
	id, secret, ok := r.BasicAuth()
	if !ok || !protocol.ValidID(id) {
		w.Header().Set("WWW-Authenticate", `Basic realm="floodgate"`)
		writeError(w, http.StatusUnauthorized, &protocol.Error{Code: "unauthorized", Message: "app id and secret required (HTTP Basic)"})
		return ""
	}
	app, err := a.o.Store.App(r.Context(), id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		a.storeFailed(w, err)
		return ""
	}
	valid := err == nil && (subtle.ConstantTimeCompare([]byte(secret), []byte(app.Secret)) == 1 ||
		(app.PrevSecret != "" && a.o.Now().Before(app.PrevSecretUntil) &&
			subtle.ConstantTimeCompare([]byte(secret), []byte(app.PrevSecret)) == 1))
	if !valid {
		writeError(w, http.StatusUnauthorized, &protocol.Error{Code: "unauthorized", Message: "unknown app or wrong secret"})
		return ""
	}
	if app.Disabled {
		writeError(w, http.StatusForbidden, &protocol.Error{Code: protocol.CodeAppDisabled, Message: "app disabled"})
		return ""
	}
	return app.ID
}

func (a *api) storeFailed(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, &protocol.Error{Code: protocol.CodeNotFound, Message: "not found"})
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, &protocol.Error{Code: protocol.CodeConflict, Message: "already exists"})
	default:
		a.log.Error("api: store", "err", err)
		writeError(w, http.StatusServiceUnavailable, &protocol.Error{Code: protocol.CodeUnavailable, Message: "store unavailable", RetryAfterMS: 1000})
	}
}

// status maps a protocol error code to an HTTP status.
func status(code string) int {
	switch code {
	case protocol.CodeBadRequest, protocol.CodeBadFrame:
		return http.StatusBadRequest
	case protocol.CodeBodyTooLarge:
		return http.StatusRequestEntityTooLarge
	case protocol.CodeNotFound:
		return http.StatusNotFound
	case protocol.CodeForbidden, protocol.CodeAppDisabled:
		return http.StatusForbidden
	case protocol.CodeConflict:
		return http.StatusConflict
	case protocol.CodeLimit:
		return http.StatusUnprocessableEntity
	case protocol.CodeRateLimited:
		return http.StatusTooManyRequests
	case protocol.CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, e *protocol.Error) {
	if e.RetryAfterMS > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt((e.RetryAfterMS+999)/1000, 10))
	}
	writeJSON(w, code, struct {
		Error *protocol.Error `json:"error"`
	}{e})
}

// reply writes v, or perr with its HTTP status.
func reply(w http.ResponseWriter, okStatus int, v any, perr *protocol.Error) {
	if perr != nil {
		writeError(w, status(perr.Code), perr)
		return
	}
	if v == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, okStatus, v)
}

// decode reads a JSON body into v; unknown fields are refused so a typo in
// a backend's request is an error rather than silently ignored.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		code := http.StatusBadRequest
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			code = http.StatusRequestEntityTooLarge
		}
		writeError(w, code, &protocol.Error{Code: protocol.CodeBadRequest, Message: "invalid JSON body: " + err.Error()})
		return false
	}
	return true
}

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func randomID(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}
