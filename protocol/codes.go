package protocol

// Request error codes, carried in Error.Code. docs/protocol.md lists which
// op returns which.
const (
	// Frame and request shape.
	CodeBadFrame      = "bad_frame"       // not a JSON object, or no op
	CodeFrameTooLarge = "frame_too_large" // larger than max_frame_bytes; the connection is then closed
	CodeUnknownOp     = "unknown_op"
	CodeBadRequest    = "bad_request" // arguments missing or invalid
	CodeBodyTooLarge  = "body_too_large"

	// Authentication (the connection is closed after these).
	CodeAuthRequired  = "auth_required" // an op other than auth before auth
	CodeAuthTimeout   = "auth_timeout"
	CodeAlreadyAuthed = "already_authenticated"
	CodeTokenInvalid  = "token_invalid"   // malformed, or signature does not verify
	CodeTokenExpired  = "token_expired"   // exp is in the past
	CodeTokenWrongApp = "token_wrong_app" // aud names another app
	CodeTokenRevoked  = "token_revoked"   // issued before the user's sessions were disabled
	CodeAppNotFound   = "app_not_found"
	CodeAppDisabled   = "app_disabled"

	// Authorisation and state.
	CodeNotFound  = "not_found"      // no such conversation in this app
	CodeForbidden = "forbidden"      // not a member, not joined, or not allowed
	CodeConflict  = "conflict"       // id already taken
	CodeLimit     = "limit_exceeded" // a per-connection or per-conversation limit

	// Load.
	CodeRateLimited = "rate_limited" // retry_after_ms says when
	CodeUnavailable = "unavailable"  // store or bus unusable for now; retry
	CodeInternal    = "internal"
)

// WebSocket close codes. Floodgate's own codes are grouped by what the
// client must do, in ranges of 100, so a client acts on a code it does not
// know by its range (see CloseAction). 1000 and 1001 are the standard ones.
const (
	CloseNormal    = 1000 // the client asked to close
	CloseGoingAway = 1001 // generic "going away": reconnect now
	CloseTooLarge  = 1009 // frame larger than max_frame_bytes: reconnect with back-off

	// 4000–4099: reconnect now (spread by a small random delay).
	CloseShutdown = 4000 // the node is shutting down or restarting
	CloseReplaced = 4001 // reserved: the session was replaced by the same device

	// 4100–4199: reconnect after back-off (retry_after_ms if a directive said so).
	CloseSlowConsumer  = 4100 // the client did not read fast enough; resume will catch up
	CloseOverloaded    = 4101 // node at its connection or memory budget
	CloseRateLimited   = 4102 // kept sending over its rate limit
	ClosePingTimeout   = 4103 // nothing received for two ping intervals
	CloseAuthTimeout   = 4104 // no auth within the deadline
	CloseProtocolError = 4105 // a frame the server cannot accept at all
	CloseServerError   = 4106 // unexpected server-side failure

	// 4200–4299: reconnect to another node (directive URL, or ask the router).
	CloseDraining = 4200 // the node is being drained

	// 4300–4399: get fresh credentials from the app, then reconnect.
	CloseTokenExpired = 4300
	CloseTokenRevoked = 4301 // the app disabled this user's sessions

	// 4400–4499: do not reconnect.
	CloseTokenInvalid  = 4400
	CloseTokenWrongApp = 4401
	CloseAppNotFound   = 4402
	CloseAppDisabled   = 4403
)

// What a client does after a close, derived from the close code's range.
const (
	AfterReconnect = "reconnect" // now, with a small random delay
	AfterBackoff   = "backoff"   // after exponential back-off
	AfterRedirect  = "redirect"  // to another node
	AfterRefresh   = "refresh"   // fetch a new token first
	AfterStop      = "stop"      // do not reconnect
)

// CloseAction returns what a client must do after the server closed the
// connection with code. Unknown codes act by their range; anything outside
// the Floodgate ranges (including abnormal closure, 1006) means back-off.
func CloseAction(code int) string {
	switch {
	case code == CloseNormal || code == CloseGoingAway:
		return AfterReconnect
	case code >= 4000 && code < 4100:
		return AfterReconnect
	case code >= 4100 && code < 4200:
		return AfterBackoff
	case code >= 4200 && code < 4300:
		return AfterRedirect
	case code >= 4300 && code < 4400:
		return AfterRefresh
	case code >= 4400 && code < 4500:
		return AfterStop
	default:
		return AfterBackoff
	}
}

// AuthCloseCode maps an auth error code to the close code that follows it.
func AuthCloseCode(code string) int {
	switch code {
	case CodeTokenExpired:
		return CloseTokenExpired
	case CodeTokenRevoked:
		return CloseTokenRevoked
	case CodeTokenInvalid:
		return CloseTokenInvalid
	case CodeTokenWrongApp:
		return CloseTokenWrongApp
	case CodeAppNotFound:
		return CloseAppNotFound
	case CodeAppDisabled:
		return CloseAppDisabled
	case CodeAuthTimeout:
		return CloseAuthTimeout
	case CodeUnavailable:
		return CloseOverloaded
	default:
		return CloseProtocolError
	}
}
