package api

import (
	"net/http"

	"github.com/floodgate/floodgate/internal/store"
	"github.com/floodgate/floodgate/protocol"
)

// App is an app as the admin API shows it. Secret is present only in the
// answers to create and rotate-secret.
type App struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Secret    string `json:"secret,omitempty"`
	Disabled  bool   `json:"disabled"`
	CreatedAt int64  `json:"created_at"`
	// PreviousSecretValidUntil is when the rotated-out secret stops
	// verifying tokens (rotate-secret only).
	PreviousSecretValidUntil int64 `json:"previous_secret_valid_until,omitempty"`
}

func adminApp(a store.App) App {
	return App{ID: a.ID, Name: a.Name, Disabled: a.Disabled, CreatedAt: a.CreatedAt.UnixMilli()}
}

// CreateAppRequest is the body of POST /admin/v1/apps.
type CreateAppRequest struct {
	Name string `json:"name"`
	// ID is optional; a random one is generated.
	ID string `json:"id,omitempty"`
}

func (a *api) createApp(w http.ResponseWriter, r *http.Request) {
	var req CreateAppRequest
	if !decode(w, r, &req) {
		return
	}
	if req.Name == "" || len(req.Name) > 256 {
		reply(w, 0, nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: "name is required (at most 256 bytes)"})
		return
	}
	if req.ID == "" {
		req.ID = randomID("app_")
	} else if !protocol.ValidID(req.ID) {
		reply(w, 0, nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: "invalid id"})
		return
	}
	app := store.App{ID: req.ID, Name: req.Name, Secret: randomToken(32), CreatedAt: a.o.Now()}
	if err := a.o.Store.CreateApp(r.Context(), app); err != nil {
		a.storeFailed(w, err)
		return
	}
	out := adminApp(app)
	out.Secret = app.Secret
	writeJSON(w, http.StatusCreated, out)
}

func (a *api) listApps(w http.ResponseWriter, r *http.Request) {
	apps, err := a.o.Store.Apps(r.Context())
	if err != nil {
		a.storeFailed(w, err)
		return
	}
	out := struct {
		Apps []App `json:"apps"`
	}{Apps: make([]App, 0, len(apps))}
	for _, app := range apps {
		out.Apps = append(out.Apps, adminApp(app))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *api) getApp(w http.ResponseWriter, r *http.Request) {
	app, err := a.o.Store.App(r.Context(), r.PathValue("app"))
	if err != nil {
		a.storeFailed(w, err)
		return
	}
	writeJSON(w, http.StatusOK, adminApp(app))
}

func (a *api) rotateSecret(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("app")
	until := a.o.Now().Add(a.o.SecretGrace)
	app, err := a.o.Store.RotateAppSecret(r.Context(), id, randomToken(32), until)
	if err != nil {
		a.storeFailed(w, err)
		return
	}
	a.o.Gateway.AppChanged(id, app.Disabled)
	out := adminApp(app)
	out.Secret = app.Secret
	out.PreviousSecretValidUntil = until.UnixMilli()
	writeJSON(w, http.StatusOK, out)
}

func (a *api) disableApp(w http.ResponseWriter, r *http.Request) { a.setDisabled(w, r, true) }
func (a *api) enableApp(w http.ResponseWriter, r *http.Request)  { a.setDisabled(w, r, false) }

func (a *api) setDisabled(w http.ResponseWriter, r *http.Request, disabled bool) {
	id := r.PathValue("app")
	if err := a.o.Store.SetAppDisabled(r.Context(), id, disabled); err != nil {
		a.storeFailed(w, err)
		return
	}
	a.o.Gateway.AppChanged(id, disabled)
	w.WriteHeader(http.StatusNoContent)
}
