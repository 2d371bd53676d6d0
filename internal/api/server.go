package api

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/floodgate/floodgate/internal/gateway"
	"github.com/floodgate/floodgate/protocol"
)

// CreateConversationRequest is the body of POST /v1/server/conversations.
type CreateConversationRequest struct {
	protocol.CreateArgs
	// Creator is the user recorded as creator and owner (optional).
	Creator string `json:"creator,omitempty"`
}

func (a *api) createConversation(w http.ResponseWriter, r *http.Request) {
	app := a.appAuth(w, r)
	if app == "" {
		return
	}
	var req CreateConversationRequest
	if !decode(w, r, &req) {
		return
	}
	if req.Creator != "" && !protocol.ValidID(req.Creator) {
		reply(w, 0, nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: "invalid creator"})
		return
	}
	res, perr := a.o.Gateway.CreateConversation(r.Context(), gateway.Caller{App: app, User: req.Creator, Backend: true}, req.CreateArgs)
	reply(w, http.StatusCreated, res, perr)
}

// DirectRequest is the body of POST /v1/server/direct.
type DirectRequest struct {
	Users []string `json:"users"`
}

func (a *api) direct(w http.ResponseWriter, r *http.Request) {
	app := a.appAuth(w, r)
	if app == "" {
		return
	}
	var req DirectRequest
	if !decode(w, r, &req) {
		return
	}
	if len(req.Users) != 2 {
		reply(w, 0, nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: "users must name exactly two users"})
		return
	}
	res, perr := a.o.Gateway.Direct(r.Context(), gateway.Caller{App: app, Backend: true}, req.Users[0], req.Users[1])
	reply(w, http.StatusOK, res, perr)
}

func (a *api) getConversation(w http.ResponseWriter, r *http.Request) {
	app := a.appAuth(w, r)
	if app == "" {
		return
	}
	res, perr := a.o.Gateway.GetConversation(r.Context(), gateway.Caller{App: app, Backend: true}, r.PathValue("conv"))
	reply(w, http.StatusOK, res, perr)
}

// UsersRequest is the body of POST …/members.
type UsersRequest struct {
	Users []string `json:"users"`
	// By is the user recorded as having made the change (optional).
	By string `json:"by,omitempty"`
}

func (a *api) addMembers(w http.ResponseWriter, r *http.Request) {
	app := a.appAuth(w, r)
	if app == "" {
		return
	}
	var req UsersRequest
	if !decode(w, r, &req) {
		return
	}
	res, perr := a.o.Gateway.AddMembers(r.Context(), gateway.Caller{App: app, User: req.By, Backend: true}, r.PathValue("conv"), req.Users)
	reply(w, http.StatusOK, res, perr)
}

func (a *api) removeMember(w http.ResponseWriter, r *http.Request) {
	app := a.appAuth(w, r)
	if app == "" {
		return
	}
	res, perr := a.o.Gateway.RemoveMembers(r.Context(), gateway.Caller{App: app, Backend: true}, r.PathValue("conv"), []string{r.PathValue("user")})
	reply(w, http.StatusOK, res, perr)
}

// SendRequest is the body of POST …/messages.
type SendRequest struct {
	// Sender sends as this user (who must be a member, except in rooms);
	// empty sends a system message.
	Sender      string          `json:"sender,omitempty"`
	ClientMsgID string          `json:"client_msg_id,omitempty"`
	Body        json.RawMessage `json:"body"`
}

func (a *api) send(w http.ResponseWriter, r *http.Request) {
	app := a.appAuth(w, r)
	if app == "" {
		return
	}
	var req SendRequest
	if !decode(w, r, &req) {
		return
	}
	if req.Sender != "" && !protocol.ValidID(req.Sender) {
		reply(w, 0, nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: "invalid sender"})
		return
	}
	res, perr := a.o.Gateway.Send(r.Context(), gateway.Caller{App: app, User: req.Sender, Backend: true},
		protocol.SendArgs{Conv: r.PathValue("conv"), ClientMsgID: req.ClientMsgID, Body: req.Body})
	reply(w, http.StatusOK, res, perr)
}

func (a *api) history(w http.ResponseWriter, r *http.Request) {
	app := a.appAuth(w, r)
	if app == "" {
		return
	}
	q := r.URL.Query()
	args := protocol.HistoryArgs{Conv: r.PathValue("conv"), Direction: q.Get("direction")}
	for name, dst := range map[string]any{"seq": &args.Seq, "limit": &args.Limit} {
		v := q.Get(name)
		if v == "" {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 63)
		if err != nil {
			reply(w, 0, nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: "invalid " + name})
			return
		}
		switch d := dst.(type) {
		case *uint64:
			*d = n
		case *int:
			*d = int(min(n, 1<<31))
		}
	}
	res, perr := a.o.Gateway.History(r.Context(), gateway.Caller{App: app, Backend: true}, args)
	reply(w, http.StatusOK, res, perr)
}

func (a *api) disableUser(w http.ResponseWriter, r *http.Request) {
	app := a.appAuth(w, r)
	if app == "" {
		return
	}
	reply(w, 0, nil, a.o.Gateway.DisableUser(r.Context(), app, r.PathValue("user")))
}
