package cluster

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/floodgate/floodgate/protocol"
)

// Router answers GET /v1/route?app=APP from a membership view. It holds no
// state of its own: several routers with the same view answer alike, and
// a router whose bus is down keeps answering from its last view.
type Router struct {
	// Alive returns the current membership.
	Alive func() []Status
	// TTL is how long a client may cache an answer.
	TTL time.Duration
	// RetryAfter is what a client is told to wait when no node accepts.
	RetryAfter time.Duration

	mu  sync.Mutex
	rng *rand.Rand
}

// NewRouter returns a router over alive.
func NewRouter(alive func() []Status, ttl time.Duration) *Router {
	return &Router{Alive: alive, TTL: ttl, RetryAfter: 2 * time.Second,
		rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
}

// ServeHTTP implements http.Handler.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	app := r.URL.Query().Get("app")
	if !protocol.ValidID(app) {
		writeErr(w, http.StatusBadRequest, &protocol.Error{Code: protocol.CodeBadRequest, Message: "app is required"})
		return
	}
	rt.mu.Lock()
	p, s, ok := Pick(rt.Alive(), rt.rng)
	rt.mu.Unlock()
	if !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int((rt.RetryAfter+time.Second-1)/time.Second)))
		writeErr(w, http.StatusServiceUnavailable, &protocol.Error{Code: protocol.CodeUnavailable,
			Message: "no gateway can take clients now", RetryAfterMS: rt.RetryAfter.Milliseconds()})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(protocol.RouteResult{Primary: p.URL, Secondary: s.URL, TTLMS: rt.TTL.Milliseconds()})
}

func writeErr(w http.ResponseWriter, code int, e *protocol.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(struct {
		Error *protocol.Error `json:"error"`
	}{e})
}
